package blkfront_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/storage"
)

// stalled is a gated device whose reads wait too: the backend's queue
// is stuck in the first read or write, and nothing behind it on the ring
// is answered until the gate opens. It keeps, by offset, the buffer each
// read was given (the backend's mapping of the frontend's granted page).
type stalled struct {
	*gated
	mu   sync.Mutex
	bufs map[int64][]byte
}

func newStalled(dev storage.Device) *stalled {
	return &stalled{gated: newGated(dev), bufs: map[int64][]byte{}}
}

func (s *stalled) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	s.bufs[off] = p
	s.mu.Unlock()
	s.once.Do(func() { close(s.entered) })
	<-s.open
	return s.Device.ReadAt(p, off)
}

// buf is the buffer the read at off was given.
func (s *stalled) buf(off int64) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bufs[off]
}

// stalledStack serves mem through a stalled device, with the SCSI
// extension and reservations (an emulating engine), to a one-queue
// frontend. The device is released at cleanup, before the stack stops.
func stalledStack(t *testing.T, mem storage.Device) (*batchStack, *stalled) {
	t.Helper()
	st := newStalled(mem)
	s := newGuestVBD(t)
	s.mem = mem
	s.srv = s.Serve(blkback.Config{Log: quiet,
		SCSI: func(dir string, dev storage.Device) (blkback.SCSIExecutor, error) {
			return emulate.New(dev, emulate.Config{Identity: dir}), nil
		}}, simstack.Serving(nopClose{st})).Server
	if err := s.Open(context.Background(), s.g, blkfront.Config{Queues: 1, Log: quiet}); err != nil {
		t.Fatal(err)
	}
	s.front = s.g.Disk
	t.Cleanup(st.release) // last in, first run: before the stack closes the frontend
	return s, st
}

// within runs f on its own goroutine and fails the test if it does not
// return within d (so that a wait that ignores its end fails, not hangs).
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	res := make(chan error, 1)
	go func() { res <- f() }()
	select {
	case err := <-res:
		return err
	case <-time.After(d):
		t.Fatalf("%s: still waiting after %v", what, d)
		return nil
	}
}

// Every request API gives up when its context ends while its request is
// on the ring and the backend never answers: each returns the context's
// error promptly. The requests answered late are dropped and their slots
// come back.
func TestRequestsEndWithTheirContext(t *testing.T) {
	s, st := stalledStack(t, storage.NewMemory(4<<20))
	d := s.front
	if in := d.Info(); !in.ExtraRequest || !in.Reservations || !in.Flush || !in.Discard {
		t.Fatalf("the backend offers %+v; want SCSI, reservations, flush and discard", in)
	}
	// The backend's queue gets stuck in this read; whatever follows sits
	// on the ring unanswered.
	blocker := make(chan error, 1)
	go func() { _, err := d.ReadAt(context.Background(), make([]byte, 4096), 0); blocker <- err }()
	<-st.entered
	buf := make([]byte, 8192)
	for _, op := range []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"ReadAt", func(ctx context.Context) error { _, err := d.ReadAt(ctx, buf, 8192); return err }},
		{"WriteAt", func(ctx context.Context) error { _, err := d.WriteAt(ctx, buf, 8192); return err }},
		{"Flush", d.Flush},
		{"Discard", func(ctx context.Context) error { return d.Discard(ctx, 65536, 4096, false) }},
		{"ExecSCSI", func(ctx context.Context) error {
			_, err := d.ExecSCSI(ctx, []byte{0, 0, 0, 0, 0, 0}, scsi.DirNone, nil) // TEST UNIT READY
			return err
		}},
		{"PRReadKeys", func(ctx context.Context) error { _, _, err := d.PRReadKeys(ctx); return err }},
		{"PRRegister", func(ctx context.Context) error { return d.PRRegister(ctx, 0, 7, false, false) }},
	} {
		start := time.Now()
		err := within(t, 20*time.Second, op.name, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			return op.do(ctx)
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s with the backend not answering: %v, want context.DeadlineExceeded", op.name, err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("%s took %v to give up on a 100ms deadline", op.name, took)
		}
	}
	st.release()
	if err := within(t, 20*time.Second, "the blocking read", func() error { return <-blocker }); err != nil {
		t.Fatal(err)
	}
	waitAllSlotsFree(t, d)
}

// stuckBatch puts a batch of depth reads on the ring of d, whose backend
// gets stuck in the first: depth slots stay taken until st is released.
func stuckBatch(t *testing.T, d *blkfront.Disk, st *stalled, depth int) *blkfront.Batch {
	t.Helper()
	b, err := d.NewBatch(depth)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < depth; i++ {
		if err := b.Read(make([]byte, 4096), int64(i)*4096, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Submit(); err != nil {
		t.Fatal(err)
	}
	<-st.entered
	return b
}

// A request given up on the ring keeps its slot and pages (orphaned)
// until the backend answers: a request made meanwhile gets other pages, so
// the late answer cannot write into its data; the late answer is dropped
// (the abandoned caller's buffer is not touched) and frees the slot.
func TestOrphanedSlotWaitsForItsAnswer(t *testing.T) {
	mem := storage.NewMemory(4 << 20)
	want := fill(9, 8192)
	if _, err := mem.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	s, st := stalledStack(t, mem)
	d := s.front
	abandoned := bytes.Repeat([]byte{0xaa}, 4096)
	err := within(t, 20*time.Second, "ReadAt", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := d.ReadAt(ctx, abandoned, 0)
		return err
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with the backend stuck: %v, want context.DeadlineExceeded", err)
	}
	<-st.entered
	// A read made while the first is orphaned: on the ring behind it.
	got := make([]byte, 4096)
	later := make(chan error, 1)
	go func() { _, err := d.ReadAt(context.Background(), got, 4096); later <- err }()
	eventually.Blocked(t, 20*time.Second, "blkfront.(*Disk).wait", "chan receive")
	st.release()
	if err := within(t, 20*time.Second, "the later read", func() error { return <-later }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want[4096:]) {
		t.Fatal("the later read returned other data")
	}
	first, second := st.buf(0), st.buf(4096)
	if first == nil || second == nil {
		t.Fatal("the backend did not read both blocks")
	}
	if &first[0] == &second[0] {
		t.Fatal("the later read was given the orphaned read's page while the backend could still write it")
	}
	waitAllSlotsFree(t, d)
	if !bytes.Equal(abandoned, bytes.Repeat([]byte{0xaa}, 4096)) {
		t.Fatal("the late answer was copied into the abandoned caller's buffer")
	}
}

// A caller waiting for a free slot (every slot is on the stuck ring)
// returns when its context is cancelled or its deadline passes; one
// without a deadline is woken when the late answers to orphaned requests
// free their slots.
func TestSlotWaitEndsWithItsContext(t *testing.T) {
	s, st := stalledStack(t, storage.NewMemory(4<<20))
	d := s.front
	b := stuckBatch(t, d, st, d.SlotsPerQueue())
	defer b.Close()

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { _, err := d.ReadAt(ctx, make([]byte, 4096), 0); res <- err }()
	eventually.Blocked(t, 20*time.Second, "blkfront.(*queue).acquire", "sync.Cond.Wait")
	cancel()
	if err := within(t, 20*time.Second, "a cancelled slot wait", func() error { return <-res }); !errors.Is(err, context.Canceled) {
		t.Fatalf("slot wait cancelled: %v, want context.Canceled", err)
	}
	err := within(t, 20*time.Second, "a slot wait with a deadline", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		return d.Flush(ctx)
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slot wait past its deadline: %v, want context.DeadlineExceeded", err)
	}

	// The batch abandons its requests (orphaned on the ring); a caller
	// with no deadline waits for a slot until their answers free one.
	rctx, rcancel := context.WithCancel(context.Background())
	rcancel()
	if _, err := b.Reap(rctx, b.Depth(), func(uint64, int, error) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("reap: %v", err)
	}
	go func() { _, err := d.ReadAt(context.Background(), make([]byte, 4096), 0); res <- err }()
	eventually.Blocked(t, 20*time.Second, "blkfront.(*queue).acquire", "sync.Cond.Wait")
	st.release()
	if err := within(t, 20*time.Second, "a slot wait freed by late answers", func() error { return <-res }); err != nil {
		t.Fatal(err)
	}
	waitAllSlotsFree(t, d)
}

// Closing the disk ends every waiter with ErrClosed: one waiting for its
// answer on the stuck ring, one waiting for a slot, and a batch's Reap.
func TestCloseEndsEveryWaiter(t *testing.T) {
	s, st := stalledStack(t, storage.NewMemory(4<<20))
	d := s.front
	b := stuckBatch(t, d, st, d.SlotsPerQueue()-1)
	onRing, forSlot := make(chan error, 1), make(chan error, 1)
	go func() { _, err := d.ReadAt(context.Background(), make([]byte, 4096), 0); onRing <- err }()
	eventually.Blocked(t, 20*time.Second, "blkfront.(*Disk).wait", "chan receive")
	go func() { forSlot <- d.Flush(context.Background()) }()
	eventually.Blocked(t, 20*time.Second, "blkfront.(*queue).acquire", "sync.Cond.Wait")
	reaped := make(chan error, 1)
	go func() {
		var first error
		_, err := b.Reap(context.Background(), b.Depth(), func(_ uint64, _ int, err error) {
			if first == nil {
				first = err
			}
		})
		reaped <- errors.Join(err, first)
	}()
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	for what, c := range map[string]chan error{"a read on the ring": onRing, "a slot wait": forSlot, "a batch reap": reaped} {
		if err := within(t, 30*time.Second, what, func() error { return <-c }); !errors.Is(err, blkfront.ErrClosed) {
			t.Fatalf("%s when the disk closed: %v, want ErrClosed", what, err)
		}
	}
	if err := within(t, 30*time.Second, "Close", func() error { return <-closed }); err != nil {
		t.Fatal(err)
	}
}
