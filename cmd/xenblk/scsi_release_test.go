package main

import (
	"io"
	"log/slog"
	"testing"

	"github.com/xenblk/xenblk/scsi/sgio"
	"github.com/xenblk/xenblk/scsi/sgio/sgiotest"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen/sim"
)

// closingDisk is a fake whole disk that counts its closes.
type closingDisk struct {
	*sgiotest.Disk
	closes int
}

func (d *closingDisk) Close() error { d.closes++; return nil }

// TestSCSIEnginesReleaseTheDisk: a disk opened for SG_IO stays open while
// any vbd passes through to it, is closed when the last one's engine is
// closed (blkback closes a removed vbd's engine), and is opened afresh
// for the next.
func TestSCSIEnginesReleaseTheDisk(t *testing.T) {
	h, _ := sim.NewHost()
	st := h.Store()
	disk := &closingDisk{Disk: sgiotest.NewDisk(storage.NewMemory(1 << 20))}
	opens := 0
	open := func(string) (sgio.Target, error) { opens++; return disk, nil }
	provide := scsiEngines(st, t.TempDir(), slog.New(slog.DiscardHandler), open)
	mem := storage.NewMemory(1 << 20)
	a, b := vbdDir(1), vbdDir(2)
	writeVBD(t, st, a, map[string]string{"params": "/dev/sda", "scsi": "passthrough"})
	writeVBD(t, st, b, map[string]string{"params": "/dev/sda", "scsi": "passthrough"})
	ea, err := provide(a, mem)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := provide(b, mem)
	if err != nil {
		t.Fatal(err)
	}
	if opens != 1 {
		t.Fatalf("the disk was opened %d times for two vbds, want once", opens)
	}
	ea.(io.Closer).Close()
	ea.(io.Closer).Close() // twice: counted once
	if disk.closes != 0 {
		t.Fatal("the disk was closed while another vbd still passes through to it")
	}
	eb.(io.Closer).Close()
	if disk.closes != 1 {
		t.Fatalf("closes after the last vbd went: %d, want 1", disk.closes)
	}
	if _, err := provide(a, mem); err != nil {
		t.Fatal(err)
	}
	if opens != 2 {
		t.Fatalf("opens after a new vbd: %d, want 2", opens)
	}
}
