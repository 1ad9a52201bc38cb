package sgio_test

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/scsi/sgio"
	"github.com/xenblk/xenblk/scsi/sgio/sgiotest"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestConformanceOverFakeSGIO(t *testing.T) {
	scsitest.Run(t, func(t *testing.T, dev storage.Device) scsitest.Target {
		p, err := sgio.New(sgiotest.NewDiskWithoutPR(dev), sgio.Config{Policy: scsi.EmulatedPolicy(), Log: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
}

func setup(t *testing.T, cfg sgio.Config) (*sgio.Passthrough, *sgiotest.Disk, scsi.Nexus) {
	mem := scsitest.NewMemory(storage.Info{Size: 64 * 512, LogicalBlockSize: 512, PhysicalBlockSize: 512, CanFlush: true})
	fd := sgiotest.NewDiskWithoutPR(mem)
	if cfg.Log == nil {
		cfg.Log = quiet()
	}
	p, err := sgio.New(fd, cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := scsi.Nexus{Dom: 4, Device: "sda"}
	var res scsi.Result
	p.Execute(n, &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}}, &res) // power-on UA
	return p, fd, n
}

func run(p *sgio.Passthrough, n scsi.Nexus, cdb []byte, dir scsi.Direction, data []byte) *scsi.Result {
	var res scsi.Result
	p.Execute(n, &scsi.Command{CDB: cdb, Dir: dir, Data: data}, &res)
	return &res
}

func code(r *scsi.Result) scsi.Code {
	s, _, _ := scsi.ParseSense(r.SenseBytes())
	return s.Code
}

func TestCapacityReadPastDiskUnitAttention(t *testing.T) {
	p, _, _ := setup(t, sgio.Config{})
	if b, bs := p.Capacity(); b != 64 || bs != 512 {
		t.Fatalf("capacity %d x %d, want 64 x 512", b, bs)
	}
}

func TestOutOfRangeNeverReachesTheDisk(t *testing.T) {
	p, fd, n := setup(t, sgio.Config{Policy: scsi.EmulatedPolicy()})
	for _, cdb := range [][]byte{
		scsitest.Read16(64, 1), scsitest.Read16(^uint64(0), 2), scsitest.Write10(63, 2),
		{scsi.OpWriteSame16, 0, 0, 0, 0, 0, 0, 0, 0, 70, 0, 0, 0, 1, 0, 0},
		{scsi.OpCompareAndWrite, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 1, 0, 0},
	} {
		r := run(p, n, cdb, scsi.DirToDevice, make([]byte, 1024))
		if r.Status != scsi.StatusCheckCondition || code(r) != scsi.LBAOutOfRange {
			t.Errorf("%s: %s %v, want LBA OUT OF RANGE", scsi.OpName(cdb[0]), scsi.StatusName(r.Status), code(r))
		}
		if fd.Saw(cdb[0]) {
			t.Errorf("%s reached the disk", scsi.OpName(cdb[0]))
		}
	}
	unmap := make([]byte, 24)
	unmap[3] = 16
	unmap[8+7] = 60 // LBA 60
	unmap[8+11] = 8 // 8 blocks: past 64
	r := run(p, n, []byte{scsi.OpUnmap, 0, 0, 0, 0, 0, 0, 0, 24, 0}, scsi.DirToDevice, unmap)
	if code(r) != scsi.LBAOutOfRange || fd.Saw(scsi.OpUnmap) {
		t.Fatalf("UNMAP past the end: %v, reached disk %v", code(r), fd.Saw(scsi.OpUnmap))
	}
}

func TestDefaultPolicyKeepsDangerousCommandsFromTheDisk(t *testing.T) {
	p, fd, n := setup(t, sgio.Config{})
	for _, cdb := range [][]byte{
		{scsi.OpWriteBuffer, 0x05, 0, 0, 0, 0, 0, 0x10, 0, 0},
		{scsi.OpModeSelect6, 0x10, 0, 0, 12, 0},
		{0x04, 0, 0, 0, 0, 0}, // FORMAT UNIT
	} {
		r := run(p, n, cdb, scsi.DirToDevice, make([]byte, 4096))
		if code(r) != scsi.InvalidOpcode || fd.Saw(cdb[0]) {
			t.Errorf("%s: %v, reached disk %v", scsi.OpName(cdb[0]), code(r), fd.Saw(cdb[0]))
		}
	}
	if r := run(p, n, scsitest.Read10(0, 1), scsi.DirFromDevice, make([]byte, 512)); !r.Good() {
		t.Fatalf("READ(10) refused by the default policy")
	}
}

type conflictAll struct{ executed int }

func (c *conflictAll) Conflict(n scsi.Nexus, cdb []byte) bool { return cdb[0] == scsi.OpWrite10 }
func (c *conflictAll) Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result, desc bool) {
	c.executed++
}
func (c *conflictAll) UnitAttention(scsi.Nexus) (scsi.Code, bool) { return scsi.Code{}, false }

func TestReservationsEmulatedOrPassedThrough(t *testing.T) {
	pr := &conflictAll{}
	p, fd, n := setup(t, sgio.Config{Reservations: pr})
	out := []byte{scsi.OpPersistentReserveOut, 0, 0, 0, 0, 0, 0, 0, 24, 0}
	if r := run(p, n, out, scsi.DirToDevice, make([]byte, 24)); !r.Good() || pr.executed != 1 || fd.Saw(out[0]) {
		t.Fatalf("emulated PR OUT: %s, engine calls %d, reached disk %v", scsi.StatusName(r.Status), pr.executed, fd.Saw(out[0]))
	}
	if r := run(p, n, scsitest.Write10(0, 1), scsi.DirToDevice, make([]byte, 512)); r.Status != scsi.StatusReservationConflict || fd.Saw(scsi.OpWrite10) {
		t.Fatalf("conflicting WRITE: %s", scsi.StatusName(r.Status))
	}
	p2, fd2, n2 := setup(t, sgio.Config{})
	run(p2, n2, out, scsi.DirToDevice, make([]byte, 24))
	if !fd2.Saw(out[0]) {
		t.Fatalf("PR OUT not passed through without an emulating engine")
	}
}

func TestTransportFailures(t *testing.T) {
	p, fd, n := setup(t, sgio.Config{})
	fd.Fail(0x03, nil) // DID_TIME_OUT
	if r := run(p, n, scsitest.Read10(0, 1), scsi.DirFromDevice, make([]byte, 512)); code(r).Key != scsi.KeyAbortedCommand {
		t.Fatalf("host error gave %v", code(r))
	}
	fd.Fail(0, errors.New("EIO"))
	if r := run(p, n, scsitest.Read10(0, 1), scsi.DirFromDevice, make([]byte, 512)); code(r) != scsi.InternalTargetFailure {
		t.Fatalf("ioctl error gave %v", code(r))
	}
}

func TestPassthroughReadAllocatesNothing(t *testing.T) {
	p, _, n := setup(t, sgio.Config{})
	cmd := &scsi.Command{CDB: scsitest.Read10(8, 8), Dir: scsi.DirFromDevice, Data: make([]byte, 4096)}
	var res scsi.Result
	p.Execute(n, cmd, &res)
	if a := testing.AllocsPerRun(200, func() { p.Execute(n, cmd, &res) }); a != 0 || !res.Good() {
		t.Fatalf("%v allocs per READ(10), status %s", a, scsi.StatusName(res.Status))
	}
}

func FuzzPassthrough(f *testing.F) {
	f.Add(scsitest.Read16(60, 4), byte(2), make([]byte, 4096))
	f.Add([]byte{scsi.OpUnmap, 0, 0, 0, 0, 0, 0, 0, 24, 0}, byte(1), make([]byte, 24))
	f.Add([]byte{scsi.OpRequestSense, 1, 0, 0, 252, 0}, byte(2), make([]byte, 252))
	f.Fuzz(func(t *testing.T, cdb []byte, dir byte, data []byte) {
		mem := scsitest.NewMemory(storage.Info{Size: 64 * 512, LogicalBlockSize: 512, PhysicalBlockSize: 512, CanFlush: true, CanDiscard: true})
		guard := &storagetest.Guard{Device: mem}
		p, err := sgio.New(sgiotest.NewDiskWithoutPR(guard), sgio.Config{Policy: scsi.EmulatedPolicy(), Log: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		var res scsi.Result
		p.Execute(scsi.Nexus{Dom: 1}, &scsi.Command{CDB: cdb, Dir: scsi.Direction(dir % 3), Data: data}, &res)
		if v := guard.Violations(); len(v) > 0 {
			t.Fatalf("out-of-device access: %v", v)
		}
		if res.Resid < 0 || res.Resid > len(data) || res.SenseLen < 0 || res.SenseLen > scsi.MaxSense {
			t.Fatalf("malformed result %+v", res)
		}
	})
}
