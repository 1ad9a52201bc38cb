package vscsifront_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/vscsifront"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed ^ byte(i>>12)
	}
	return b
}

// TestSGGrantLargeCommands: with a backend offering feature-sg-grant, a
// command carries up to the frontend's MaxSegments pages (1 MiB), its
// segments in SG_GRANT list pages once over vscsiif.SGTableSize; the data
// travels intact both ways.
func TestSGGrantLargeCommands(t *testing.T) {
	disks := memDisks(4<<20, "/img/a")
	r := newRig(t, rigConfig{sgGrant: 1024, disks: disks}, "/img/a, 0:0:0:0")
	l := r.lun(addr("0:0:0:0"))
	if got := r.front.MaxTransfer(); got != vscsifront.DefaultMaxSegments*xen.PageSize {
		t.Fatalf("MaxTransfer %d, want %d", got, vscsifront.DefaultMaxSegments*xen.PageSize)
	}
	exec(t, l, tur, scsi.DirNone, nil) // the power-on unit attention
	for _, pages := range []int{vscsiif.SGTableSize, vscsiif.SGTableSize + 1, 100, vscsifront.DefaultMaxSegments} {
		n := pages * xen.PageSize
		data := pattern(n, byte(pages))
		off := int64(pages) * 512
		w := scsitest.Write16(uint64(off/512), uint32(n/512))
		good(t, w, exec(t, l, w, scsi.DirToDevice, data))
		on := make([]byte, n)
		if _, err := disks["/img/a"].ReadAt(on, off); err != nil || !bytes.Equal(on, data) {
			t.Fatalf("%d pages: the disk does not hold what was written (%v)", pages, err)
		}
		back := make([]byte, n)
		rd := scsitest.Read16(uint64(off/512), uint32(n/512))
		res := exec(t, l, rd, scsi.DirFromDevice, back)
		good(t, rd, res)
		if res.Resid != 0 || !bytes.Equal(back, data) {
			t.Fatalf("%d pages: read back differs (residual %d)", pages, res.Resid)
		}
	}
}

// TestNoSGGrant: a backend without feature-sg-grant takes
// vscsiif.SGTableSize pages a command: a larger one is refused before it
// travels, and the LUN's Device splits its I/O to fit.
func TestNoSGGrant(t *testing.T) {
	disks := memDisks(4<<20, "/img/a")
	r := newRig(t, rigConfig{disks: disks}, "/img/a, 0:0:0:0")
	l := r.lun(addr("0:0:0:0"))
	if got := r.front.MaxTransfer(); got != vscsiif.SGTableSize*xen.PageSize {
		t.Fatalf("MaxTransfer %d, want %d", got, vscsiif.SGTableSize*xen.PageSize)
	}
	n := (vscsiif.SGTableSize + 1) * xen.PageSize
	if _, err := l.ExecSCSI(ctxFor(t), scsitest.Write16(0, uint32(n/512)), scsi.DirToDevice, make([]byte, n)); !errors.Is(err, vscsifront.ErrTooLarge) {
		t.Fatalf("a command of %d pages: %v, want ErrTooLarge", n/xen.PageSize, err)
	}
	dev := r.device(l)
	data := pattern(1<<20, 3)
	if _, err := dev.WriteAt(data, 8192); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(data))
	if _, err := dev.ReadAt(back, 8192); err != nil || !bytes.Equal(back, data) {
		t.Fatalf("1 MiB through the device: differs (%v)", err)
	}
}
