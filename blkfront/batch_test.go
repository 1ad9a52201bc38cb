package blkfront_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/faultinject"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

var quiet = slog.New(slog.DiscardHandler)

// batchStack is a simulated host in this process (internal/simstack):
// blkback serving a device to a guest's blkfront.
type batchStack struct {
	*simstack.Stack
	host      *sim.Host
	guest     *sim.Domain
	vbd       toolstack.VBD
	dir       string // the guest's vbd directory
	maxQueues int    // what the backend offers (0: its default)
	front     *blkfront.Disk
	srv       *blkback.Server
	mem       storage.Device
	g         *simstack.Guest
}

// newBatchStack serves mem (wrapped by wrap for the first server, if set)
// to a frontend opened with cfg.
func newBatchStack(t *testing.T, mem storage.Device, wrap storage.Device, cfg blkfront.Config) *batchStack {
	t.Helper()
	s := newVBDStack(t, mem, wrap, 0)
	cfg.Log = quiet
	if err := s.Open(context.Background(), s.g, cfg); err != nil {
		t.Fatal(err)
	}
	s.front = s.g.Disk
	return s
}

// newVBDStack is newBatchStack up to the frontend: a host made with opts,
// a backend offering maxQueues, and the guest's vbd attached.
func newVBDStack(t *testing.T, mem storage.Device, wrap storage.Device, maxQueues int, opts ...sim.HostOption) *batchStack {
	t.Helper()
	s := newGuestVBD(t, opts...)
	dev := mem
	if wrap != nil {
		dev = wrap
	}
	s.mem, s.maxQueues = mem, maxQueues
	s.srv = s.serve(dev)
	return s
}

// newGuestVBD makes a host with opts, a guest, and the guest's vbd as the
// toolstack creates it; no backend serves it yet. The stack is closed at
// cleanup.
func newGuestVBD(t *testing.T, opts ...sim.HostOption) *batchStack {
	t.Helper()
	ss := simstack.ForTest(t, nil, simstack.Options{Host: opts})
	spec, err := diskspec.Parse("vdev=xvda, access=rw, target=memory")
	if err != nil {
		t.Fatal(err)
	}
	g, err := ss.NewGuest("guest", spec)
	if err != nil {
		t.Fatal(err)
	}
	return &batchStack{Stack: ss, host: ss.Host, guest: g.Domain, vbd: g.VBD, dir: g.VBD.FrontendPath(), g: g}
}

// serve starts a blkback server handing out dev; it stops at cleanup.
func (s *batchStack) serve(dev storage.Device) *blkback.Server {
	return s.serveOpen(func(xen.Store, string) (storage.Device, error) { return nopClose{dev}, nil })
}

// serveOpen starts a blkback server whose disks open opens; it stops at
// cleanup.
func (s *batchStack) serveOpen(open simstack.Opener) *blkback.Server {
	return s.Serve(blkback.Config{MaxQueues: s.maxQueues, Log: quiet}, open).Server
}

// nopClose keeps the device open when a (crashed) backend closes it, so
// the next server can serve it.
type nopClose struct{ storage.Device }

func (nopClose) Close() error { return nil }

// gated blocks every write until open is closed, after telling entered
// about the first.
type gated struct {
	storage.Device
	open    chan struct{}
	entered chan struct{}
	once    sync.Once
}

func newGated(dev storage.Device) *gated {
	return &gated{Device: dev, open: make(chan struct{}), entered: make(chan struct{})}
}

func (g *gated) WriteAt(p []byte, off int64) (int, error) {
	g.once.Do(func() { close(g.entered) })
	<-g.open
	return g.Device.WriteAt(p, off)
}

func (g *gated) release() {
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func fill(seed uint64, n int) []byte {
	p := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// stuckWrites serves a fresh memory disk through a gated device, puts n
// 4 KiB writes of data (n*4096 bytes) in flight through a batch of depth
// and returns once the backend is stuck in the first.
func stuckWrites(t *testing.T, depth, n int, data []byte) (*batchStack, *gated, *blkfront.Batch) {
	t.Helper()
	mem := storage.NewMemory(4 << 20)
	g := newGated(mem)
	s := newBatchStack(t, mem, g, blkfront.Config{Queues: 1})
	t.Cleanup(g.release) // before the stack's own cleanups (last in, first run)
	b, err := s.front.NewBatch(depth)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := b.Write(data[i*4096:(i+1)*4096], int64(i)*4096, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Submit(); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	return s, g, b
}

// placeOrReap places one request (place), reaping into got while the
// batch is full.
func placeOrReap(t *testing.T, b *blkfront.Batch, got map[uint64]completion, place func() error) {
	t.Helper()
	for {
		err := place()
		if err == nil {
			return
		}
		if !errors.Is(err, blkfront.ErrBatchFull) {
			t.Fatal(err)
		}
		if _, err := b.Reap(context.Background(), 1, func(tag uint64, n int, err error) { got[tag] = completion{n, err} }); err != nil {
			t.Fatal(err)
		}
	}
}

// completion is one Reap callback.
type completion struct {
	n   int
	err error
}

// reapAll reaps until the batch has nothing outstanding, failing the
// test on a completion error; it returns the completions by tag.
func reapAll(t *testing.T, b *blkfront.Batch, got map[uint64]completion) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for b.Outstanding() > 0 {
		if _, err := b.Reap(ctx, 1, func(tag uint64, n int, err error) { got[tag] = completion{n, err} }); err != nil {
			t.Fatalf("reap: %v", err)
		}
	}
}

// Data written through a batch reads back through ReadAt and the other
// way round, across the whole disk, in mixed read/write batches of depth
// 1, 32 and 128, with requests of 512 bytes to a full indirect request.
func TestBatchRoundTrip(t *testing.T) {
	const size = 8 << 20
	s := newBatchStack(t, storage.NewMemory(size), nil, blkfront.Config{Queues: 1})
	ctx := context.Background()
	if s.front.SlotsPerQueue() < 128 {
		t.Fatalf("queue of %d slots, want at least 128 for the depth-128 case", s.front.SlotsPerQueue())
	}
	for _, depth := range []int{1, 32, 128} {
		b, err := s.front.NewBatch(depth)
		if err != nil {
			t.Fatal(err)
		}
		// Lengths cycle through sub-page, page, direct and indirect
		// sizes; the requests tile the disk from offset 0.
		sizes := []int{512, 4096, 11 * 4096, 12 * 4096, 64 << 10, s.front.MaxRequestBytes()}
		type extent struct {
			off  int64
			data []byte
		}
		var ext []extent
		for off, i := int64(0), 0; off < size; i++ {
			n := min(int64(sizes[i%len(sizes)]), size-off)
			ext = append(ext, extent{off, fill(uint64(depth)<<32|uint64(i), int(n))})
			off += n
		}
		// Mixed batches: each round places the next writes and reads of
		// extents whose writes have been reaped (tags >= len(ext)).
		got := map[uint64]completion{}
		bufs := make([][]byte, len(ext))
		var readBack []int
		next := 0
		reaped := func(tag uint64, n int, err error) {
			got[tag] = completion{n, err}
			if tag < uint64(len(ext)) && err == nil {
				readBack = append(readBack, int(tag))
			}
		}
		for next < len(ext) || len(readBack) > 0 || b.Outstanding() > 0 {
			for placed := true; placed; {
				placed = false
				if len(readBack) > 0 {
					k := readBack[0]
					bufs[k] = make([]byte, len(ext[k].data))
					err := b.Read(bufs[k], ext[k].off, uint64(len(ext)+k))
					if errors.Is(err, blkfront.ErrBatchFull) {
						break
					} else if err != nil {
						t.Fatal(err)
					}
					readBack, placed = readBack[1:], true
				}
				if next < len(ext) {
					err := b.Write(ext[next].data, ext[next].off, uint64(next))
					if errors.Is(err, blkfront.ErrBatchFull) {
						break
					} else if err != nil {
						t.Fatal(err)
					}
					next, placed = next+1, true
				}
			}
			if err := b.Submit(); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Reap(ctx, 1, reaped); err != nil {
				t.Fatal(err)
			}
		}
		for i, e := range ext {
			if c, ok := got[uint64(i)]; !ok || c.err != nil || c.n != len(e.data) {
				t.Fatalf("depth %d: write %d: completion %+v (reaped %v)", depth, i, c, ok)
			}
			if c := got[uint64(len(ext)+i)]; c.err != nil || c.n != len(e.data) || !bytes.Equal(bufs[i], e.data) {
				t.Fatalf("depth %d: extent %d read through the batch: %+v, equal to what it wrote %v", depth, i, c, bytes.Equal(bufs[i], e.data))
			}
			back := make([]byte, len(e.data))
			if _, err := s.front.ReadAt(ctx, back, e.off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, e.data) {
				t.Fatalf("depth %d: extent %d at %d: ReadAt differs from the batch's write", depth, i, e.off)
			}
		}
		// The other way: WriteAt, then batch reads of every extent.
		for i, e := range ext {
			e.data = fill(uint64(depth)<<40|uint64(i), len(e.data))
			ext[i] = e
			if _, err := s.front.WriteAt(ctx, e.data, e.off); err != nil {
				t.Fatal(err)
			}
		}
		clear(got)
		for i, e := range ext {
			bufs[i] = make([]byte, len(e.data))
			placeOrReap(t, b, got, func() error { return b.Read(bufs[i], e.off, uint64(i)) })
		}
		reapAll(t, b, got)
		for i, e := range ext {
			if c := got[uint64(i)]; c.err != nil || c.n != len(e.data) || !bytes.Equal(bufs[i], e.data) {
				t.Fatalf("depth %d: batch read of extent %d: %+v, data equal %v", depth, i, c, bytes.Equal(bufs[i], e.data))
			}
		}
		b.Close()
	}
}

// Large requests only, direct (no indirect segments: 11 pages at most)
// and indirect, with more placed than the pool has pages for at once.
func TestBatchMultiPage(t *testing.T) {
	for _, cfg := range []blkfront.Config{{Queues: 1}, {Queues: 1, MaxIndirectSegments: -1}} {
		const size = 32 << 20
		s := newBatchStack(t, storage.NewMemory(size), nil, cfg)
		max := s.front.MaxRequestBytes()
		if cfg.MaxIndirectSegments < 0 && max != 11*4096 || cfg.MaxIndirectSegments == 0 && max != 1<<20 {
			t.Fatalf("config %+v: %d bytes per request", cfg, max)
		}
		b, err := s.front.NewBatch(64)
		if err != nil {
			t.Fatal(err)
		}
		n := size / max
		want := make([][]byte, n)
		got := map[uint64]completion{}
		for i := 0; i < n; i++ {
			want[i] = fill(uint64(i)+99, max)
			placeOrReap(t, b, got, func() error { return b.Write(want[i], int64(i*max), uint64(i)) })
		}
		reapAll(t, b, got)
		bufs := make([][]byte, n)
		for i := range bufs {
			bufs[i] = make([]byte, max)
			placeOrReap(t, b, got, func() error { return b.Read(bufs[i], int64(i*max), uint64(n+i)) })
		}
		reapAll(t, b, got)
		for i := 0; i < n; i++ {
			if w, r := got[uint64(i)], got[uint64(n+i)]; w.err != nil || r.err != nil || w.n != max || r.n != max {
				t.Fatalf("request %d: write %+v, read %+v", i, w, r)
			}
			if !bytes.Equal(bufs[i], want[i]) {
				t.Fatalf("config %+v: request %d of %d bytes read back differs", cfg, i, max)
			}
		}
		if err := b.Write(make([]byte, max+4096), 0, 0); err == nil {
			t.Fatal("a request beyond MaxRequestBytes was accepted")
		}
		if err := b.Read(make([]byte, 4096), size, 0); err == nil {
			t.Fatal("a read past the end was accepted")
		}
		if err := b.Write(make([]byte, 100), 0, 0); err == nil {
			t.Fatal("an unaligned write was accepted")
		}
	}
}

// A batch on each queue and goroutines calling ReadAt and WriteAt on the
// same disk at the same time, each on its own region: every response
// reaches its owner.
func TestBatchBesideGoroutines(t *testing.T) {
	const region = 1 << 20
	s := newBatchStack(t, storage.NewMemory(8*region), nil, blkfront.Config{Queues: 2})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			base := int64(4+g) * region
			buf := make([]byte, 8192)
			for i := 0; i < 100; i++ {
				data := fill(uint64(g*1000+i), 8192)
				off := base + int64(i%(region/8192))*8192
				if _, err := s.front.WriteAt(ctx, data, off); err != nil {
					errs <- err
					return
				}
				if _, err := s.front.ReadAt(ctx, buf, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf, data) {
					errs <- errors.New("a goroutine read back something else")
					return
				}
			}
		}(g)
	}
	for q := 0; q < 2; q++ {
		wg.Add(1)
		go func(q int) {
			defer wg.Done()
			if err := batchRegion(s.front, int64(q)*2*region, 2*region, 32); err != nil {
				errs <- err
			}
		}(q)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// batchRegion writes [base, base+n) in 4 KiB requests through a batch of
// depth, reads it back through the same batch, and compares.
func batchRegion(d *blkfront.Disk, base, n int64, depth int) error {
	b, err := d.NewBatch(depth)
	if err != nil {
		return err
	}
	defer b.Close()
	ctx := context.Background()
	const bs = 4096
	blocks := int(n / bs)
	data := fill(uint64(base)+1, int(n))
	back := make([]byte, n)
	var failed error
	reaped := func(tag uint64, k int, err error) {
		if err == nil && k != bs {
			err = errors.New("short completion")
		}
		if err != nil && failed == nil {
			failed = err
		}
	}
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < blocks; {
			var err error
			p, off := data[i*bs:(i+1)*bs], base+int64(i*bs)
			if pass == 0 {
				err = b.Write(p, off, uint64(i))
			} else {
				err = b.Read(back[i*bs:(i+1)*bs], off, uint64(i))
			}
			switch {
			case err == nil:
				i++
			case errors.Is(err, blkfront.ErrBatchFull):
				if _, err := b.Reap(ctx, 1, reaped); err != nil {
					return err
				}
			default:
				return err
			}
		}
		for b.Outstanding() > 0 {
			if _, err := b.Reap(ctx, b.Outstanding(), reaped); err != nil {
				return err
			}
		}
	}
	if failed != nil {
		return failed
	}
	if !bytes.Equal(back, data) {
		return errors.New("a batch read back something else")
	}
	return nil
}

// Closing the disk with batch requests in flight (the backend is stuck in
// its storage) fails each through Reap with ErrClosed; nothing hangs.
func TestBatchDiskClose(t *testing.T) {
	s, g, b := stuckWrites(t, 16, 16, make([]byte, 16*4096))
	closed := make(chan struct{})
	go func() { s.front.Close(); close(closed) }()
	got := map[uint64]completion{}
	reapAll(t, b, got)
	if len(got) != 16 {
		t.Fatalf("%d completions, want 16", len(got))
	}
	for tag, c := range got {
		if !errors.Is(c.err, blkfront.ErrClosed) {
			t.Fatalf("tag %d: %+v, want ErrClosed (the backend never answered)", tag, c)
		}
	}
	g.release()
	<-closed
	if err := b.Read(make([]byte, 4096), 0, 0); !errors.Is(err, blkfront.ErrClosed) {
		t.Fatalf("read on a closed disk: %v, want ErrClosed", err)
	}
}

// Reap's context ending abandons what is in flight: each request is
// reported with the context's error, an abandoned read's buffer is left
// alone when the answer comes later, and the slots come back (a batch of
// the queue's full depth can run afterwards).
func TestBatchContextEnds(t *testing.T) {
	s, g, b := stuckWrites(t, 8, 4, bytes.Repeat([]byte{1}, 4*4096))
	// Reads of the same blocks queue behind the writes in the backend
	// (Reap submits them).
	reads := make([][]byte, 4)
	for i := range reads {
		reads[i] = bytes.Repeat([]byte{0xaa}, 4096)
		if err := b.Read(reads[i], int64(i)*4096, uint64(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	// The context ends while Reap sleeps for answers that cannot come.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := map[uint64]completion{}
	type reaped struct {
		n   int
		err error
	}
	res := make(chan reaped, 1)
	go func() {
		n, err := b.Reap(ctx, 8, func(tag uint64, n int, err error) { got[tag] = completion{n, err} })
		res <- reaped{n, err}
	}()
	eventually.Blocked(t, 20*time.Second, "blkfront.(*Batch).sleep", "select")
	cancel()
	r := <-res
	n, err := r.n, r.err
	if !errors.Is(err, context.Canceled) || n != 8 || b.Outstanding() != 0 {
		t.Fatalf("reap: %d, %v, %d outstanding; want 8, context.Canceled, 0", n, err, b.Outstanding())
	}
	for tag, c := range got {
		if !errors.Is(c.err, context.Canceled) {
			t.Fatalf("tag %d: %+v, want context.Canceled", tag, c)
		}
	}
	g.release()
	waitAllSlotsFree(t, s.front)
	for i, r := range reads {
		if !bytes.Equal(r, bytes.Repeat([]byte{0xaa}, 4096)) {
			t.Fatalf("abandoned read %d's buffer was written", i)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Read(reads[0], 0, 0); !errors.Is(err, blkfront.ErrBatchClosed) {
		t.Fatalf("read on a closed batch: %v", err)
	}
}

// waitAllSlotsFree waits until every slot of a one-queue disk is free
// (abandoned requests are freed when their answers come): then a batch of
// the queue's depth places all its requests without reaping.
func waitAllSlotsFree(t *testing.T, d *blkfront.Disk) {
	t.Helper()
	full, err := d.NewBatch(d.SlotsPerQueue())
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	placed := 0
	eventually.True(t, 20*time.Second, "every slot of the queue free", func() bool {
		for placed = 0; placed < full.Depth(); placed++ {
			err := full.Read(make([]byte, 4096), 0, 0)
			if errors.Is(err, blkfront.ErrBatchFull) {
				reapAll(t, full, map[uint64]completion{})
				return false
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		return true
	})
	reapAll(t, full, map[uint64]completion{})
}

// Closing a batch frees every slot it holds: placed, in flight, and
// answered but not reaped (more than one Reap's chunk of them). A
// callback may not reap or close its batch.
func TestBatchCloseFreesEverySlot(t *testing.T) {
	s := newBatchStack(t, storage.NewMemory(4<<20), nil, blkfront.Config{Queues: 1})
	depth := s.front.SlotsPerQueue()
	b, err := s.front.NewBatch(depth)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for i := 0; i < depth; i++ {
		if err := b.Read(buf, int64(i)*4096, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Submit(); err != nil {
		t.Fatal(err)
	}
	// All are answered (more than one Reap's chunk); one Reap takes a
	// chunk of them.
	eventually.True(t, 20*time.Second, "every request answered", func() bool { return b.ReadyForTest() == depth })
	var nested []error
	n, err := b.Reap(context.Background(), 1, func(uint64, int, error) {
		_, e := b.Reap(context.Background(), 1, func(uint64, int, error) {})
		nested = append(nested, e, b.Close())
	})
	if err != nil || n < 1 {
		t.Fatalf("reap: %d, %v", n, err)
	}
	for _, e := range nested {
		if e == nil {
			t.Fatal("Reap or Close from Reap's callback succeeded")
		}
	}
	// Placed and never submitted, in the slots the Reap freed.
	for i := 0; i < n; i++ {
		if err := b.Read(buf, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitAllSlotsFree(t, s.front)
}

// A backend that crashes with batch writes in flight and is replaced: the
// frontend reconnects, re-issues them on the new ring, and they complete
// through Reap without an error; the data is there.
func TestBatchBackendRestart(t *testing.T) {
	want := fill(5, 32*4096)
	s, _, b := stuckWrites(t, 32, 32, want)
	mem := s.mem
	// The crashed backend's storage stays stuck until the end of the
	// test; the new one serves the memory directly, counting writes.
	go faultinject.CrashBackend(s.srv)
	counted := &storagetest.Counter{Device: mem}
	s.serve(counted)
	got := map[uint64]completion{}
	reapAll(t, b, got)
	if counted.Writes.Load() == 0 {
		t.Fatal("the writes completed without reaching the new backend: not re-issued")
	}
	for i := 0; i < 32; i++ {
		if c := got[uint64(i)]; c.err != nil || c.n != 4096 {
			t.Fatalf("write %d across the restart: %+v", i, c)
		}
	}
	back := make([]byte, len(want))
	if _, err := s.front.ReadAt(context.Background(), back, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, want) {
		t.Fatal("the batch's writes are not on the disk after the restart")
	}
}

// The steady state allocates nothing: a round of 32 reads or writes
// placed, submitted and reaped.
func TestBatchAllocations(t *testing.T) {
	s := newBatchStack(t, storage.Null{Size: 8 << 20}, nil, blkfront.Config{Queues: 1})
	const depth = 32
	b, err := s.front.NewBatch(depth)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bufs := make([][]byte, depth)
	for i := range bufs {
		bufs[i] = make([]byte, 4096)
	}
	ctx := context.Background()
	var failed error
	reaped := func(tag uint64, n int, err error) {
		if err != nil {
			failed = err
		}
	}
	var off int64
	round := func(write bool) {
		for i := 0; i < depth; i++ {
			off = (off + 4096) % (8 << 20)
			var err error
			if write {
				err = b.Write(bufs[i], off, uint64(i))
			} else {
				err = b.Read(bufs[i], off, uint64(i))
			}
			if err != nil {
				failed = err
				return
			}
		}
		if err := b.Submit(); err != nil {
			failed = err
		}
		for b.Outstanding() > 0 {
			if _, err := b.Reap(ctx, 1, reaped); err != nil {
				failed = err
				return
			}
		}
	}
	for i := 0; i < 50; i++ { // warm the pools and persistent grants
		round(i%2 == 0)
	}
	for _, write := range []bool{false, true} {
		allocs := testing.AllocsPerRun(100, func() { round(write) })
		if failed != nil {
			t.Fatal(failed)
		}
		if allocs != 0 {
			t.Errorf("write %v: %.2f allocations per round of %d requests, want 0", write, allocs, depth)
		}
	}
}
