package blkfront_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// openDeadline bounds every Open here: a handshake that waits instead of
// failing runs into it, and the tests tell the two apart.
const openDeadline = 60 * time.Second

const diskBytes = 8 << 20

// newGrantStack: a host whose domains have grantFrames-page grant tables
// and a blkback offering maxQueues; the guest's vbd is attached, not opened.
func newGrantStack(t *testing.T, grantFrames, maxQueues int) *batchStack {
	t.Helper()
	return newVBDStack(t, storage.NewMemory(diskBytes), nil, maxQueues, sim.GrantFrames(grantFrames))
}

func (s *batchStack) open(ctx context.Context, queues int) (*blkfront.Disk, error) {
	return blkfront.Open(ctx, blkfront.Config{Domain: s.guest, Dir: s.dir, Queues: queues, Log: quiet})
}

// Four queues with full pools need about 17,400 grant entries; a table of
// 8 frames has 4,096. The pools shrink to fit and the disk works.
func TestOpenShrinksPoolsToFitTheGrantTable(t *testing.T) {
	s := newGrantStack(t, 8, 4)
	ctx, cancel := context.WithTimeout(context.Background(), openDeadline)
	defer cancel()
	d, err := s.open(ctx, 4)
	if err != nil {
		t.Fatalf("Open with 4 queues on a 4096-entry grant table: %v", err)
	}
	defer d.Close()
	if q := d.Info().Queues; q != 4 {
		t.Fatalf("%d queues connected, want 4", q)
	}
	// Every queue carries largest requests at once, each to its own range.
	if n := int64(8 * d.MaxRequestBytes()); n > diskBytes {
		t.Fatalf("largest requests of %d bytes: 8 do not fit the %d-byte disk", d.MaxRequestBytes(), diskBytes)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := fill(uint64(i), d.MaxRequestBytes())
			off := int64(i) * int64(len(p))
			if _, err := d.WriteAt(ctx, p, off); err != nil {
				errs <- err
				return
			}
			got := make([]byte, len(p))
			if _, err := d.ReadAt(ctx, got, off); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, p) {
				errs <- errors.New("read back differs")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A table of 1 frame (504 usable entries) cannot hold 4 queues even with
// the smallest pools: Open fails at once with the reason, long before its
// deadline, and leaves no grant behind.
func TestOpenFailsAtOnceWhenTheGrantTableCannotHoldTheQueues(t *testing.T) {
	s := newGrantStack(t, 1, 4)
	ctx, cancel := context.WithTimeout(context.Background(), openDeadline)
	defer cancel()
	d, err := s.open(ctx, 4)
	if err == nil {
		d.Close()
		t.Fatal("Open with 4 queues on a 512-entry grant table succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("Open waited for its deadline instead of failing: %v", err)
	}
	if !errors.Is(err, xen.ErrGrantTableFull) || !strings.Contains(err.Error(), "4 queue(s) need at least") {
		t.Fatalf("Open: %v; want the grant table's refusal and what 4 queues need", err)
	}
	all, err := s.guest.Granter().Grant(0, sim.EntriesPerFrame-8, false)
	if err != nil {
		t.Fatalf("the failed Open left grants behind: %v", err)
	}
	if err := s.guest.Granter().Revoke(all); err != nil {
		t.Fatal(err)
	}
}

// A backend offering fewer queues than asked gets what it offers, as
// Linux's blkfront does; a count outside 1..MaxQueues is refused at once.
func TestQueuesAreWhatTheBackendOffersAtMost(t *testing.T) {
	s := newGrantStack(t, sim.DefaultGrantFrames, 2)
	ctx, cancel := context.WithTimeout(context.Background(), openDeadline)
	defer cancel()
	for _, bad := range []int{-1, blkfront.MaxQueues + 1} {
		if d, err := s.open(ctx, bad); err == nil {
			d.Close()
			t.Fatalf("Open with %d queues succeeded", bad)
		}
	}
	d, err := s.open(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if q := d.Info().Queues; q != 2 {
		t.Fatalf("asked 4 of a backend offering 2: %d queues, want 2", q)
	}
}

// A backend that refuses the frontend's rings (Closing, the reason in its
// error node, as blkback does) fails Open at once with that reason.
func TestOpenFailsAtOnceWhenTheBackendRefuses(t *testing.T) {
	bs := newGuestVBD(t)
	h, g, vbd := bs.host, bs.guest, bs.vbd
	// The backend, played by hand: InitWait, then a refusal as soon as
	// the frontend is Initialised.
	st, be, fe := h.Store(), vbd.BackendPath(), vbd.FrontendPath()
	w, err := st.Watch(fe+"/state", "fe")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const reason = "ring-page-order 9 is more than this backend maps"
	refused := make(chan error, 1)
	go func() {
		for range w.Events() {
			if v, _ := st.Read(fe + "/state"); v == "3" {
				if err := st.Write(be+"/error", reason); err != nil {
					refused <- err
					return
				}
				refused <- st.Write(be+"/state", "5")
				return
			}
		}
	}()
	if err := st.Write(be+"/state", "2"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), openDeadline)
	defer cancel()
	d, err := blkfront.Open(ctx, blkfront.Config{Domain: g, Dir: fe, Log: quiet})
	if err == nil {
		d.Close()
		t.Fatal("Open succeeded against a backend that refused")
	}
	if ctx.Err() != nil {
		t.Fatalf("Open waited for its deadline instead of failing: %v", err)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Fatalf("Open: %v; want the backend's reason %q", err, reason)
	}
	if err := <-refused; err != nil {
		t.Fatal(err)
	}
}

// A second Open of a vbd whose backend went Closed with the first
// frontend never waits for its deadline: the backend comes back to
// InitWait on seeing the new frontend Initialising and the disk connects,
// or the frontend, seeing the backend Closed, goes Closed first and
// neither end moves again; then Open says the backend is Closed.
func TestOpenOnAClosedBackendDoesNotWait(t *testing.T) {
	s := newGrantStack(t, sim.DefaultGrantFrames, 0)
	ctx, cancel := context.WithTimeout(context.Background(), openDeadline)
	defer cancel()
	d, err := s.open(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = s.open(ctx, 1)
	if ctx.Err() != nil {
		t.Fatalf("Open waited for its deadline: %v", err)
	}
	t.Logf("second Open: %v", err)
	if err != nil && !strings.Contains(err.Error(), "the backend is Closed") {
		t.Fatalf("Open: %v; want it to connect or to say the backend is Closed", err)
	}
	if err == nil {
		d.Close()
	}
}

// A backend that cannot open the disk stays unconnected with its reason
// in its error node: Open waits (the toolstack may fix it) and its
// deadline's error carries that reason.
func TestOpenDeadlineSaysWhatTheBackendReports(t *testing.T) {
	s := newGuestVBD(t)
	h, g, vbd := s.host, s.guest, s.vbd
	s.serveOpen(func(xen.Store, string) (storage.Device, error) { return nil, errors.New("no such image /nonexistent") })
	// Open waits for the error node first, so that its deadline cannot
	// come before the backend has reported.
	for {
		if _, err := h.Store().Read(vbd.BackendPath() + "/error"); err == nil {
			break
		}
		w, err := h.Store().Watch(vbd.BackendPath()+"/error", "error")
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-w.Events():
		case <-time.After(openDeadline):
			t.Fatal("the backend wrote no error node")
		}
		w.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d, err := blkfront.Open(ctx, blkfront.Config{Domain: g, Dir: vbd.FrontendPath(), Log: quiet})
	if err == nil {
		d.Close()
		t.Fatal("Open succeeded with a backend that has no disk")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no such image /nonexistent") {
		t.Fatalf("Open: %v; want the deadline and the backend's reason", err)
	}
}
