package vscsifront_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/xenblk/xenblk/control"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
	"github.com/xenblk/xenblk/vscsifront"
)

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// exec runs one command on l and fails the test on a transport error.
func exec(t *testing.T, l *vscsifront.LUN, cdb []byte, dir scsi.Direction, buf []byte) scsi.Result {
	t.Helper()
	res, err := l.ExecSCSI(ctxFor(t), cdb, dir, buf)
	if err != nil {
		t.Fatalf("%s: %v", scsi.OpName(cdb[0]), err)
	}
	return res
}

func good(t *testing.T, cdb []byte, res scsi.Result) {
	t.Helper()
	if res.Status != scsi.StatusGood {
		s, _, _ := scsi.ParseSense(res.SenseBytes())
		t.Fatalf("%s: status %s, sense %x/%02x/%02x", scsi.OpName(cdb[0]), scsi.StatusName(res.Status), s.Key, s.ASC, s.ASCQ)
	}
}

var tur = []byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0}

// TestInquiryAndReadCapacity: the frontend connects, holds the LUN the
// toolstack gave, and its commands travel with their status, sense and
// data: the new nexus's power-on unit attention (CHECK CONDITION with
// sense), then INQUIRY and READ CAPACITY(16) of the disk behind it.
func TestInquiryAndReadCapacity(t *testing.T) {
	const size = 1 << 20
	r := newRig(t, rigConfig{disks: memDisks(size, "/img/a")}, "/img/a, 0:0:0:0")
	l := r.lun(addr("0:0:0:0"))

	res := exec(t, l, tur, scsi.DirNone, nil)
	s, _, ok := scsi.ParseSense(res.SenseBytes())
	if res.Status != scsi.StatusCheckCondition || !ok || (scsi.Code{Key: s.Key, ASC: s.ASC, ASCQ: s.ASCQ}) != scsi.PowerOnReset {
		t.Fatalf("first command: status %s, sense % x; want CHECK CONDITION, POWER ON RESET", scsi.StatusName(res.Status), res.SenseBytes())
	}

	inq := scsitest.Inquiry(false, 0, 96)
	buf := make([]byte, 96)
	res = exec(t, l, inq, scsi.DirFromDevice, buf)
	good(t, inq, res)
	if buf[0]&0x1f != 0 || res.Resid >= len(buf)-36 || res.Resid < 0 {
		t.Fatalf("INQUIRY: peripheral %#x, residual %d of %d", buf[0], res.Resid, len(buf))
	}

	rc := []byte{scsi.OpServiceActionIn16, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}
	buf = make([]byte, 32)
	res = exec(t, l, rc, scsi.DirFromDevice, buf)
	good(t, rc, res)
	if last, bs := binary.BigEndian.Uint64(buf), binary.BigEndian.Uint32(buf[8:]); (last+1)*uint64(bs) != size {
		t.Fatalf("READ CAPACITY(16): %d blocks of %d bytes, want %d bytes", last+1, bs, size)
	}
}

// TestReadWrite: data written through the LUN's storage.Device is on
// the backend's disk, and data put on the disk reads back through it,
// aligned and not.
func TestReadWrite(t *testing.T) {
	disks := memDisks(1<<20, "/img/a")
	r := newRig(t, rigConfig{disks: disks}, "/img/a, 0:0:0:0")
	dev := r.device(r.lun(addr("0:0:0:0")))
	if in := dev.Info(); in.Size != 1<<20 || in.LogicalBlockSize != 512 || in.ReadOnly {
		t.Fatalf("Info %+v", in)
	}
	disk := disks["/img/a"]
	want := bytes.Repeat([]byte("vscsifront "), 1000)[:8192]
	if _, err := dev.WriteAt(want, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := disk.ReadAt(got, 4096); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the disk holds %q... (%v)", got[:20], err)
	}
	if _, err := disk.WriteAt([]byte("from the disk"), 100003); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, 13)
	if _, err := dev.ReadAt(got, 100003); err != nil || string(got) != "from the disk" {
		t.Fatalf("read %q (%v)", got, err)
	}
	if _, err := dev.ReadAt(got, 1<<20-5); err != storage.ErrOutOfRange {
		t.Fatalf("read past the end: %v", err)
	}
}

// TestDiscardReadsZerosOverTheWholeRange: on a device that reads unmapped
// blocks as zeros, a discard of any range, block-aligned or not, reads
// back as zeros over exactly that range (UNMAP takes the whole blocks,
// writes the partial ends), and the bytes around it stay.
func TestDiscardReadsZerosOverTheWholeRange(t *testing.T) {
	r := newRig(t, rigConfig{disks: memDisks(1<<20, "/img/a")}, "/img/a, 0:0:0:0")
	dev := r.device(r.lun(addr("0:0:0:0")))
	if in := dev.Info(); !in.CanDiscard || !in.DiscardZeroes {
		t.Fatalf("Info %+v: the memory disk's LUN should discard, reading zeros", in)
	}
	for _, c := range []struct{ off, n int64 }{
		{4096, 8192},   // whole blocks
		{1000, 30000},  // partial head and tail
		{1000, 20},     // within one block
		{1000, 100},    // across one block boundary, no whole block
		{65536, 700},   // a whole block and a partial tail
		{66000, 48},    // a partial head ending on a boundary
		{131072, 1024}, // two whole blocks
	} {
		if _, err := dev.WriteAt(bytes.Repeat([]byte{0xee}, 256<<10), 0); err != nil {
			t.Fatal(err)
		}
		if err := dev.Discard(c.off, c.n, false); err != nil {
			t.Fatalf("Discard(%d, %d): %v", c.off, c.n, err)
		}
		got := make([]byte, 256<<10)
		if _, err := dev.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		for i, b := range got {
			want := byte(0xee)
			if int64(i) >= c.off && int64(i) < c.off+c.n {
				want = 0
			}
			if b != want {
				t.Fatalf("Discard(%d, %d): byte %d = %#x, want %#x", c.off, c.n, i, b, want)
			}
		}
	}
}

// TestStorageConformance runs the block-device conformance suite on a
// LUN's storage.Device: every operation travels as SCSI commands on the
// vscsiif ring to the backend's emulation over a memory disk.
func TestStorageConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
		r := newRig(t, rigConfig{sgGrant: 1024, disks: memDisks(size, "/img/a")}, "/img/a, 0:0:0:0")
		return r.device(r.lun(addr("0:0:0:0")))
	})
}

// A LUN is what the control socket serves (`xenblk scsi`, `xenblk pr`).
var _ control.Target = (*vscsifront.LUN)(nil)
