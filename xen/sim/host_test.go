package sim

import (
	"errors"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/xen"
)

func newTestHost(t testing.TB) (*Host, *Domain, *Domain) {
	t.Helper()
	h, err := NewHost()
	if err != nil {
		t.Fatal(err)
	}
	g, err := h.NewDomain("guest")
	if err != nil {
		t.Fatal(err)
	}
	return h, h.Dom0(), g
}

func TestGrantMapBothWays(t *testing.T) {
	_, d0, g := newTestHost(t)
	gr, err := g.Granter().Grant(0, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	copy(gr.Mem[4096:], "from the guest")
	m, err := d0.Mapper().Map(g.ID(), gr.Refs, false)
	if err != nil {
		t.Fatal(err)
	}
	b := m.Bytes()
	if len(b) != 3*4096 || string(b[4096:4096+14]) != "from the guest" {
		t.Fatalf("mapping does not show the guest's page")
	}
	copy(b[8192:], "from dom0")
	if string(gr.Mem[8192:8192+9]) != "from dom0" {
		t.Fatal("guest does not see dom0's write")
	}
	if err := g.Granter().Revoke(gr); !errors.Is(err, xen.ErrGrantInUse) {
		t.Fatalf("revoke while mapped: %v, want ErrGrantInUse", err)
	}
	if err := m.Unmap(); err != nil {
		t.Fatal(err)
	}
	if err := g.Granter().Revoke(gr); err != nil {
		t.Fatalf("revoke after unmap: %v", err)
	}
	if _, err := d0.Mapper().Map(g.ID(), []xen.GrantRef{gr.Refs[0]}, true); !errors.Is(err, xen.ErrBadGrant) {
		t.Fatalf("map of a revoked ref: %v", err)
	}
}

func TestGrantOnlyToNamedDomain(t *testing.T) {
	h, d0, g := newTestHost(t)
	other, _ := h.NewDomain("other")
	gr, err := g.Granter().Grant(0, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Mapper().Map(g.ID(), gr.Refs, true); !errors.Is(err, xen.ErrBadGrant) {
		t.Fatalf("a third domain mapped a grant not made to it: %v", err)
	}
	for _, bad := range []xen.GrantRef{0, 7, 1 << 30} {
		if _, err := d0.Mapper().Map(g.ID(), []xen.GrantRef{bad}, true); !errors.Is(err, xen.ErrBadGrant) {
			t.Errorf("ref %d: %v", bad, err)
		}
	}
}

func TestReadOnlyGrant(t *testing.T) {
	_, d0, g := newTestHost(t)
	gr, err := g.Granter().Grant(0, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d0.Mapper().Map(g.ID(), gr.Refs, false); !errors.Is(err, xen.ErrBadGrant) {
		t.Fatalf("writable map of a read-only grant: %v", err)
	}
	m, err := d0.Mapper().Map(g.ID(), gr.Refs, true)
	if err != nil {
		t.Fatal(err)
	}
	m.Unmap()
	err = d0.Mapper().Copy([]xen.GrantCopySegment{{Dom: g.ID(), Ref: gr.Refs[0], Local: []byte("x"), ToForeign: true}})
	if !errors.Is(err, xen.ErrBadGrant) {
		t.Fatalf("grant copy into a read-only grant: %v", err)
	}
}

func TestEventsCoalesceAndClose(t *testing.T) {
	_, d0, g := newTestHost(t)
	fe, err := g.Events().AllocUnbound(0)
	if err != nil {
		t.Fatal(err)
	}
	be, err := d0.Events().BindInterdomain(g.ID(), fe.Port())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if err := fe.Notify(); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := be.Wait(time.Second); !ok || err != nil {
		t.Fatalf("wait: %v %v", ok, err)
	}
	if ok, _ := be.Wait(10 * time.Millisecond); ok {
		t.Fatal("notifications did not coalesce")
	}
	done := make(chan error)
	go func() { _, err := be.Wait(0); done <- err }()
	eventually.Blocked(t, 10*time.Second, "sim.(*channel).Wait", "IO wait") // the peer's close must wake it
	fe.Close()
	select {
	case err := <-done:
		if !errors.Is(err, xen.ErrClosed) {
			t.Fatalf("peer close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Wait did not wake when the peer closed")
	}
	if _, err := d0.Events().BindInterdomain(g.ID(), 999); err == nil {
		t.Fatal("bound to a port that does not exist")
	}
}

func TestNoLostWakeups(t *testing.T) {
	_, d0, g := newTestHost(t)
	a, _ := g.Events().AllocUnbound(0)
	b, _ := d0.Events().BindInterdomain(g.ID(), a.Port())
	const n = 20000
	go func() {
		for i := 0; i < n; i++ {
			b.Wait(0)
			b.Notify()
		}
	}()
	for i := 0; i < n; i++ {
		a.Notify()
		if ok, err := a.Wait(5 * time.Second); !ok || err != nil {
			t.Fatalf("ping %d lost: %v %v", i, ok, err)
		}
	}
}

func TestStorePermissionsWatchesTransactions(t *testing.T) {
	h, d0, g := newTestHost(t)
	other, _ := h.NewDomain("other")
	s0, sg, so := d0.Store(), g.Store(), other.Store()
	if err := sg.Write("data/secret", "42"); err != nil { // relative to its home
		t.Fatal(err)
	}
	if v, err := s0.Read("/local/domain/1/data/secret"); err != nil || v != "42" {
		t.Fatalf("dom0 read: %q %v", v, err)
	}
	if _, err := so.Read("/local/domain/1/data/secret"); !errors.Is(err, xen.ErrPermission) {
		t.Fatalf("another guest read a guest's node: %v", err)
	}
	if err := so.Write("/local/domain/1/data/x", "1"); !errors.Is(err, xen.ErrPermission) {
		t.Fatalf("another guest wrote into a guest's area: %v", err)
	}
	w, _ := s0.Watch("/local/domain/1/device/vbd/51712", "tok")
	defer w.Close()
	expect := func(path string) {
		t.Helper()
		select {
		case ev := <-w.Events():
			if ev.Path != path || ev.Token != "tok" {
				t.Fatalf("event %+v, want %s", ev, path)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("no event for %s", path)
		}
	}
	expect("/local/domain/1/device/vbd/51712") // at registration
	sg.Write("device/vbd/51712/state", "1")
	expect("/local/domain/1/device/vbd/51712/state")
	sg.Remove("device/vbd")
	expect("/local/domain/1/device/vbd/51712") // an ancestor went away
	// A transaction that conflicts is retried; one that fails leaves nothing.
	tries := 0
	err := s0.Transaction(func(tx xen.Tx) error {
		tries++
		if tries == 1 {
			s0.Write("/conflict", "x")
		}
		return tx.Write("/tx/node", "v")
	})
	if err != nil || tries != 2 {
		t.Fatalf("conflicting transaction: err %v tries %d", err, tries)
	}
	s0.Transaction(func(tx xen.Tx) error { tx.Write("/aborted", "v"); return errors.New("abort") })
	if _, err := s0.Read("/aborted"); !errors.Is(err, xen.ErrNotFound) {
		t.Fatal("an aborted transaction left a trace")
	}
	h.Destroy(g.ID())
	if _, err := s0.Read("/local/domain/1"); !errors.Is(err, xen.ErrNotFound) {
		t.Fatal("a destroyed domain's area survives")
	}
}
