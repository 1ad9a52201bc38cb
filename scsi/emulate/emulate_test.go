package emulate_test

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestConformance(t *testing.T) {
	scsitest.Run(t, func(t *testing.T, dev storage.Device) scsitest.Target {
		return emulate.New(dev, emulate.Config{Identity: "test/" + t.Name(), Log: quiet()})
	})
}

func memDev(bs uint32, blocks int64) *scsitest.Memory {
	return scsitest.NewMemory(storage.Info{Size: blocks * int64(bs), LogicalBlockSize: bs, PhysicalBlockSize: bs, CanFlush: true})
}

func exec(e *emulate.Engine, n scsi.Nexus, cdb []byte, dir scsi.Direction, data []byte) *scsi.Result {
	res := new(scsi.Result)
	e.Execute(n, &scsi.Command{CDB: cdb, Dir: dir, Data: data}, res)
	return res
}

func senseOf(t *testing.T, r *scsi.Result) scsi.Code {
	t.Helper()
	s, _, ok := scsi.ParseSense(r.SenseBytes())
	if !ok {
		t.Fatalf("status %s with unparseable sense % x", scsi.StatusName(r.Status), r.SenseBytes())
	}
	return s.Code
}

func TestIdentityIsStableAndDistinct(t *testing.T) {
	a := emulate.New(memDev(512, 8), emulate.Config{Identity: "vm1/xvda"})
	b := emulate.New(memDev(512, 8), emulate.Config{Identity: "vm1/xvda"})
	c := emulate.New(memDev(512, 8), emulate.Config{Identity: "vm1/xvdb"})
	if a.NAA() != b.NAA() || a.Serial() != b.Serial() {
		t.Fatalf("same identity gave different designators")
	}
	if a.NAA() == c.NAA() || a.Serial() == c.Serial() {
		t.Fatalf("different identities gave the same designators")
	}
	naa := a.NAA()
	if naa[0] != 0x60 || naa[1] != 0x01 || naa[2] != 0x63 || naa[3]>>4 != 0xe {
		t.Fatalf("NAA % x does not carry NAA 6 and OUI 00-16-3E", naa[:4])
	}
}

func TestPolicyDeniesOpcodeAndServiceActionAndLogs(t *testing.T) {
	pol, err := scsi.ParsePolicy("default,-0x2a,-0x9e/0x12", scsi.EmulatedPolicy())
	if err != nil {
		t.Fatal(err)
	}
	var logbuf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logbuf, mu: &mu}, nil))
	e := emulate.New(memDev(512, 64), emulate.Config{Policy: pol, Log: log})
	n := scsi.Nexus{Dom: 3, Device: "xvda"}
	exec(e, n, []byte{0, 0, 0, 0, 0, 0}, scsi.DirNone, nil) // power-on UA
	r := exec(e, n, scsitest.Write10(0, 1), scsi.DirToDevice, make([]byte, 512))
	if c := senseOf(t, r); c != scsi.InvalidOpcode {
		t.Fatalf("denied WRITE(10): %v", c)
	}
	gls := make([]byte, 16)
	gls[0], gls[1], gls[13] = scsi.OpServiceActionIn16, scsi.SAGetLBAStatus, 32
	r = exec(e, n, gls, scsi.DirFromDevice, make([]byte, 32))
	if c := senseOf(t, r); c != scsi.InvalidFieldInCDB {
		t.Fatalf("denied GET LBA STATUS: %v", c)
	}
	rc := make([]byte, 16)
	rc[0], rc[1], rc[13] = scsi.OpServiceActionIn16, scsi.SAReadCapacity16, 32
	if r = exec(e, n, rc, scsi.DirFromDevice, make([]byte, 32)); !r.Good() {
		t.Fatalf("READ CAPACITY(16) denied with its sibling action")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logbuf.String(), "denied by policy") || !strings.Contains(logbuf.String(), "WRITE(10)") {
		t.Fatalf("no log line for a denial: %q", logbuf.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// fakeReservations reserves the device for one domain and queues a unit
// attention for others.
type fakeReservations struct {
	mu     sync.Mutex
	holder uint16
	ua     map[scsi.Nexus]scsi.Code
	calls  []byte
}

func (f *fakeReservations) Conflict(n scsi.Nexus, cdb []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holder != 0 && n.Dom != f.holder && !scsi.IsPersistentReservation(cdb[0]) && cdb[0] != scsi.OpInquiry
}

func (f *fakeReservations) Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result, desc bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, cmd.CDB[0])
	switch cmd.CDB[0] {
	case scsi.OpReserve6:
		f.holder = n.Dom
	case scsi.OpPersistentReserveIn:
		k := copy(cmd.Data, []byte{0, 0, 0, 1, 0, 0, 0, 0})
		res.Resid = len(cmd.Data) - k
	case scsi.OpPersistentReserveOut:
		for nx := range f.ua {
			f.ua[nx] = scsi.ReservationsPreempted
		}
		res.Resid = -5 // a buggy engine: Execute must clamp it
	}
}

func (f *fakeReservations) UnitAttention(n scsi.Nexus) (scsi.Code, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ua[n]
	if ok && c != (scsi.Code{}) {
		f.ua[n] = scsi.Code{}
		return c, true
	}
	return scsi.Code{}, false
}

func TestReservationsHookRoutesConflictsAndUnitAttentions(t *testing.T) {
	a, b := scsi.Nexus{Dom: 1, Device: "xvda"}, scsi.Nexus{Dom: 2, Device: "xvda"}
	fr := &fakeReservations{ua: map[scsi.Nexus]scsi.Code{b: {}}}
	e := emulate.New(memDev(512, 64), emulate.Config{Reservations: fr, Log: quiet()})
	tur := []byte{0, 0, 0, 0, 0, 0}
	exec(e, a, tur, scsi.DirNone, nil)
	exec(e, b, tur, scsi.DirNone, nil)
	if r := exec(e, a, []byte{scsi.OpReserve6, 0, 0, 0, 0, 0}, scsi.DirNone, nil); !r.Good() {
		t.Fatalf("RESERVE(6) not routed: %s", scsi.StatusName(r.Status))
	}
	if r := exec(e, b, scsitest.Read10(0, 1), scsi.DirFromDevice, make([]byte, 512)); r.Status != scsi.StatusReservationConflict || r.SenseLen != 0 {
		t.Fatalf("other nexus got %s, want RESERVATION CONFLICT", scsi.StatusName(r.Status))
	}
	if r := exec(e, a, scsitest.Read10(0, 1), scsi.DirFromDevice, make([]byte, 512)); !r.Good() {
		t.Fatalf("holder refused")
	}
	in := make([]byte, 10)
	in[0], in[8] = scsi.OpPersistentReserveIn, 64
	if r := exec(e, a, in, scsi.DirFromDevice, make([]byte, 64)); !r.Good() || r.Resid != 56 {
		t.Fatalf("PR IN: %s resid %d", scsi.StatusName(r.Status), r.Resid)
	}
	out := make([]byte, 10)
	out[0], out[8] = scsi.OpPersistentReserveOut, 24
	if r := exec(e, a, out, scsi.DirToDevice, make([]byte, 24)); r.Resid != 24 {
		t.Fatalf("a negative residual from the reservation engine leaked: %d", r.Resid)
	}
	fr.mu.Lock()
	fr.holder = 0
	fr.mu.Unlock()
	if c := senseOf(t, exec(e, b, tur, scsi.DirNone, nil)); c != scsi.ReservationsPreempted {
		t.Fatalf("pending UA %v, want RESERVATIONS PREEMPTED", c)
	}
	if r := exec(e, b, tur, scsi.DirNone, nil); !r.Good() {
		t.Fatalf("UA reported twice")
	}
}

func TestReservationCommandsUnsupportedWithoutEngine(t *testing.T) {
	e := emulate.New(memDev(512, 64), emulate.Config{Log: quiet()})
	n := scsi.Nexus{Dom: 1}
	exec(e, n, []byte{0, 0, 0, 0, 0, 0}, scsi.DirNone, nil)
	if c := senseOf(t, exec(e, n, []byte{scsi.OpReserve6, 0, 0, 0, 0, 0}, scsi.DirNone, nil)); c != scsi.InvalidOpcode {
		t.Fatalf("RESERVE(6) without a reservation engine: %v", c)
	}
}

func TestUnmapUnsupportedWithoutDiscard(t *testing.T) {
	e := emulate.New(memDev(512, 64), emulate.Config{Log: quiet()})
	n := scsi.Nexus{Dom: 1}
	exec(e, n, []byte{0, 0, 0, 0, 0, 0}, scsi.DirNone, nil)
	r := exec(e, n, []byte{scsi.OpUnmap, 0, 0, 0, 0, 0, 0, 0, 24, 0}, scsi.DirToDevice, make([]byte, 24))
	if c := senseOf(t, r); c != scsi.InvalidOpcode {
		t.Fatalf("UNMAP on a device without discard: %v", c)
	}
}

func TestCompareAndWriteIsAtomic(t *testing.T) {
	// Many nexuses increment a counter in block 0 with COMPARE AND WRITE;
	// every success must be a distinct increment.
	dev := memDev(512, 8)
	e := emulate.New(dev, emulate.Config{Log: quiet()})
	const workers, tries = 4, 60
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(dom uint16) {
			defer wg.Done()
			n := scsi.Nexus{Dom: dom}
			exec(e, n, []byte{0, 0, 0, 0, 0, 0}, scsi.DirNone, nil)
			for i := 0; i < tries; i++ {
				cur := make([]byte, 512)
				exec(e, n, scsitest.Read10(0, 1), scsi.DirFromDevice, cur)
				next := make([]byte, 512)
				binary.BigEndian.PutUint64(next, binary.BigEndian.Uint64(cur)+1)
				cdb := make([]byte, 16)
				cdb[0], cdb[13] = scsi.OpCompareAndWrite, 1
				if r := exec(e, n, cdb, scsi.DirToDevice, append(cur, next...)); r.Good() {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}
		}(uint16(w + 1))
	}
	wg.Wait()
	if got := binary.BigEndian.Uint64(dev.Contents()); got != uint64(wins) || wins == 0 {
		t.Fatalf("counter %d after %d successful COMPARE AND WRITEs", got, wins)
	}
}

func TestReadWriteAllocateNothing(t *testing.T) {
	unit, err := pr.Open(pr.NewMemoryStore(), "lu", quiet())
	if err != nil {
		t.Fatal(err)
	}
	e := emulate.New(memDev(512, 1024), emulate.Config{Reservations: unit, Log: quiet()})
	n := scsi.Nexus{Dom: 1, Device: "xvda"}
	buf := make([]byte, 4096)
	rd := &scsi.Command{CDB: scsitest.Read10(8, 8), Dir: scsi.DirFromDevice, Data: buf}
	wr := &scsi.Command{CDB: scsitest.Write10(8, 8), Dir: scsi.DirToDevice, Data: buf}
	var res scsi.Result
	e.Execute(n, rd, &res)
	for _, cmd := range []*scsi.Command{rd, wr} {
		if a := testing.AllocsPerRun(200, func() { e.Execute(n, cmd, &res) }); a != 0 || !res.Good() {
			t.Fatalf("%s: %v allocs per command (status %s)", scsi.OpName(cmd.CDB[0]), a, scsi.StatusName(res.Status))
		}
	}
}

func BenchmarkRead10_4KiB(b *testing.B) {
	e := emulate.New(memDev(512, 1<<14), emulate.Config{Log: quiet()})
	n := scsi.Nexus{Dom: 1, Device: "xvda"}
	cmd := &scsi.Command{CDB: scsitest.Read10(64, 8), Dir: scsi.DirFromDevice, Data: make([]byte, 4096)}
	var res scsi.Result
	e.Execute(n, cmd, &res)
	b.ReportAllocs()
	b.SetBytes(4096)
	for b.Loop() {
		e.Execute(n, cmd, &res)
	}
	if !res.Good() {
		b.Fatal(scsi.StatusName(res.Status))
	}
}

func TestModeSelectAndResizeRaiseUnitAttentionsForOthers(t *testing.T) {
	dev := memDev(512, 64)
	e := emulate.New(dev, emulate.Config{Log: quiet()})
	a, b := scsi.Nexus{Dom: 1, Device: "xvda"}, scsi.Nexus{Dom: 2, Device: "xvda"}
	tur := []byte{0, 0, 0, 0, 0, 0}
	for _, n := range []scsi.Nexus{a, b} {
		if c := senseOf(t, exec(e, n, tur, scsi.DirNone, nil)); c != scsi.PowerOnReset {
			t.Fatalf("first command: %v", c)
		}
	}
	// a turns the write cache off.
	page := []byte{0, 0, 0, 0, 0x08, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if r := exec(e, a, []byte{scsi.OpModeSelect6, 0x10, 0, 0, byte(len(page)), 0}, scsi.DirToDevice, page); !r.Good() {
		t.Fatalf("MODE SELECT WCE=0: %v", senseOf(t, r))
	}
	if r := exec(e, a, tur, scsi.DirNone, nil); !r.Good() {
		t.Fatalf("the nexus that changed the page got %v", senseOf(t, r))
	}
	if c := senseOf(t, exec(e, b, tur, scsi.DirNone, nil)); c != scsi.ModeParametersChanged {
		t.Fatalf("other nexus: %v, want MODE PARAMETERS CHANGED", c)
	}
	// Write-through now: every write flushes.
	before := dev.Flushes.Load()
	exec(e, a, scsitest.Write10(0, 1), scsi.DirToDevice, make([]byte, 512))
	if dev.Flushes.Load() == before {
		t.Fatalf("WCE=0 write did not flush")
	}
	dev.Resize(128 * 512)
	for _, n := range []scsi.Nexus{a, b} {
		if c := senseOf(t, exec(e, n, tur, scsi.DirNone, nil)); c != scsi.CapacityDataChanged {
			t.Fatalf("after resize: %v, want CAPACITY DATA HAS CHANGED", c)
		}
		if r := exec(e, n, scsitest.Read10(127, 1), scsi.DirFromDevice, make([]byte, 512)); !r.Good() {
			t.Fatalf("read of a grown block: %v", senseOf(t, r))
		}
	}
}

func TestUnmapParameterListIsFetchedOnce(t *testing.T) {
	mem := scsitest.NewMemory(storage.Info{Size: 64 * 512, LogicalBlockSize: 512, PhysicalBlockSize: 512, CanDiscard: true, DiscardZeroes: true})
	// onDiscard lets the test act as a guest that rewrites its buffer
	// while the engine is working on it (the engine runs in this goroutine).
	var onDiscard func()
	dev := &storagetest.Hooks{Device: mem, OnDiscard: func(off, n int64) error {
		if f := onDiscard; f != nil {
			onDiscard = nil
			f()
		}
		return nil
	}}
	guard := &storagetest.Guard{Device: dev}
	e := emulate.New(guard, emulate.Config{Log: quiet()})
	n := scsi.Nexus{Dom: 1}
	exec(e, n, []byte{0, 0, 0, 0, 0, 0}, scsi.DirNone, nil)
	param := make([]byte, 8+32)
	binary.BigEndian.PutUint16(param[0:], 6+32)
	binary.BigEndian.PutUint16(param[2:], 32)
	binary.BigEndian.PutUint32(param[16:], 1)  // LBA 0, 1 block
	binary.BigEndian.PutUint64(param[24:], 10) // LBA 10
	binary.BigEndian.PutUint32(param[32:], 1)  // 1 block
	onDiscard = func() {                       // after validation, point the second descriptor far away
		binary.BigEndian.PutUint64(param[24:], 1<<40)
	}
	if r := exec(e, n, []byte{scsi.OpUnmap, 0, 0, 0, 0, 0, 0, 0, byte(len(param)), 0}, scsi.DirToDevice, param); !r.Good() {
		t.Fatalf("UNMAP: %v", senseOf(t, r))
	}
	if v := guard.Violations(); len(v) > 0 {
		t.Fatalf("the rewritten descriptor reached the device: %v", v)
	}
	if mem.Discards.Load() != 2 {
		t.Fatalf("%d discards, want 2", mem.Discards.Load())
	}
}

// TestLogicalUnitResetTellsEveryOtherNexus: a reset received on one
// nexus is reported once, as BUS DEVICE RESET FUNCTION OCCURRED, to every
// other nexus of the logical unit, of this engine and of another engine
// sharing its Resets (a second vbd or vhost on the disk), never to the
// nexus that reset; an SPC-2 reservation ends with it, a nexus that has
// not spoken yet gets only POWER ON RESET.
func TestLogicalUnitResetTellsEveryOtherNexus(t *testing.T) {
	dev := memDev(512, 64)
	unit, err := pr.Open(pr.NewMemoryStore(), "lu", quiet())
	if err != nil {
		t.Fatal(err)
	}
	resets := new(scsi.Resets)
	e1 := emulate.New(dev, emulate.Config{Reservations: unit, Resets: resets, Log: quiet()})
	e2 := emulate.New(dev, emulate.Config{Reservations: unit, Resets: resets, Log: quiet()})
	a, b := scsi.Nexus{Dom: 1, Device: "vhost0"}, scsi.Nexus{Dom: 1, Device: "vhost1"}
	c, late := scsi.Nexus{Dom: 2, Device: "vhost0"}, scsi.Nexus{Dom: 3, Device: "vhost0"}
	tur := []byte{0, 0, 0, 0, 0, 0}
	on := map[scsi.Nexus]*emulate.Engine{a: e1, b: e1, c: e2, late: e2}
	for _, n := range []scsi.Nexus{a, b, c} {
		if code := senseOf(t, exec(on[n], n, tur, scsi.DirNone, nil)); code != scsi.PowerOnReset {
			t.Fatalf("%v's first command: %v", n, code)
		}
	}
	if r := exec(e2, c, []byte{scsi.OpReserve6, 0, 0, 0, 0, 0}, scsi.DirNone, nil); !r.Good() {
		t.Fatalf("RESERVE(6): %v", senseOf(t, r))
	}
	write := scsitest.Write10(0, 1)
	if r := exec(e1, b, write, scsi.DirToDevice, make([]byte, 512)); r.Status != scsi.StatusReservationConflict {
		t.Fatalf("WRITE against another's SPC-2 reservation: status %s", scsi.StatusName(r.Status))
	}

	e1.LogicalUnitReset(a)
	if r := exec(e1, a, tur, scsi.DirNone, nil); !r.Good() {
		t.Fatalf("the nexus that reset: %v", senseOf(t, r))
	}
	for _, n := range []scsi.Nexus{b, c} {
		if code := senseOf(t, exec(on[n], n, tur, scsi.DirNone, nil)); code != scsi.BusDeviceReset {
			t.Fatalf("%v after another's reset: %v, want BUS DEVICE RESET FUNCTION OCCURRED", n, code)
		}
		if r := exec(on[n], n, tur, scsi.DirNone, nil); !r.Good() {
			t.Fatalf("%v told twice: %v", n, senseOf(t, r))
		}
	}
	if code := senseOf(t, exec(e2, late, tur, scsi.DirNone, nil)); code != scsi.PowerOnReset {
		t.Fatalf("a nexus first speaking after the reset: %v, want POWER ON RESET", code)
	}
	if r := exec(e2, late, tur, scsi.DirNone, nil); !r.Good() {
		t.Fatalf("a nexus first speaking after the reset, told twice: %v", senseOf(t, r))
	}
	if r := exec(e1, b, write, scsi.DirToDevice, make([]byte, 512)); !r.Good() {
		t.Fatalf("WRITE after the reset ended the SPC-2 reservation: status %s", scsi.StatusName(r.Status))
	}
}
