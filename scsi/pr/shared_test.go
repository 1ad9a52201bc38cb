package pr

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr/lease"
)

// cutStore is a shared store a host can be cut off from.
type cutStore struct {
	Store
	cut *atomic.Bool
}

var errCut = errors.New("store unreachable")

func (c cutStore) Load(lu string) ([]byte, uint64, error) {
	if c.cut.Load() {
		return nil, 0, errCut
	}
	return c.Store.Load(lu)
}

func (c cutStore) CompareAndSwap(lu string, old uint64, data []byte) (uint64, error) {
	if c.cut.Load() {
		return 0, errCut
	}
	return c.Store.CompareAndSwap(lu, old, data)
}

// host is one host's unit of a shared logical unit.
type host struct {
	t   *testing.T
	u   *Unit
	cut atomic.Bool
}

// testLease is short so that a revoking change's hold costs the test
// little (nothing in the test waits for it but the engine itself), and
// long enough that a check right after a refresh finds the lease fresh
// on a loaded machine.
var testLease = lease.Config{Term: 300 * time.Millisecond, Margin: 20 * time.Millisecond}

func newHost(t *testing.T, shared Store) *host {
	h := &host{t: t}
	u, err := OpenShared(cutStore{shared, &h.cut}, "naa.6001405", nil, testLease)
	if err != nil {
		t.Fatal(err)
	}
	h.u = u
	return h
}

// age moves the unit's clock on by d: its lease runs out without the
// test sleeping.
func (h *host) age(d time.Duration) {
	h.u.mu.Lock()
	h.u.epoch = h.u.epoch.Add(-d)
	h.u.mu.Unlock()
}

func (h *host) out(n string, sa OutAction, typ Type, key, saKey uint64) string {
	h.t.Helper()
	cdb, param := prOut(sa, typ, key, saKey, false)
	var res scsi.Result
	h.u.Execute(nexuses[n], &scsi.Command{CDB: cdb, Dir: scsi.DirToDevice, Data: param}, &res, false)
	return describe(&res)
}

func (h *host) mustOut(n string, sa OutAction, typ Type, key, saKey uint64) {
	h.t.Helper()
	if got := h.out(n, sa, typ, key, saKey); got != "GOOD" {
		h.t.Fatalf("%s %v from %s: %s", sa, typ, n, got)
	}
}

var (
	read10  = []byte{scsi.OpRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	write10 = []byte{scsi.OpWrite10, 0, 0, 0, 0, 0, 0, 0, 1, 0}
)

// The fencing bound: once a PREEMPT AND ABORT completes on host B, host A
// admits no write from the preempted nexus, although A heard nothing of
// the change (no watch, no refresh): by the time B's command completes,
// A's lease has run out and A fails closed.
func TestPreemptCompletesOnlyOnceOtherHostsAreFenced(t *testing.T) {
	shared := NewMemoryStore()
	a, b := newHost(t, shared), newHost(t, shared)
	a.mustOut("A", OutRegisterAndIgnore, 0, 0, 0xa)
	a.mustOut("A", OutReserve, TypeWriteExclusiveRegOnly, 0xa, 0)
	b.mustOut("B", OutRegisterAndIgnore, 0, 0, 0xb) // a version conflict, reloaded and retried
	if err := a.u.Refresh(); err != nil {
		t.Fatal(err)
	}
	if a.u.Conflict(nexuses["A"], write10) {
		t.Fatal("the holder's write refused before any preempt")
	}
	start := time.Now()
	b.mustOut("B", OutPreemptAndAbort, TypeWriteExclusiveRegOnly, 0xb, 0xa)
	if held := time.Since(start); held < testLease.Hold() {
		t.Fatalf("PREEMPT AND ABORT completed after %v, before the hold %v", held, testLease.Hold())
	}
	if !a.u.Conflict(nexuses["A"], write10) {
		t.Fatal("host A admits the preempted nexus's write after the preempt completed on host B")
	}
	// A catches up: A's write is refused by the reservation now, its read
	// admitted (registrants-only types let anyone read); B writes.
	if err := a.u.Refresh(); err != nil {
		t.Fatal(err)
	}
	if !a.u.Conflict(nexuses["A"], write10) || a.u.Conflict(nexuses["A"], read10) {
		t.Fatal("after the refresh, host A does not judge by the preempted state")
	}
	if err := b.u.Refresh(); err != nil { // Follow's work, a hold later
		t.Fatal(err)
	}
	if b.u.Conflict(nexuses["B"], write10) {
		t.Fatal("the preempting nexus's write refused")
	}
	// The unit attention queued on host B reaches nexus A on host A, once.
	if c, ok := a.u.UnitAttention(nexuses["A"]); !ok || c != scsi.RegistrationsPreempted {
		t.Fatalf("A's unit attention: %v %v, want REGISTRATIONS PREEMPTED", c, ok)
	}
	if _, ok := a.u.UnitAttention(nexuses["A"]); ok {
		t.Fatal("the attention was reported twice")
	}
	if err := b.u.Refresh(); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.u.UnitAttention(nexuses["A"]); ok {
		t.Fatal("the attention taken on host A is still pending on host B (a guest that moved would see it again)")
	}
}

// A change that only widens what is admitted (a registration, a release)
// completes without the hold.
func TestWideningChangesAreNotHeld(t *testing.T) {
	shared := NewMemoryStore()
	a := newHost(t, shared)
	a.mustOut("A", OutRegisterAndIgnore, 0, 0, 0xa)
	start := time.Now()
	a.mustOut("B", OutRegisterAndIgnore, 0, 0, 0xb)
	a.mustOut("A", OutRelease, TypeWriteExclusive, 0xa, 0)
	if d := time.Since(start); d >= testLease.Hold() {
		t.Fatalf("two widening changes took %v, at least a hold", d)
	}
}

// A host cut off from the store: its admissions go on while the lease
// lasts, then every read and write that the reservation could refuse is
// refused (commands every initiator needs still run), PR commands fail
// with a clear status, and all comes back with the store.
func TestCutOffHostFailsClosedThenRecovers(t *testing.T) {
	shared := NewMemoryStore()
	a := newHost(t, shared)
	a.mustOut("A", OutRegisterAndIgnore, 0, 0, 0xa)
	a.cut.Store(true)
	if a.u.Conflict(nexuses["A"], write10) {
		t.Fatal("refused within the lease")
	}
	a.age(testLease.Term)
	if err := a.u.Refresh(); !errors.Is(err, errCut) {
		t.Fatalf("refresh while cut off: %v", err)
	}
	if !a.u.Stats().FailClosed {
		t.Fatal("not reported as failed closed")
	}
	for _, cdb := range [][]byte{read10, write10} {
		if !a.u.Conflict(nexuses["A"], cdb) {
			t.Fatalf("op %#x admitted after the lease ran out", cdb[0])
		}
	}
	if a.u.Conflict(nexuses["A"], []byte{scsi.OpInquiry, 0, 0, 0, 36, 0}) {
		t.Fatal("INQUIRY refused: it needs no reservation")
	}
	if got := a.out("A", OutReserve, TypeWriteExclusive, 0xa, 0); got != "CHECK CONDITION 04/44/00" {
		t.Fatalf("RESERVE while cut off: %s, want INTERNAL TARGET FAILURE", got)
	}
	a.cut.Store(false)
	if err := a.u.Refresh(); err != nil {
		t.Fatal(err)
	}
	if a.u.Stats().FailClosed || a.u.Conflict(nexuses["A"], write10) {
		t.Fatal("not recovered once the store answers")
	}
}

// The watch installs a newer state at once (the fence usually takes
// effect long before the hold), and never an older one.
func TestObserveInstallsNewerStates(t *testing.T) {
	shared := NewMemoryStore()
	a, b := newHost(t, shared), newHost(t, shared)
	a.mustOut("A", OutRegisterAndIgnore, 0, 0, 0xa)
	a.mustOut("A", OutReserve, TypeExclusiveAccess, 0xa, 0)
	data, v, _ := shared.Load("naa.6001405")
	st, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	b.u.Observe(Change{LU: "naa.6001405", State: st, Version: v})
	if !b.u.Conflict(nexuses["B"], read10) {
		t.Fatal("host B does not see A's EXCLUSIVE ACCESS it was told of")
	}
	b.u.Observe(Change{LU: "naa.6001405", Version: v - 1})
	if !b.u.Conflict(nexuses["B"], read10) {
		t.Fatal("an older state replaced a newer one")
	}
}

// A host that opens a shared unit does not power it on: the other host's
// registrations (without APTPL) and reservation stay.
func TestOpenSharedKeepsOtherHostsRegistrations(t *testing.T) {
	shared := NewMemoryStore()
	a := newHost(t, shared)
	a.mustOut("A", OutRegisterAndIgnore, 0, 0, 0xa)
	a.mustOut("A", OutReserve, TypeWriteExclusive, 0xa, 0)
	b := newHost(t, shared)
	b.mustOut("B", OutRegisterAndIgnore, 0, 0, 0xb)
	if s := a.u.State(); len(s.Registrations) != 1 {
		t.Fatalf("host A's cache before a refresh: %+v", s)
	}
	if err := a.u.Refresh(); err != nil {
		t.Fatal(err)
	}
	if s := a.u.State(); len(s.Registrations) != 2 || !s.Reserved || s.Holder != nexuses["A"] {
		t.Fatalf("after host B opened the unit: %+v", s)
	}
}

// The admission check on a shared unit allocates nothing, fresh or not.
func TestSharedConflictAllocatesNothing(t *testing.T) {
	a := newHost(t, NewMemoryStore())
	a.mustOut("A", OutRegisterAndIgnore, 0, 0, 0xa)
	a.mustOut("A", OutReserve, TypeWriteExclusive, 0xa, 0)
	for _, aged := range []bool{false, true} {
		if aged {
			a.age(testLease.Term)
		}
		if n := testing.AllocsPerRun(100, func() {
			a.u.Conflict(nexuses["B"], write10)
			a.u.UnitAttention(nexuses["B"])
		}); n != 0 {
			t.Fatalf("aged=%v: %v allocations per admission", aged, n)
		}
	}
}

// Revokes, on the changes that matter: true whenever a nexus admitted
// before may be refused after.
func TestRevokes(t *testing.T) {
	A, B := nexuses["A"], nexuses["B"]
	regs := []Registration{{A, 1}, {B, 2}}
	wero := State{Registrations: regs, Reserved: true, Type: TypeWriteExclusiveRegOnly, Holder: A}
	cases := []struct {
		name      string
		old, next State
		want      bool
	}{
		{"register", State{}, State{Registrations: regs}, false},
		{"reserve", State{Registrations: regs}, wero, true},
		{"preempt the holder", wero, State{Registrations: regs[1:], Reserved: true, Type: TypeWriteExclusiveRegOnly, Holder: B}, true},
		{"preempt a registrant", wero, State{Registrations: regs[:1], Reserved: true, Type: TypeWriteExclusiveRegOnly, Holder: A}, true},
		{"type change", wero, State{Registrations: regs, Reserved: true, Type: TypeExclusiveAccessRegOnly, Holder: A}, true},
		{"new key, same nexuses", wero, State{Registrations: []Registration{{A, 9}, {B, 2}}, Reserved: true, Type: TypeWriteExclusiveRegOnly, Holder: A}, false},
		{"release", wero, State{Registrations: regs}, false},
		{"clear", wero, State{}, false},
		{"SPC-2 reserve", State{}, State{Legacy: &A}, true},
		{"SPC-2 release", State{Legacy: &A}, State{}, false},
	}
	for _, c := range cases {
		if got := Revokes(&c.old, &c.next); got != c.want {
			t.Errorf("%s: Revokes = %v, want %v", c.name, got, c.want)
		}
	}
}

// stuckStore's Load waits until released: a store slow to answer.
type stuckStore struct {
	Store
	entered, release chan struct{}
}

func (s stuckStore) Load(lu string) ([]byte, uint64, error) {
	close(s.entered)
	<-s.release
	return s.Store.Load(lu)
}

// A lease renewal that waits on the store does not hold up admissions:
// the read is made without the unit's lock.
func TestRefreshDoesNotHoldUpAdmissions(t *testing.T) {
	shared := NewMemoryStore()
	a := newHost(t, shared)
	a.mustOut("A", OutRegisterAndIgnore, 0, 0, 0xa)
	stuck := stuckStore{Store: shared, entered: make(chan struct{}), release: make(chan struct{})}
	a.u.store = stuck
	refreshed := make(chan error)
	go func() { refreshed <- a.u.Refresh() }()
	<-stuck.entered
	checked := make(chan bool)
	go func() { checked <- a.u.Conflict(nexuses["B"], read10) }()
	select {
	case <-checked:
	case <-time.After(10 * time.Second):
		t.Fatal("an admission waited for the lease renewal's read")
	}
	close(stuck.release)
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
}

// The admission check on a reserved unit: local (file or memory store)
// and shared (a lease judged per check; the unit opened on the state a
// local unit reserved, so that no hold is waited for).
func BenchmarkConflict(b *testing.B) {
	store := NewMemoryStore()
	local, _ := Open(store, "lu", nil)
	for _, step := range []struct {
		sa       OutAction
		typ      Type
		key, sak uint64
	}{{OutRegisterAndIgnore, 0, 0, 0xa}, {OutReserve, TypeWriteExclusiveRegOnly, 0xa, 0}} {
		cdb, param := prOut(step.sa, step.typ, step.key, step.sak, false)
		var res scsi.Result
		local.Execute(nexuses["A"], &scsi.Command{CDB: cdb, Dir: scsi.DirToDevice, Data: param}, &res, false)
	}
	shared, err := OpenShared(store, "lu", nil, lease.Config{Term: time.Hour})
	if err != nil || !shared.State().Reserved {
		b.Fatalf("shared unit: %v, %+v", err, shared.State())
	}
	for name, u := range map[string]*Unit{"local": local, "shared": shared} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				u.Conflict(nexuses["B"], write10)
			}
		})
	}
}
