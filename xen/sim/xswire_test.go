package sim

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenstore/wire"
)

// Shorthands shared with the other wire tests of this package.
const (
	xsHeaderSize = wire.HeaderSize
	xsRead       = uint32(wire.Read)
	xsError      = uint32(wire.Error)
)

func xsMessage(typ uint32, payload string) []byte {
	return xsTxMessage(typ, 0, payload)
}

func xsTxMessage(typ, tx uint32, payload string) []byte {
	return wire.AppendMessage(nil, wire.Header{Type: wire.Type(typ), ReqID: 7, TxID: tx}, []byte(payload))
}

// rawConn is a test's end of a wire connection to the host.
type rawConn struct {
	t *testing.T
	c net.Conn
}

func dialRaw(t *testing.T, h *Host, dom uint16) *rawConn {
	a, b := net.Pipe()
	go h.serveXenstoreConn(b, xenDom(dom))
	a.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { a.Close() })
	return &rawConn{t, a}
}

func (r *rawConn) next() (wire.Header, string) {
	r.t.Helper()
	var hdr [wire.HeaderSize]byte
	if _, err := io.ReadFull(r.c, hdr[:]); err != nil {
		r.t.Fatal(err)
	}
	m, err := wire.ParseHeader(hdr[:])
	if err != nil {
		r.t.Fatal(err)
	}
	p := make([]byte, m.Len)
	if _, err := io.ReadFull(r.c, p); err != nil {
		r.t.Fatal(err)
	}
	return m, string(p)
}

func (r *rawConn) ask(typ wire.Type, tx uint32, payload string) (wire.Type, string) {
	r.t.Helper()
	if _, err := r.c.Write(xsTxMessage(uint32(typ), tx, payload)); err != nil {
		r.t.Fatal(err)
	}
	m, p := r.next()
	return m.Type, p
}

func TestXenstoreWireErrorsAndWatches(t *testing.T) {
	h, err := NewHost()
	if err != nil {
		t.Fatal(err)
	}
	a := dialRaw(t, h, 0)
	if typ, p := a.ask(wire.Read, 0, "/nope\x00"); typ != wire.Error || p != "ENOENT\x00" {
		t.Fatalf("read of a missing node: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Write, 0, "/a/b\x00hello"); typ != wire.Write || p != "OK\x00" {
		t.Fatalf("write: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Read, 0, "/a/b\x00"); typ != wire.Read || p != "hello" {
		t.Fatalf("read: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Watch, 0, "/a\x00tok\x00"); typ != wire.Watch || p != "OK\x00" {
		t.Fatalf("watch: %v %q", typ, p)
	}
	// The registration event follows the reply.
	if m, p := a.next(); m.Type != wire.WatchEvent || p != "/a\x00tok\x00" {
		t.Fatalf("watch event: %v %q", m.Type, p)
	}
	if typ, p := a.ask(wire.Watch, 0, "/a\x00tok\x00"); typ != wire.Error || p != "EEXIST\x00" {
		t.Fatalf("duplicate watch: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Type(99), 0, ""); typ != wire.Error || p != "ENOSYS\x00" {
		t.Fatalf("unknown type: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Read, 0, "/a\x00/b\x00"); typ != wire.Error || p != "EINVAL\x00" {
		t.Fatalf("two paths to read: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Read, 42, "/a/b\x00"); typ != wire.Error || p != "ENOENT\x00" {
		t.Fatalf("read in an unknown transaction: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.GetDomainPath, 0, "3\x00"); typ != wire.GetDomainPath || p != "/local/domain/3\x00" {
		t.Fatalf("domain path: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.IsDomainIntroduced, 0, "0\x00"); typ != wire.IsDomainIntroduced || p != "T\x00" {
		t.Fatalf("dom0 introduced: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.IsDomainIntroduced, 0, "77\x00"); typ != wire.IsDomainIntroduced || p != "F\x00" {
		t.Fatalf("unknown domain introduced: %v %q", typ, p)
	}
}

func TestXenstoreWireTransactions(t *testing.T) {
	h, err := NewHost()
	if err != nil {
		t.Fatal(err)
	}
	a := dialRaw(t, h, 0)
	typ, id := a.ask(wire.TransactionStart, 0, "\x00")
	if typ != wire.TransactionStart || id == "" {
		t.Fatalf("start: %v %q", typ, id)
	}
	tx := uint32(mustAtoi(t, strings.TrimSuffix(id, "\x00")))
	if typ, p := a.ask(wire.Write, tx, "/t/x\x001"); typ != wire.Write || p != "OK\x00" {
		t.Fatalf("write in tx: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Read, 0, "/t/x\x00"); typ != wire.Error || p != "ENOENT\x00" {
		t.Fatalf("uncommitted write visible outside: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Write, 0, "/other\x00z"); typ != wire.Write {
		t.Fatalf("conflicting write: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.TransactionEnd, tx, "T\x00"); typ != wire.Error || p != "EAGAIN\x00" {
		t.Fatalf("conflicting commit: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Read, 0, "/t/x\x00"); typ != wire.Error || p != "ENOENT\x00" {
		t.Fatalf("conflicting transaction left a trace: %v %q", typ, p)
	}
	_, id = a.ask(wire.TransactionStart, 0, "\x00")
	tx = uint32(mustAtoi(t, strings.TrimSuffix(id, "\x00")))
	a.ask(wire.Write, tx, "/t/x\x002")
	if typ, p := a.ask(wire.TransactionEnd, tx, "T\x00"); typ != wire.TransactionEnd || p != "OK\x00" {
		t.Fatalf("commit: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Read, 0, "/t/x\x00"); p != "2" {
		t.Fatalf("committed value: %v %q", typ, p)
	}
	g := dialRaw(t, h, 5)
	for i := 0; i < quotaTransactions; i++ {
		if typ, p := g.ask(wire.TransactionStart, 0, "\x00"); typ != wire.TransactionStart {
			t.Fatalf("guest transaction %d: %v %q", i, typ, p)
		}
	}
	if typ, p := g.ask(wire.TransactionStart, 0, "\x00"); typ != wire.Error || p != "ENOSPC\x00" {
		t.Fatalf("transaction over quota: %v %q", typ, p)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// TestXenstoreWireHostileHeaderDropsOnlyThatConnection: a payload length
// above XENSTORE_PAYLOAD_MAX hangs up that connection; others carry on.
func TestXenstoreWireHostileHeaderDropsOnlyThatConnection(t *testing.T) {
	h, err := NewHost()
	if err != nil {
		t.Fatal(err)
	}
	bad := dialRaw(t, h, 3)
	good := dialRaw(t, h, 0)
	big := xsMessage(xsRead, "")
	binary.LittleEndian.PutUint32(big[12:], wire.PayloadMax+1)
	if _, err := bad.c.Write(big); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := bad.c.Read(b[:]); err == nil {
		t.Fatal("the connection that sent an oversized payload is still open")
	}
	if typ, p := good.ask(wire.Write, 0, "/still\x00here"); typ != wire.Write {
		t.Fatalf("another connection after the hostile one: %v %q", typ, p)
	}
}

// FuzzXenstoreWire feeds arbitrary bytes to a guest's connection: the
// server must answer or hang up, never panic.
func FuzzXenstoreWire(f *testing.F) {
	f.Add(xsMessage(uint32(wire.Read), "/local\x00"))
	f.Add(xsMessage(uint32(wire.Write), "/x\x00v"))
	f.Add(xsMessage(uint32(wire.SetPerms), "/x\x00b0\x00r7\x00"))
	f.Add(xsMessage(uint32(wire.Watch), "/x\x00t\x00"))
	f.Add(xsMessage(uint32(wire.GetDomainPath), "3\x00"))
	f.Add(xsMessage(uint32(wire.DirectoryPart), "/\x000\x00"))
	f.Add(append(xsMessage(uint32(wire.TransactionStart), "\x00"), xsTxMessage(uint32(wire.TransactionEnd), 1, "T\x00")...))
	f.Add(append(xsMessage(uint32(wire.Directory), "/\x00"), xsMessage(uint32(wire.Unwatch), "/x\x00t\x00")...))
	h, err := NewHost()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() { h.serveXenstoreConn(b, 1); close(done) }()
		go io.Copy(io.Discard, a)
		a.Write(in)
		a.Close()
		<-done
	})
}

func xenDom(d uint16) xen.DomID { return xen.DomID(d) }

func TestXenstoreWireWatchQuotaResetAndSpecials(t *testing.T) {
	h, err := NewHost()
	if err != nil {
		t.Fatal(err)
	}
	d, err := h.NewDomain("g")
	if err != nil {
		t.Fatal(err)
	}
	g := dialRaw(t, h, uint16(d.ID()))
	events := 0
	for i := 0; i < quotaWatches; i++ {
		if _, err := g.c.Write(xsMessage(uint32(wire.Watch), fmt.Sprintf("/w%d\x00t\x00", i))); err != nil {
			t.Fatal(err)
		}
		for got := false; !got; { // the reply, and the registration event in any order after it
			m, p := g.next()
			switch m.Type {
			case wire.Watch:
				got = true
			case wire.WatchEvent:
				events++
			default:
				t.Fatalf("watch %d: %v %q", i, m.Type, p)
			}
		}
	}
	if _, err := g.c.Write(xsMessage(uint32(wire.Watch), "/one-too-many\x00t\x00")); err != nil {
		t.Fatal(err)
	}
	for {
		m, p := g.next()
		if m.Type == wire.WatchEvent {
			events++
			continue
		}
		if m.Type != wire.Error || p != "E2BIG\x00" {
			t.Fatalf("watch over quota: %v %q", m.Type, p)
		}
		break
	}
	for events < quotaWatches { // the rest of the registration events
		if m, p := g.next(); m.Type != wire.WatchEvent {
			t.Fatalf("waiting for registration events: %v %q", m.Type, p)
		}
		events++
	}
	a := dialRaw(t, h, 0)
	for i := 0; i < quotaWatches+2; i++ { // dom0 is exempt
		if typ, p := a.ask(wire.Watch, 0, fmt.Sprintf("/d%d\x00t\x00", i)); typ != wire.Watch {
			t.Fatalf("dom0 watch %d: %v %q", i, typ, p)
		}
		if m, _ := a.next(); m.Type != wire.WatchEvent {
			t.Fatalf("dom0 registration event: %v", m.Type)
		}
	}
	if typ, p := a.ask(wire.ResetWatches, 0, ""); typ != wire.ResetWatches || p != "OK\x00" {
		t.Fatalf("reset watches: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Unwatch, 0, "/d0\x00t\x00"); typ != wire.Error || p != "ENOENT\x00" {
		t.Fatalf("unwatch after reset: %v %q", typ, p)
	}
	if typ, p := a.ask(wire.Watch, 0, "@introduceDomain\x00i\x00"); typ != wire.Watch {
		t.Fatalf("special watch: %v %q", typ, p)
	}
	if m, p := a.next(); p != "@introduceDomain\x00i\x00" {
		t.Fatalf("special registration event: %v %q", m.Type, p)
	}
	if typ, p := g.ask(wire.Introduce, 0, fmt.Sprintf("%d\x001\x002\x00", d.ID())); typ != wire.Error || p != "EACCES\x00" {
		t.Fatalf("guest introduce: %v %q", typ, p)
	}
	// The reply and the event it causes may come in either order.
	if _, err := a.c.Write(xsMessage(uint32(wire.Introduce), fmt.Sprintf("%d\x001\x002\x00", d.ID()))); err != nil {
		t.Fatal(err)
	}
	var replied, fired bool
	for !replied || !fired {
		m, p := a.next()
		switch {
		case m.Type == wire.Introduce && p == "OK\x00":
			replied = true
		case m.Type == wire.WatchEvent && p == "@introduceDomain\x00i\x00":
			fired = true
		default:
			t.Fatalf("dom0 introduce: %v %q", m.Type, p)
		}
	}
}

func TestXenstoreWireDirectoryPart(t *testing.T) {
	h, err := NewHost()
	if err != nil {
		t.Fatal(err)
	}
	a := dialRaw(t, h, 0)
	a.ask(wire.Write, 0, "/dp/aa\x00")
	a.ask(wire.Write, 0, "/dp/b\x00")
	typ, p := a.ask(wire.DirectoryPart, 0, "/dp\x000\x00")
	gen, rest, _ := strings.Cut(p, "\x00")
	if typ != wire.DirectoryPart || gen == "" || rest != "aa\x00b\x00\x00" {
		t.Fatalf("whole listing: %v %q", typ, p)
	}
	if _, p := a.ask(wire.DirectoryPart, 0, "/dp\x003\x00"); !strings.HasSuffix(p, "\x00b\x00\x00") {
		t.Fatalf("from offset 3: %q", p)
	}
	if _, p := a.ask(wire.DirectoryPart, 0, "/dp\x005\x00"); !strings.HasSuffix(p, gen+"\x00\x00") {
		t.Fatalf("at the end: %q", p)
	}
	for _, off := range []string{"1", "6", "-1", "x"} {
		if typ, p := a.ask(wire.DirectoryPart, 0, "/dp\x00"+off+"\x00"); typ != wire.Error || p != "EINVAL\x00" {
			t.Fatalf("offset %s: %v %q", off, typ, p)
		}
	}
}

// A guest that never reads its socket cannot make the host hold an
// unbounded backlog of watch events; others keep working.
func TestXenstoreWireSilentGuestBacklogIsBounded(t *testing.T) {
	h, err := NewHost()
	if err != nil {
		t.Fatal(err)
	}
	admin := h.store.connect(0)
	if err := admin.Write("/flood", ""); err != nil {
		t.Fatal(err)
	}
	if err := admin.SetPerms("/flood", []xen.Perm{{Dom: 0, Read: true}}); err != nil { // readable by all
		t.Fatal(err)
	}
	g := dialRaw(t, h, 3)
	if _, err := g.c.Write(xsMessage(uint32(wire.Watch), "/flood\x00t\x00")); err != nil {
		t.Fatal(err)
	}
	// The guest reads nothing from now on (the pipe holds even the reply).
	// The host registers the watch when its connection goroutine gets to
	// the message: the flood starts once it has, or it would miss it.
	var w *storeWatch
	eventually.True(t, 10*time.Second, "the guest's watch registered", func() bool { w = guestWatch(h, 3); return w != nil })
	n := 3 * quotaWatchBacklog
	for i := 0; i < n; i++ {
		if err := admin.Write(fmt.Sprintf("/flood/%d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	backlog, dropped := w.q.Backlog()
	if backlog > quotaWatchBacklog || dropped == 0 {
		t.Fatalf("backlog %d (limit %d), %d dropped after %d events", backlog, quotaWatchBacklog, dropped, n)
	}
	other := dialRaw(t, h, 0)
	if typ, p := other.ask(wire.Read, 0, "/flood/0\x00"); typ != wire.Read || p != "x" {
		t.Fatalf("dom0 while a guest is silent: %v %q", typ, p)
	}
}

// guestWatch is dom's registered watch, nil before there is one.
func guestWatch(h *Host, dom xen.DomID) *storeWatch {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	for x := range h.store.watches {
		if x.dom == dom {
			return x
		}
	}
	return nil
}
