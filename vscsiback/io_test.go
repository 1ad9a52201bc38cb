package vscsiback_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsiif"
)

// pattern fills b with bytes that differ per offset and seed.
func pattern(b []byte, seed byte) {
	for i := range b {
		b[i] = seed + byte(i*31+i>>9)
	}
}

// newDisk is a 4 MiB memory disk holding a pattern.
func newDisk(t testing.TB) *storage.Memory {
	dev := storage.NewMemory(4 << 20)
	img := make([]byte, 4<<20)
	pattern(img, 3)
	if _, err := dev.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	return dev
}

// image reads n bytes of dev at off.
func image(t *testing.T, dev storage.Device, off int64, n int) []byte {
	b := make([]byte, n)
	if _, err := dev.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBasicCommands: the commands a guest's SCSI layer sends first and
// most, over the ring, the answers checked against the disk behind it.
func TestBasicCommands(t *testing.T) {
	r := newRig(t)
	dev := newDisk(t)
	lun := at{0, 0, 0}
	f := r.vhost("1/0", 0, vscsiback.LUN{Engine: r.engine("disk", dev)})

	// The first command of the nexus meets the power-on unit attention,
	// its sense carried back in the response.
	checkCondition(t, f.do(f.cdb(lun, tur, vscsiif.DirNone, 0)), scsi.PowerOnReset)
	good(t, f.do(f.cdb(lun, tur, vscsiif.DirNone, 0)))

	// INQUIRY into a 96-byte buffer: the data and the residual.
	rsp := f.do(f.cdb(lun, []byte{scsi.OpInquiry, 0, 0, 0, 96, 0}, vscsiif.DirFromDevice, 96))
	good(t, rsp)
	inq := f.page(0)[:96-rsp.ResidualLen]
	if len(inq) < 36 || strings.TrimSpace(string(inq[8:16])) != "XENBLK" || inq[0] != 0 {
		t.Fatalf("INQUIRY data % x (residual %d)", inq, rsp.ResidualLen)
	}

	// READ CAPACITY(16): last LBA and block size of the 4 MiB disk.
	rc := make([]byte, 16)
	rc[0], rc[1] = scsi.OpServiceActionIn16, scsi.SAReadCapacity16
	binary.BigEndian.PutUint32(rc[10:], 32)
	rsp = f.do(f.cdb(lun, rc, vscsiif.DirFromDevice, 32))
	good(t, rsp)
	if last, bs := binary.BigEndian.Uint64(f.page(0)), binary.BigEndian.Uint32(f.page(0)[8:]); last != 4<<20/512-1 || bs != 512 || rsp.ResidualLen != 0 {
		t.Fatalf("READ CAPACITY(16): last LBA %d, block %d, residual %d", last, bs, rsp.ResidualLen)
	}

	// READ(10), READ(16) of 3 pages: the image's bytes; WRITE(10),
	// WRITE(16) of 2: the image holds what the guest wrote.
	for i, tc := range []struct {
		cdb    []byte
		lba    int64
		blocks int
		dir    uint8
	}{
		{scsitest.Read10(8, 24), 8, 24, vscsiif.DirFromDevice},
		{scsitest.Read16(100, 24), 100, 24, vscsiif.DirFromDevice},
		{scsitest.Write10(16, 16), 16, 16, vscsiif.DirToDevice},
		{scsitest.Write16(2000, 16), 2000, 16, vscsiif.DirToDevice},
	} {
		n := tc.blocks * 512
		data := f.data.Mem[:n]
		if tc.dir == vscsiif.DirToDevice {
			pattern(data, byte(40+i))
		} else {
			clear(data)
		}
		good(t, f.do(f.cdb(lun, tc.cdb, tc.dir, n)))
		if !bytes.Equal(data, image(t, dev, tc.lba*512, n)) {
			t.Fatalf("%s: the guest's pages and the image differ", scsi.OpName(tc.cdb[0]))
		}
	}
}

// TestIllegalRequestSense: a command the engine refuses comes back as
// CHECK CONDITION with its sense (ILLEGAL REQUEST, INVALID COMMAND
// OPERATION CODE) in the response, host OK, no data.
func TestIllegalRequestSense(t *testing.T) {
	_, _, f := oneLUN(t, 0)
	rsp := f.do(f.cdb(at{}, []byte{0xc5, 0, 0, 0, 0, 0}, vscsiif.DirFromDevice, 512))
	checkCondition(t, rsp, scsi.InvalidOpcode)
	if rsp.ResidualLen != 512 {
		t.Fatalf("residual %d, want 512 (nothing moved)", rsp.ResidualLen)
	}
}

// TestReportLUNs: REPORT LUNS lists the vhost's LUNs at the addressed
// channel and target (the engine alone knows only its own unit), as the
// guest addresses them, and truncates to the allocation length.
func TestReportLUNs(t *testing.T) {
	r := newRig(t)
	f := r.vhost("1/0", 0,
		r.lun(at{0, 0, 5}, "d5", newDisk(t)), r.lun(at{0, 0, 0}, "d0", newDisk(t)),
		r.lun(at{0, 1, 0}, "t1", newDisk(t)), r.lun(at{0, 0, 300}, "d300", newDisk(t)), r.lun(at{1, 0, 1}, "c1", newDisk(t)))
	reportLUNs := func(a at, alloc byte) ([]byte, vscsiif.Response) {
		clear(f.data.Mem[:4096])
		rsp := f.do(f.cdb(a, []byte{scsi.OpReportLuns, 0, 0, 0, 0, 0, 0, 0, 0, alloc, 0, 0}, vscsiif.DirFromDevice, 256))
		good(t, rsp)
		return f.data.Mem[:256-rsp.ResidualLen], rsp
	}
	want := []byte{0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 1, 44, 0, 0, 0, 0, 0, 0}
	if got, _ := reportLUNs(at{0, 0, 5}, 255); !bytes.Equal(got, want) {
		t.Fatalf("REPORT LUNS at 0:0:5: % x\nwant % x", got, want)
	}
	if got, _ := reportLUNs(at{0, 0, 0}, 16); !bytes.Equal(got, want[:16]) {
		t.Fatalf("REPORT LUNS with 16 bytes allocated: % x", got)
	}
	if got, _ := reportLUNs(at{0, 1, 0}, 255); !bytes.Equal(got, []byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("REPORT LUNS at 0:1:0: % x", got)
	}
}

// carelessEngine answers every command CHECK CONDITION with the sense
// bytes of sense (SenseLen set, the buffer's other bytes left as they
// were), or, with none, sets nothing at all: an engine that does not
// start from scsi.Result.Reset.
type carelessEngine struct{ sense [][]byte }

func (e *carelessEngine) Execute(_ scsi.Nexus, _ *scsi.Command, res *scsi.Result) {
	if len(e.sense) == 0 {
		return
	}
	res.Status = scsi.StatusCheckCondition
	res.SenseLen = copy(res.Sense[:], e.sense[0])
	e.sense = e.sense[1:]
}

// TestNoStaleSense: a response carries its own command's sense bytes
// and zeros past them, whatever an earlier command's result left in the
// buffer the backend reuses; and a command its engine sets nothing for
// is GOOD, with no sense (the backend starts each result from GOOD and
// an empty sense, and clears the response before encoding it).
func TestNoStaleSense(t *testing.T) {
	long := bytes.Repeat([]byte{0xab}, scsi.MaxSense)
	long[0] = 0x70
	short := []byte{0x70, 0, scsi.KeyNotReady, 0, 0, 0, 0, 0}
	r := newRig(t)
	f := r.vhost("1/0", 0, vscsiback.LUN{Engine: &carelessEngine{sense: [][]byte{long, short}}})
	raw := func() []byte {
		t.Helper()
		if !f.ready() {
			t.Fatal("no response")
		}
		l := vscsiif.LayoutOf(f.abi)
		sense := bytes.Clone(f.ring.Response()[l.RspSense : l.RspSense+vscsiif.SenseBufferSize])
		f.ring.Consume(1)
		return sense
	}
	f.push(f.cdb(at{}, tur, vscsiif.DirNone, 0))
	if got := raw(); !bytes.Equal(got, long[:vscsiif.SenseBufferSize]) {
		t.Fatalf("first response's sense: % x", got)
	}
	f.push(f.cdb(at{}, tur, vscsiif.DirNone, 0))
	if got := raw(); !bytes.Equal(got, append(bytes.Clone(short), make([]byte, vscsiif.SenseBufferSize-len(short))...)) {
		t.Fatalf("second response's sense carries stale bytes: % x", got)
	}
	rsp := f.do(f.cdb(at{}, tur, vscsiif.DirNone, 0))
	good(t, rsp)
	if rsp.SenseLen != 0 {
		t.Fatalf("a command its engine set nothing for: sense_len %d", rsp.SenseLen)
	}
}
