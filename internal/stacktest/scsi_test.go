package stacktest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/storage"
)

func emulated(dir string, dev storage.Device) (blkback.SCSIExecutor, error) {
	return emulate.New(dev, emulate.Config{Identity: dir}), nil
}

// The extension through a backend that maps the guest's pages and
// through one that copies them (the command page, the data and the
// sense).
func TestSCSIThroughBlkif(t *testing.T) {
	t.Run("map", func(t *testing.T) { testSCSIThroughBlkif(t, blkback.Config{SCSI: emulated}) })
	t.Run("grant-copy", func(t *testing.T) { testSCSIThroughBlkif(t, blkback.Config{SCSI: emulated, GrantCopy: true}) })
}

func testSCSIThroughBlkif(t *testing.T, bcfg blkback.Config) {
	s := newStackWith(t, 8<<20, blkfront.Config{}, bcfg)
	if !s.front.Info().ExtraRequest {
		t.Fatal("feature-extra-request not negotiated")
	}
	ctx := context.Background()
	exec := func(cdb []byte, dir scsi.Direction, buf []byte) scsi.Result {
		t.Helper()
		r, err := s.front.ExecSCSI(ctx, cdb, dir, buf)
		if err != nil {
			t.Fatalf("cdb % x: %v", cdb, err)
		}
		return r
	}
	// The first command of a nexus reports POWER ON RESET, then GOOD.
	if r := exec([]byte{0x00, 0, 0, 0, 0, 0}, scsi.DirNone, nil); r.Status != scsi.StatusCheckCondition || len(r.SenseBytes()) < 14 || r.SenseBytes()[12] != 0x29 {
		t.Fatalf("first TEST UNIT READY: status %x sense % x", r.Status, r.SenseBytes())
	}
	if r := exec([]byte{0x00, 0, 0, 0, 0, 0}, scsi.DirNone, nil); r.Status != scsi.StatusGood {
		t.Fatalf("TEST UNIT READY: %x % x", r.Status, r.SenseBytes())
	}
	// INQUIRY of 36 bytes: a transfer that is not a multiple of 512.
	inq := make([]byte, 36)
	if r := exec([]byte{0x12, 0, 0, 0, 36, 0}, scsi.DirFromDevice, inq); r.Status != scsi.StatusGood || r.Resid != 0 {
		t.Fatalf("INQUIRY: %+v", r)
	}
	if !bytes.HasPrefix(inq[8:], []byte("XENBLK")) {
		t.Fatalf("INQUIRY vendor %q", inq[8:16])
	}
	// VPD B1: block device characteristics.
	b1 := make([]byte, 64)
	if r := exec([]byte{0x12, 1, 0xb1, 0, 64, 0}, scsi.DirFromDevice, b1); r.Status != scsi.StatusGood || b1[1] != 0xb1 {
		t.Fatalf("VPD B1: %+v % x", r, b1[:8])
	}
	// READ CAPACITY(16).
	rc := make([]byte, 32)
	if r := exec([]byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, scsi.DirFromDevice, rc); r.Status != scsi.StatusGood {
		t.Fatalf("READ CAPACITY(16): %+v", r)
	}
	if last := binary.BigEndian.Uint64(rc); last != 8<<20/512-1 {
		t.Fatalf("last LBA %d", last)
	}
	// WRITE(10) then READ(10) of 16 blocks, checked against the disk.
	data := bytes.Repeat([]byte("scsi-data"), 16*512/9+1)[:16*512]
	if r := exec([]byte{0x2a, 0, 0, 0, 0, 100, 0, 0, 16, 0}, scsi.DirToDevice, data); r.Status != scsi.StatusGood {
		t.Fatalf("WRITE(10): %+v", r)
	}
	if !bytes.Equal(diskBytes(t, s.disk, 100*512, 16*512), data) {
		t.Fatal("WRITE(10) did not reach the disk")
	}
	got := make([]byte, 16*512)
	if r := exec([]byte{0x28, 0, 0, 0, 0, 100, 0, 0, 16, 0}, scsi.DirFromDevice, got); r.Status != scsi.StatusGood || !bytes.Equal(got, data) {
		t.Fatalf("READ(10): %+v", r)
	}
	// A large transfer goes through an indirect request.
	big := make([]byte, 128<<10)
	if r := exec([]byte{0x28, 0, 0, 0, 0, 0, 0, 1, 0, 0}, scsi.DirFromDevice, big); r.Status != scsi.StatusGood {
		t.Fatalf("READ(10) of 256 blocks: %+v", r)
	}
	// Out of range: CHECK CONDITION, LBA OUT OF RANGE, nothing touched.
	if r := exec([]byte{0x28, 0, 0, 0, 0x40, 0, 0, 0, 1, 0}, scsi.DirFromDevice, got[:512]); r.Status != scsi.StatusCheckCondition || r.SenseBytes()[12] != 0x21 {
		t.Fatalf("READ past the end: %x % x", r.Status, r.SenseBytes())
	}
	// Ordinary I/O still works beside it.
	if _, err := s.front.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
}

func TestSCSINotOfferedByBackend(t *testing.T) {
	s := newStack(t, 1<<20, blkfront.Config{})
	if s.front.Info().ExtraRequest {
		t.Fatal("extension negotiated with a backend that does not offer it")
	}
	_, err := s.front.ExecSCSI(context.Background(), []byte{0, 0, 0, 0, 0, 0}, scsi.DirNone, nil)
	if !errors.Is(err, blkfront.ErrNotSupported) {
		t.Fatalf("ExecSCSI without the feature: %v", err)
	}
}

func TestFrontendDeclinesSCSI(t *testing.T) {
	s := newStackWith(t, 1<<20, blkfront.Config{NoSCSI: true}, blkback.Config{SCSI: emulated})
	if s.front.Info().ExtraRequest {
		t.Fatal("NoSCSI frontend negotiated the extension")
	}
	if v, _ := s.guest.Store().Read(s.vbd.FrontendPath() + "/feature-extra-request"); v != "" {
		t.Fatalf("frontend wrote feature-extra-request=%q", v)
	}
}

// The reviewer's alternative: characteristics in xenstore, including
// XenServer's sm-data INQUIRY nodes that Windows PV drivers read.
func TestCharacteristicsInXenstore(t *testing.T) {
	s := newStackWith(t, 1<<20, blkfront.Config{}, blkback.Config{SCSI: emulated})
	st := s.guest.Store()
	be := s.vbd.BackendPath()
	v, err := st.Read(be + "/sm-data/scsi/0x12/default")
	if err != nil {
		t.Fatal(err)
	}
	inq, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(inq) < 36 || !bytes.HasPrefix(inq[8:], []byte("XENBLK")) {
		t.Fatalf("sm-data INQUIRY %q: % x %v", v, inq, err)
	}
	for _, page := range []string{"0x80", "0x83"} {
		v, err := st.Read(be + "/sm-data/scsi/0x12/" + page)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := base64.StdEncoding.DecodeString(v)
		if len(b) < 4 || fmt.Sprintf("0x%02x", b[1]) != page {
			t.Fatalf("sm-data page %s: % x", page, b)
		}
	}
}
