package sim

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenblk/xenblk/xen"
)

func boundPair(t testing.TB, g, d0 xen.Domain) (front, back xen.Channel) {
	t.Helper()
	f, err := g.Events().AllocUnbound(d0.ID())
	if err != nil {
		t.Fatal(err)
	}
	b, err := d0.Events().BindInterdomain(g.ID(), f.Port())
	if err != nil {
		t.Fatal(err)
	}
	return f, b
}

func TestMaskPendingTimeout(t *testing.T) {
	_, d0, g := newTestHost(t)
	f, b := boundPair(t, g, d0)
	if b.Pending() {
		t.Fatal("pending before any notification")
	}
	start := time.Now()
	if ok, err := b.Wait(30 * time.Millisecond); ok || err != nil {
		t.Fatalf("wait with nothing sent: %v %v", ok, err)
	}
	if time.Since(start) < 25*time.Millisecond {
		t.Fatal("Wait returned before its timeout")
	}
	f.Notify()
	if !b.Pending() || b.Pending() {
		t.Fatal("Pending must report one notification, then clear it")
	}
	b.Mask()
	f.Notify()
	if ok, _ := b.Wait(20 * time.Millisecond); ok {
		t.Fatal("a masked port woke Wait")
	}
	b.Unmask()
	if ok, err := b.Wait(time.Second); !ok || err != nil {
		t.Fatalf("a notification sent while masked was not delivered on Unmask: %v %v", ok, err)
	}
	if _, err := g.Events().BindInterdomain(0, b.Port()); err == nil {
		t.Fatal("bound to a port not offered")
	}
	if _, err := d0.Events().BindInterdomain(g.ID(), f.Port()); err == nil {
		t.Fatal("bound an already bound port twice")
	}
	b.Close()
	if err := b.Notify(); !errors.Is(err, xen.ErrClosed) {
		t.Fatalf("notify on a closed port: %v", err)
	}
	if err := f.Notify(); !errors.Is(err, xen.ErrClosed) {
		t.Fatalf("notify towards a closed peer: %v", err)
	}
	if _, err := f.Wait(time.Second); !errors.Is(err, xen.ErrClosed) {
		t.Fatalf("wait after the peer closed: %v", err)
	}
}

func TestEventHotPathAllocatesNothing(t *testing.T) {
	_, d0, g := newTestHost(t)
	f, b := boundPair(t, g, d0)
	allocs := testing.AllocsPerRun(1000, func() {
		f.Notify()
		b.Wait(0)
		f.Notify()
		b.Pending()
	})
	if allocs != 0 {
		t.Fatalf("notify/wait/pending allocate %.1f times per round", allocs)
	}
}

// A guest flooding its port costs its peer one wake-up per Wait and
// nobody else anything: another pair keeps its round-trip pace and the
// store stays responsive.
func TestFloodingGuestStarvesNoOne(t *testing.T) {
	h, d0, flooder := newTestHost(t)
	victim, err := h.NewDomain("victim")
	if err != nil {
		t.Fatal(err)
	}
	ff, fb := boundPair(t, flooder, d0)
	vf, vb := boundPair(t, victim, d0)
	var stop atomic.Bool
	var sent atomic.Int64
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for !stop.Load() {
			ff.Notify()
			sent.Add(1)
		}
	}()
	go func() { // the flooder's backend drains it, as a queue would
		for !stop.Load() {
			fb.Wait(10 * time.Millisecond)
		}
	}()
	go func() {
		for {
			if _, err := vb.Wait(0); err != nil {
				return
			}
			vb.Notify()
		}
	}()
	const rounds = 2000
	start := time.Now()
	for i := 0; i < rounds; i++ {
		vf.Notify()
		if ok, err := vf.Wait(5 * time.Second); !ok || err != nil {
			t.Fatalf("round %d starved: %v %v", i, ok, err)
		}
	}
	if _, err := d0.Store().Read("/local/domain/2/name"); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	stop.Store(true)
	<-flooded
	vf.Close()
	t.Logf("%d round trips in %v while the flooder sent %d notifications", rounds, elapsed, sent.Load())
	if sent.Load() < rounds {
		t.Fatalf("the flooder barely ran (%d notifications): the test proves nothing", sent.Load())
	}
}

func TestGrantCopy(t *testing.T) {
	_, d0, g := newTestHost(t)
	gr, err := g.Granter().Grant(0, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	copy(gr.Mem[100:], "guest data")
	in := make([]byte, 10)
	segs := []xen.GrantCopySegment{
		{Dom: g.ID(), Ref: gr.Refs[0], Offset: 100, Local: in},
		{Dom: g.ID(), Ref: gr.Refs[0], Offset: 200, Local: []byte("dom0 data"), ToForeign: true},
		{Dom: g.ID(), Ref: 5, Local: make([]byte, 1)},
		{Dom: g.ID(), Ref: gr.Refs[0], Offset: 4090, Local: make([]byte, 10)},
		{Dom: 77, Ref: gr.Refs[0], Local: make([]byte, 1)},
	}
	if err := d0.Mapper().Copy(segs); err == nil {
		t.Fatal("Copy with bad segments reported no error")
	}
	if segs[0].Err != nil || string(in) != "guest data" {
		t.Fatalf("copy from the guest: %v %q", segs[0].Err, in)
	}
	if segs[1].Err != nil || string(gr.Mem[200:209]) != "dom0 data" {
		t.Fatalf("copy into the guest: %v", segs[1].Err)
	}
	if !errors.Is(segs[2].Err, xen.ErrBadGrant) || !errors.Is(segs[3].Err, xen.ErrBadGrant) || !errors.Is(segs[4].Err, xen.ErrNoDomain) {
		t.Fatalf("bad segments: %v / %v / %v", segs[2].Err, segs[3].Err, segs[4].Err)
	}
	// A copy leaves no mapping behind: the grant revokes at once.
	if err := g.Granter().Revoke(gr); err != nil {
		t.Fatalf("revoke after copies: %v", err)
	}
}

// BenchmarkEventPingPong is one notification each way per iteration
// between two goroutines sleeping in Wait: the cost of a wake-up.
func BenchmarkEventPingPong(b *testing.B) {
	h, err := NewHost()
	if err != nil {
		b.Fatal(err)
	}
	g, err := h.NewDomain("guest")
	if err != nil {
		b.Fatal(err)
	}
	f, k := boundPair(b, g, h.Dom0())
	go func() {
		for {
			if _, err := k.Wait(time.Second); err != nil {
				return
			}
			if k.Notify() != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Notify(); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Wait(time.Second); err != nil {
			b.Fatal(err)
		}
	}
	k.Close()
}
