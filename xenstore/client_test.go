package xenstore_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenstore"
	"github.com/xenblk/xenblk/xenstore/wire"
)

func dialHost(t *testing.T, dom xen.DomID) (*sim.Host, *xenstore.Client) {
	t.Helper()
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "xs.sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go h.ServeXenstoreAs(l, dom)
	t.Setenv("XENSTORED_PATH", p)
	c, err := xenstore.Dial("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return h, c
}

// A transaction that conflicts gets EAGAIN at commit and leaves no trace;
// Transaction runs fn again, and the second run commits.
func TestTransactionConflictRetriesAndLeavesNoTrace(t *testing.T) {
	h, c := dialHost(t, 0)
	other := h.Store()
	runs := 0
	err := c.Transaction(func(tx xen.Tx) error {
		runs++
		if err := tx.Write("/tx/mine", fmt.Sprint(runs)); err != nil {
			return err
		}
		if runs == 1 {
			// A change by someone else while this transaction is open.
			if err := other.Write("/tx/theirs", "x"); err != nil {
				t.Fatal(err)
			}
			if v, err := other.Read("/tx/mine"); !errors.Is(err, xen.ErrNotFound) {
				t.Errorf("an open transaction's write is visible: %q %v", v, err)
			}
		}
		return nil
	})
	if err != nil || runs != 2 {
		t.Fatalf("transaction: %v after %d runs, want success after 2", err, runs)
	}
	if v, _ := c.Read("/tx/mine"); v != "2" {
		t.Fatalf("committed value %q: the conflicting run left a trace or the retry was lost", v)
	}
	// An error from fn aborts: nothing is written.
	boom := errors.New("boom")
	err = c.Transaction(func(tx xen.Tx) error {
		if err := tx.Write("/tx/aborted", "1"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("aborted transaction: %v", err)
	}
	if _, err := c.Read("/tx/aborted"); !errors.Is(err, xen.ErrNotFound) {
		t.Fatalf("aborted transaction left a trace: %v", err)
	}
}

// Error replies carry Xen's error name and unwrap to xen's sentinels.
func TestErrorNames(t *testing.T) {
	h, _ := dialHost(t, 0)
	g, err := h.NewDomain("g")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "g.sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go h.ServeXenstoreAs(l, g.ID())
	gc, err := xenstore.Dial(p)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	for _, tc := range []struct {
		err      error
		name     string
		sentinel error
	}{
		{func() error { _, err := gc.Read("/local/domain/0/name"); return err }(), wire.EACCES, xen.ErrPermission},
		{func() error { _, err := gc.Read("/no/such"); return err }(), wire.ENOENT, xen.ErrNotFound},
		{gc.Write("/local/domain/0/x", "y"), wire.EACCES, xen.ErrPermission},
		{gc.Write("bad//path", "y"), wire.EINVAL, nil},
	} {
		var we *wire.Err
		if !errors.As(tc.err, &we) || we.Name != tc.name {
			t.Errorf("%v: want error name %s", tc.err, tc.name)
		}
		if tc.sentinel != nil && !errors.Is(tc.err, tc.sentinel) {
			t.Errorf("%v: does not unwrap to %v", tc.err, tc.sentinel)
		}
	}
	if v, err := gc.Read("name"); err != nil || v != "g" {
		t.Errorf("relative read of the guest's own name: %q %v", v, err)
	}
	if p, err := gc.DomainPath(g.ID()); err != nil || p != fmt.Sprintf("/local/domain/%d", g.ID()) {
		t.Errorf("domain path: %q %v", p, err)
	}
}

// Many goroutines share one connection; replies are matched by req_id.
func TestManyRequestsInFlight(t *testing.T) {
	_, c := dialHost(t, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				p := fmt.Sprintf("/inflight/%d/%d", g, i)
				if err := c.Write(p, p); err != nil {
					errs <- err
					return
				}
				if v, err := c.Read(p); err != nil || v != p {
					errs <- fmt.Errorf("read %s: %q %v", p, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Watches: the registration event, then changes, in order; a consumer
// that does not read does not stall other calls; Close ends the channel.
func TestWatchDeliveryNeverBlocksTheReader(t *testing.T) {
	_, c := dialHost(t, 0)
	w, err := c.Watch("/w", "tok")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ { // nobody reads w yet
		if err := c.Write(fmt.Sprintf("/w/%d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"/w"}
	for i := 0; i < 200; i++ {
		want = append(want, fmt.Sprintf("/w/%d", i))
	}
	for _, p := range want {
		select {
		case ev := <-w.Events():
			if ev.Path != p || ev.Token != "tok" {
				t.Fatalf("event %+v, want %s", ev, p)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for %s", p)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for range w.Events() {
	}
	if err := c.Write("/w/after", "x"); err != nil {
		t.Fatal(err)
	}
}

// When the connection goes, waiting calls fail with ErrClosed and watch
// channels close.
func TestConnectionLoss(t *testing.T) {
	a, b := net.Pipe()
	c, err := xenstore.New(a)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Read("/x"); done <- err }()
	var hdr [wire.HeaderSize]byte
	if _, err := io.ReadFull(b, hdr[:]); err != nil { // the request arrives, no reply
		t.Fatal(err)
	}
	io.CopyN(io.Discard, b, 3)
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, xen.ErrClosed) {
			t.Fatalf("call on a lost connection: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a call hangs after the connection went")
	}
	if _, err := c.Read("/y"); !errors.Is(err, xen.ErrClosed) {
		t.Fatalf("call after loss: %v", err)
	}
}

// FuzzClientReplies: whatever a hostile xenstored sends, the client
// neither panics nor hangs: every call returns.
func FuzzClientReplies(f *testing.F) {
	f.Add(wire.AppendMessage(nil, wire.Header{Type: wire.Read, ReqID: 1}, []byte("v")))
	f.Add(wire.AppendMessage(nil, wire.Header{Type: wire.Error, ReqID: 1}, []byte("ENOENT\x00")))
	f.Add(wire.AppendMessage(nil, wire.Header{Type: wire.WatchEvent}, []byte("/a\x00xenblk/1\x00")))
	f.Add(wire.AppendMessage(nil, wire.Header{Type: wire.Error, ReqID: 2}, []byte("E2BIG\x00")))
	f.Add(wire.AppendMessage(nil, wire.Header{Type: wire.DirectoryPart, ReqID: 3}, []byte("7\x00a\x00b\x00\x00")))
	f.Add(wire.AppendMessage(nil, wire.Header{Type: wire.GetPerms, ReqID: 1}, []byte("x\x00")))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		c, _ := xenstore.New(a)
		go io.Copy(io.Discard, b)
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); c.Read("/x") }()
		go func() { defer wg.Done(); c.Directory("/d") }()
		go func() { defer wg.Done(); c.GetPerms("/p") }()
		b.Write(in)
		b.Close()
		wg.Wait()
		c.Close()
	})
}
