package linux

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/xen"
)

// These tests need a real Xen host (dom0 with /dev/xen/*). `make xenlab`
// runs this package's compiled test binary inside the Xen lab, where they
// run; elsewhere they skip, saying so.
func realXen(t *testing.T) *Domain {
	t.Helper()
	if !Available() {
		if os.Getenv("XENBLK_REQUIRE_XEN") != "" {
			t.Fatalf("XENBLK_REQUIRE_XEN is set but %s is missing", DevPrivcmd)
		}
		t.Skipf("SKIP: not on Xen (%s missing); these run in `make xenlab`", DevPrivcmd)
	}
	d, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestIoctlNumbers(t *testing.T) {
	// Values computed by hand from _IOC(_IOC_NONE, type, nr, size).
	for name, c := range map[string]struct{ got, want uint }{
		"gntdev map":     {IoctlGntdevMapGrantRef, 0x184700},
		"gntdev copy":    {IoctlGntdevGrantCopy, 0x104708},
		"gntalloc alloc": {IoctlGntallocAllocGref, 0x184705},
		"evtchn notify":  {IoctlEvtchnNotify, 0x44504},
		"evtchn reset":   {IoctlEvtchnReset, 0x4505},
	} {
		if c.got != c.want {
			t.Errorf("%s: %#x, want %#x", name, c.got, c.want)
		}
	}
}

func TestGrantMapRoundTrip(t *testing.T) {
	d := realXen(t)
	self := d.ID()
	g, err := d.Granter().Grant(self, 4, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Granter().Revoke(g)
	for i := range g.Mem {
		g.Mem[i] = byte(i * 7)
	}
	m, err := d.Mapper().Map(self, g.Refs, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Bytes(), g.Mem) {
		t.Fatal("the mapping does not show the granted pages")
	}
	m.Bytes()[5000] = 0xAB
	if g.Mem[5000] != 0xAB {
		t.Fatal("a write through the mapping is not in the granted page")
	}
	if err := m.Unmap(); err != nil {
		t.Fatal(err)
	}
}

func TestReadOnlyGrant(t *testing.T) {
	d := realXen(t)
	g, err := d.Granter().Grant(d.ID(), 1, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Granter().Revoke(g)
	if m, err := d.Mapper().Map(d.ID(), g.Refs, false); err == nil {
		m.Unmap()
		t.Fatal("a writable map of a read-only grant succeeded")
	} else if !errors.Is(err, xen.ErrBadGrant) {
		t.Fatalf("error %v is not ErrBadGrant", err)
	}
	m, err := d.Mapper().Map(d.ID(), g.Refs, true)
	if err != nil {
		t.Fatalf("read-only map of a read-only grant: %v", err)
	}
	m.Unmap()
}

func TestRevokedGrantRefused(t *testing.T) {
	d := realXen(t)
	g, err := d.Granter().Grant(d.ID(), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	refs := append([]xen.GrantRef(nil), g.Refs...)
	if err := d.Granter().Revoke(g); err != nil {
		t.Fatal(err)
	}
	if m, err := d.Mapper().Map(d.ID(), refs, false); err == nil {
		m.Unmap()
		t.Fatal("a revoked grant was mapped")
	}
	if m, err := d.Mapper().Map(d.ID(), []xen.GrantRef{1 << 30}, false); err == nil {
		m.Unmap()
		t.Fatal("an out-of-range grant was mapped")
	}
}

func TestGrantCopy(t *testing.T) {
	d := realXen(t)
	g, err := d.Granter().Grant(d.ID(), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Granter().Revoke(g)
	copy(g.Mem[100:], "from the granted page")
	in := make([]byte, 21)
	out := []byte("into the granted page")
	segs := []xen.GrantCopySegment{
		{Dom: d.ID(), Ref: g.Refs[0], Offset: 100, Local: in},
		{Dom: d.ID(), Ref: g.Refs[0], Offset: 2000, Local: out, ToForeign: true},
		{Dom: d.ID(), Ref: 1 << 30, Offset: 0, Local: make([]byte, 8)},
	}
	err = d.Mapper().Copy(segs)
	if !errors.Is(err, xen.ErrBadGrant) || segs[2].Err == nil {
		t.Fatalf("a copy from a bad ref: err %v, segment err %v", err, segs[2].Err)
	}
	if segs[0].Err != nil || segs[1].Err != nil {
		t.Fatalf("good segments failed: %v, %v", segs[0].Err, segs[1].Err)
	}
	if string(in) != "from the granted page" {
		t.Fatalf("copied in %q", in)
	}
	if string(g.Mem[2000:2021]) != "into the granted page" {
		t.Fatalf("copied out %q", g.Mem[2000:2021])
	}
}

// TestGrantCopyBatch: whole pages out to and back from several grants in
// one ioctl each, as a backend's pass copies its requests' data; a batch
// larger than the last grows the staging area, a repeated one allocates
// nothing.
func TestGrantCopyBatch(t *testing.T) {
	d := realXen(t)
	const pages = 8
	g, err := d.Granter().Grant(d.ID(), pages, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Granter().Revoke(g)
	out, in := make([]byte, pages*xen.PageSize), make([]byte, pages*xen.PageSize)
	for i := range out {
		out[i] = byte(i*7 + i/xen.PageSize)
	}
	batch := func(n int, buf []byte, toForeign bool) []xen.GrantCopySegment {
		segs := make([]xen.GrantCopySegment, n)
		for i := range segs {
			segs[i] = xen.GrantCopySegment{Dom: d.ID(), Ref: g.Refs[i], Local: buf[i*xen.PageSize : (i+1)*xen.PageSize], ToForeign: toForeign}
		}
		return segs
	}
	if err := d.Mapper().Copy(batch(2, out, true)); err != nil {
		t.Fatal(err)
	}
	if err := d.Mapper().Copy(batch(pages, out, true)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.Mem, out) {
		t.Fatal("the granted pages do not hold what was copied into them")
	}
	back := batch(pages, in, false)
	if err := d.Mapper().Copy(back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, out) {
		t.Fatal("copied back bytes differ from the granted pages")
	}
	if n := testing.AllocsPerRun(20, func() {
		if err := d.Mapper().Copy(back); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("a repeated batch of %d pages allocates %v times", pages, n)
	}
}

func TestEventChannels(t *testing.T) {
	d := realXen(t)
	a, err := d.Events().AllocUnbound(d.ID())
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Events().BindInterdomain(d.ID(), a.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if ok, err := a.Wait(20 * time.Millisecond); ok || err != nil {
		t.Fatalf("a fresh channel woke: %v %v", ok, err)
	}
	for i := 0; i < 100; i++ {
		if err := b.Notify(); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := a.Wait(5 * time.Second); !ok || err != nil {
		t.Fatalf("notified channel did not wake: %v %v", ok, err)
	}
	if err := a.Notify(); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, "the other direction's notification", b.Pending)
	done := make(chan error, 1)
	// The hundred notifications may reach a's device more than once (each
	// unmask can deliver a notification that came while it was masked),
	// so a wake-up is not the end: only Close ends this Wait.
	go func() {
		for {
			if ok, err := a.Wait(0); err != nil || !ok {
				done <- err
				return
			}
		}
	}()
	eventually.Blocked(t, 5*time.Second, "linux.(*channel).Wait", "syscall") // in ppoll: Close must wake it
	a.Close()
	select {
	case err := <-done:
		if !errors.Is(err, xen.ErrClosed) {
			t.Fatalf("Wait across Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Wait")
	}
}

func TestUnmapNotify(t *testing.T) {
	d := realXen(t)
	g, err := d.Granter().Grant(d.ID(), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Granter().Revoke(g)
	a, err := d.Events().AllocUnbound(d.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := d.Events().BindInterdomain(d.ID(), a.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m, err := d.Mapper().Map(d.ID(), g.Refs, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.(interface{ NotifyOnUnmap(xen.Port) error }).NotifyOnUnmap(b.Port()); err != nil {
		t.Fatal(err)
	}
	m.Unmap()
	if ok, err := a.Wait(5 * time.Second); !ok || err != nil {
		t.Fatalf("no event on unmap: %v %v", ok, err)
	}
}

func TestStore(t *testing.T) {
	d := realXen(t)
	t.Run("Open", func(t *testing.T) { testStore(t, d.Store(), d.ID()) })
	t.Run("XenbusDevice", func(t *testing.T) {
		c, err := DialXenbus()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		testStore(t, c, d.ID())
	})
}

// testStore reads, watches, writes and removes through st.
func testStore(t *testing.T, st xen.Store, self xen.DomID) {
	p, err := st.DomainPath(self)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Read(p + "/name"); err != nil {
		t.Fatalf("read our name: %v", err)
	}
	w, err := st.Watch(p+"/data/xenblk-test", "tok")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	<-w.Events() // the event every watch fires at registration
	if err := st.Write(p+"/data/xenblk-test", "1"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.Events():
		if ev.Token != "tok" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event")
	}
	if err := st.Transaction(func(tx xen.Tx) error { return tx.Write(p+"/data/xenblk-test", "2") }); err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if v, err := st.Read(p + "/data/xenblk-test"); err != nil || v != "2" {
		t.Fatalf("after the transaction: %q %v", v, err)
	}
	st.Remove(p + "/data/xenblk-test")
}
