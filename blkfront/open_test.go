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
