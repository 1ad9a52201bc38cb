package blkback_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/sgio"
	"github.com/xenblk/xenblk/scsi/sgio/sgiotest"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// Through the whole stack: `scsi=passthrough` in the disk spec reaches the
// backend node, the guest's SCSI commands reach the (fake) whole disk with
// SG_IO, and a partition with the same request gets the emulation and a
// scsi-error node, with the guest's disk working either way.
func TestVBDEnginesPassthroughThroughBlkif(t *testing.T) {
	s := simstack.ForTest(t, nil, simstack.Options{})
	h := s.Host
	log := slog.New(slog.DiscardHandler)
	sda := sgiotest.NewDisk(storage.NewMemory(1 << 20))
	open := func(path string) (sgio.Target, error) {
		if path == "/dev/sda" {
			return sda, nil
		}
		return nil, fmt.Errorf("%w: %s is a partition; give the whole disk, or use emulated SCSI (scsi=emulate) for a partition", sgio.ErrNotWholeDisk, path)
	}
	engines := scsiengine.New(scsiengine.Config{Reservations: &pr.FileStore{Dir: t.TempDir()}, Log: log, OpenSG: open})
	s.Serve(blkback.Config{SCSI: blkback.VBDEngines(h.Store(), engines, log)},
		func(xen.Store, string) (storage.Device, error) { return storage.NewMemory(1 << 20), nil })
	var disks []*blkfront.Disk
	var backends []string
	for i, target := range []string{"/dev/sda", "/dev/sda1"} {
		g, err := s.AttachGuest(context.Background(), fmt.Sprintf("guest-%d", i), "vdev=xvdb, scsi=passthrough, target="+target, blkfront.Config{})
		if err != nil {
			t.Fatal(err)
		}
		disks = append(disks, g.Disk)
		backends = append(backends, g.VBD.BackendPath())
	}
	inquiry := func(d *blkfront.Disk) []byte {
		t.Helper()
		buf := make([]byte, 36)
		for range 4 {
			r, err := d.ExecSCSI(context.Background(), []byte{scsi.OpInquiry, 0, 0, 0, 36, 0}, scsi.DirFromDevice, buf)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status == scsi.StatusGood {
				return buf
			}
		}
		t.Fatal("INQUIRY never succeeded")
		return nil
	}
	sda.Forget()
	inquiry(disks[0])
	if !sda.Saw(scsi.OpInquiry) {
		t.Fatal("the whole disk's INQUIRY did not go through SG_IO")
	}
	if v, _ := h.Store().Read(backends[0] + "/scsi-engine"); v != "passthrough" {
		t.Errorf("whole disk: scsi-engine %q", v)
	}
	sda.Forget()
	inquiry(disks[1])
	if sda.Saw(scsi.OpInquiry) {
		t.Fatal("the partition's INQUIRY reached the whole disk")
	}
	if v, _ := h.Store().Read(backends[1] + "/scsi-error"); !strings.Contains(v, "partition") {
		t.Errorf("partition: scsi-error %q", v)
	}
	if v, _ := h.Store().Read(backends[1] + "/scsi-engine"); v != "emulate" {
		t.Errorf("partition: scsi-engine %q", v)
	}
	// Both guests' disks work through the ordinary path too.
	for _, d := range disks {
		if _, err := d.WriteAt(context.Background(), make([]byte, 4096), 0); err != nil {
			t.Fatal(err)
		}
	}
}
