package emulate_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/storage"
)

// change is one step of the script TestChangesUnderIOReachTheNextCommand's
// initiator carries out while two others do I/O, and what each of those
// must see from its first command begun after the step completed: the
// unit attention it is owed (reported once, to that command or to one
// that overlapped the step), and whether its reads are fenced from then
// on (RESERVATION CONFLICT, after any attention).
type change struct {
	name   string
	do     func(t *testing.T)
	ua     map[scsi.Nexus]scsi.Code
	fenced bool
}

// TestChangesUnderIOReachTheNextCommand: a command takes no lock when
// nothing is pending for its nexus (the engine's record of what each
// nexus was told, the reservation unit's idle state), yet every unit
// attention raised and every reservation taken while other nexuses do
// I/O reaches each of them at its first command begun after the change
// completed: none lost, none reported twice, no read admitted once its
// nexus is fenced, none refused before. Run it with -race: the
// lock-free reads race with the changes.
func TestChangesUnderIOReachTheNextCommand(t *testing.T) {
	dev := memDev(512, 64)
	unit, err := pr.Open(pr.NewMemoryStore(), "lu", quiet())
	if err != nil {
		t.Fatal(err)
	}
	e := emulate.New(dev, emulate.Config{Reservations: unit, Log: quiet()})
	a := scsi.Nexus{Dom: 1, Device: "vhost0"}
	b := scsi.Nexus{Dom: 2, Device: "vhost0"}
	c := scsi.Nexus{Dom: 3, Device: "vhost0"}
	tur := []byte{0, 0, 0, 0, 0, 0}
	for _, n := range []scsi.Nexus{a, b, c} {
		if code := senseOf(t, exec(e, n, tur, scsi.DirNone, nil)); code != scsi.PowerOnReset {
			t.Fatalf("%v's first command: %v", n, code)
		}
	}
	good := func(t *testing.T, what string, r *scsi.Result) {
		t.Helper()
		if !r.Good() {
			t.Fatalf("%s: status %s", what, scsi.StatusName(r.Status))
		}
	}
	prOut := func(t *testing.T, n scsi.Nexus, act pr.OutAction, typ pr.Type, p pr.OutParams) {
		t.Helper()
		param := p.Append(nil, act)
		cdb := pr.OutCommand{Action: act, Type: typ, ParamLen: uint32(len(param))}.CDB()
		good(t, act.String(), exec(e, n, cdb[:], scsi.DirToDevice, param))
	}
	wce := byte(0x04) // the caching page's WCE: the write cache starts on
	blocks := int64(64)
	var script []change
	for range 20 {
		script = append(script,
			change{name: "b and a register", do: func(t *testing.T) {
				prOut(t, b, pr.OutRegister, 0, pr.OutParams{SAKey: 0xb})
				prOut(t, a, pr.OutRegister, 0, pr.OutParams{SAKey: 0xa})
			}},
			change{name: "a resets the logical unit", do: func(*testing.T) { e.LogicalUnitReset(a) },
				ua: map[scsi.Nexus]scsi.Code{b: scsi.BusDeviceReset, c: scsi.BusDeviceReset}},
			change{name: "a changes the caching page", do: func(t *testing.T) {
				wce ^= 0x04
				page := make([]byte, 24)
				page[4], page[5], page[6] = 0x08, 18, wce
				good(t, "MODE SELECT", exec(e, a, []byte{scsi.OpModeSelect6, 0x10, 0, 0, byte(len(page)), 0}, scsi.DirToDevice, page))
			}, ua: map[scsi.Nexus]scsi.Code{b: scsi.ModeParametersChanged, c: scsi.ModeParametersChanged}},
			change{name: "the device grows", do: func(t *testing.T) {
				blocks++
				dev.Resize(blocks * 512)
				if code := senseOf(t, exec(e, a, tur, scsi.DirNone, nil)); code != scsi.CapacityDataChanged {
					t.Fatalf("a after the resize: %v", code)
				}
			}, ua: map[scsi.Nexus]scsi.Code{b: scsi.CapacityDataChanged, c: scsi.CapacityDataChanged}},
			change{name: "a reserves exclusive access", do: func(t *testing.T) {
				prOut(t, a, pr.OutReserve, pr.TypeExclusiveAccess, pr.OutParams{Key: 0xa})
			}, fenced: true},
			change{name: "a preempts b", do: func(t *testing.T) {
				prOut(t, a, pr.OutPreempt, pr.TypeExclusiveAccess, pr.OutParams{Key: 0xa, SAKey: 0xb})
			}, ua: map[scsi.Nexus]scsi.Code{b: scsi.RegistrationsPreempted}, fenced: true},
			change{name: "a clears", do: func(t *testing.T) {
				prOut(t, a, pr.OutClear, 0, pr.OutParams{Key: 0xa})
			}},
		)
	}

	// fenced reports whether the reads of a command begun after change
	// k-1 completed and ended before change k2 began were fenced at some
	// instant of it (some), or all along (!some). Before the first
	// change nothing is fenced.
	fenced := func(k, k2 int64, some bool) bool {
		for i := k - 1; i < k2; i++ {
			if (i >= 0 && script[i].fenced) == some {
				return some
			}
		}
		return !some
	}
	// done: how many changes of the script have completed; raising: how
	// many have begun. A checker reads done before a command and raising
	// after it: the command overlapped changes done..raising-1 at most.
	var done, raising atomic.Int64
	acks := make(chan int64)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(quit)
		wg.Wait()
	}()
	for _, x := range []scsi.Nexus{b, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			told := make([]bool, len(script))
			var acked int64
			data := make([]byte, 512)
			for {
				select {
				case <-quit:
					return
				default:
				}
				k := done.Load()
				r := exec(e, x, scsitest.Read10(0, 1), scsi.DirFromDevice, data)
				k2 := raising.Load()
				switch {
				case r.Status == scsi.StatusCheckCondition:
					s, _, _ := scsi.ParseSense(r.SenseBytes())
					owed := false
					for i := max(k-1, 0); i < k2; i++ {
						if !told[i] && script[i].ua[x] == s.Code {
							told[i], owed = true, true
							break
						}
					}
					if !owed {
						t.Errorf("%v: unit attention %v owed by no change in %d..%d", x, s.Code, k-1, k2-1)
					}
				case r.Status == scsi.StatusReservationConflict:
					if !fenced(k, k2, true) {
						t.Errorf("%v: RESERVATION CONFLICT after %q, nothing fences it", x, script[max(k-1, 0)].name)
					}
				case r.Good():
					if fenced(k, k2, false) {
						t.Errorf("%v: read admitted after %q", x, script[k-1].name)
					}
				default:
					t.Errorf("%v: status %s", x, scsi.StatusName(r.Status))
				}
				if k > 0 && script[k-1].ua[x] != (scsi.Code{}) && !told[k-1] {
					t.Errorf("%v: %v of %q lost", x, script[k-1].ua[x], script[k-1].name)
				}
				if k > acked {
					acked = k
					select {
					case acks <- k:
					case <-quit:
						return
					}
				}
			}
		}()
	}
	for i, ch := range script {
		raising.Store(int64(i + 1))
		ch.do(t)
		done.Store(int64(i + 1))
		// Both checkers must have run a command begun after the change.
		for range 2 {
			if got := <-acks; got != int64(i+1) {
				t.Fatalf("ack for change %d, want %d", got, i+1)
			}
		}
	}
}

// BenchmarkReadAdmission is the engine's own work for a 512-byte READ(16)
// on a unit with reservations, none held: everything but the device's
// (a null device).
func BenchmarkReadAdmission(b *testing.B) {
	unit, err := pr.Open(pr.NewMemoryStore(), "lu", quiet())
	if err != nil {
		b.Fatal(err)
	}
	e := emulate.New(storage.Null{Size: 1 << 30}, emulate.Config{Reservations: unit, Log: quiet()})
	n := scsi.Nexus{Dom: 1, Device: "vhost0"}
	cmd := &scsi.Command{CDB: scsitest.Read16(64, 1), Dir: scsi.DirFromDevice, Data: make([]byte, 512)}
	var res scsi.Result
	e.Execute(n, cmd, &res)
	b.ReportAllocs()
	for b.Loop() {
		e.Execute(n, cmd, &res)
	}
	if !res.Good() {
		b.Fatal(scsi.StatusName(res.Status))
	}
}
