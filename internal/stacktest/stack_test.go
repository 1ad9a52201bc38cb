package stacktest

import (
	"bytes"
	"context"
	"math/rand"
	"sync"
	"testing"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/faultinject"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen/sim"
)

// newMemDisk is the disk these tests serve: memory with a cache to flush,
// so the backend offers flushes.
func newMemDisk(size int64) *storage.Memory {
	return storage.NewMemoryAs(storage.Info{Size: size, LogicalBlockSize: 512, PhysicalBlockSize: 4096,
		CanFlush: true, CanDiscard: true, DiscardZeroes: true})
}

// diskBytes reads [off, off+n) of a disk straight from it, past the stack.
// (Through the device's lock: the backend's writes reach the test through
// rings in mmap'd memory, which the race detector cannot see as
// synchronisation.)
func diskBytes(t testing.TB, d storage.Device, off, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

type stack struct {
	*simstack.Stack
	host  *sim.Host
	guest *sim.Domain
	disk  *storage.Memory
	front *blkfront.Disk
	vbd   toolstack.VBD
	// server is the first backend's; done is closed once its Serve
	// has returned.
	server *blkback.Server
	done   <-chan struct{}
}

// crash kills the first backend as a dead process would.
func (s *stack) crash() { faultinject.CrashBackend(s.server) }

// restart starts another backend serving the stack's disk; the stack
// stops it at cleanup.
func (s *stack) restart() *simstack.Backend {
	return s.Serve(blkback.Config{}, simstack.Serving(s.disk))
}

func newStack(t *testing.T, size int, fcfg blkfront.Config) *stack {
	t.Helper()
	return newStackWith(t, size, fcfg, blkback.Config{})
}

func newStackWith(t *testing.T, size int, fcfg blkfront.Config, bcfg blkback.Config) *stack {
	t.Helper()
	disk := newMemDisk(int64(size))
	ss := simstack.ForTest(t, disk, simstack.Options{Backend: bcfg})
	g, err := ss.AttachGuest(context.Background(), "guest", "vdev=xvda, access=rw, target=memory", fcfg)
	if err != nil {
		t.Fatal(err)
	}
	return &stack{Stack: ss, host: ss.Host, guest: g.Domain, disk: disk, front: g.Disk, vbd: g.VBD,
		server: ss.Backend.Server, done: ss.Backend.Done()}
}

func TestReadWriteEverySize(t *testing.T) {
	for _, cfg := range []blkfront.Config{{}, {MaxIndirectSegments: -1}, {Queues: 1, RingPageOrder: 0}} {
		s := newStack(t, 8<<20, cfg)
		in := s.front.Info()
		if in.Size() != 8<<20 {
			t.Fatalf("size %d", in.Size())
		}
		rng := rand.New(rand.NewSource(1))
		ctx := context.Background()
		for _, n := range []int{512, 4096, 4608, 11 * 4096, 12 * 4096, 1 << 20, 3<<20 + 512} {
			off := int64(rng.Intn((8<<20-n)/512)) * 512
			data := make([]byte, n)
			rng.Read(data)
			if _, err := s.front.WriteAt(ctx, data, off); err != nil {
				t.Fatalf("cfg %+v: write %d at %d: %v", cfg, n, off, err)
			}
			if !bytes.Equal(diskBytes(t, s.disk, off, int64(n)), data) {
				t.Fatalf("write %d at %d did not reach the disk", n, off)
			}
			got := make([]byte, n)
			if _, err := s.front.ReadAt(ctx, got, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read back %d at %d differs", n, off)
			}
		}
		if err := s.front.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.front.Discard(ctx, 0, 1<<20, false); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(diskBytes(t, s.disk, 0, 1<<20), make([]byte, 1<<20)) {
			t.Fatal("discard did not zero")
		}
		if _, err := s.front.ReadAt(ctx, make([]byte, 512), 8<<20); err == nil {
			t.Fatal("read past the end succeeded")
		}
	}
}

func TestManyGoroutines(t *testing.T) {
	s := newStack(t, 16<<20, blkfront.Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			base := int64(g) << 20
			for i := 0; i < 50; i++ {
				n := (rng.Intn(64) + 1) * 512
				off := base + int64(rng.Intn((1<<20-n)/512))*512
				data := make([]byte, n)
				rng.Read(data)
				if _, err := s.front.WriteAt(context.Background(), data, off); err != nil {
					errs <- err
					return
				}
				got := make([]byte, n)
				if _, err := s.front.ReadAt(context.Background(), got, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, data) {
					errs <- errMismatch
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

type mismatch struct{}

func (mismatch) Error() string { return "data mismatch" }

var errMismatch = mismatch{}

// A backend that offers none of the optional features: one queue,
// single-page ring, no indirect, no persistent grants, no flush or barrier. The frontend still does everything it can.
func TestMinimalBackend(t *testing.T) {
	s := newStackWith(t, 4<<20, blkfront.Config{}, blkback.Config{MaxQueues: 1, MaxRingPageOrder: -1,
		MaxIndirectSegments: -1, PersistentGrants: -1, NoFlush: true, NoBarrier: true})
	in := s.front.Info()
	if in.Queues != 1 || in.RingPageOrder != 0 || in.IndirectSegments != 0 || in.Persistent || in.Flush || in.Barrier {
		t.Fatalf("negotiated more than offered: %+v", in)
	}
	ctx := context.Background()
	data := bytes.Repeat([]byte("minimal!"), 128<<10/8) // 128 KiB: many direct requests
	if _, err := s.front.WriteAt(ctx, data, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := s.front.ReadAt(ctx, got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	if err := s.front.Flush(ctx); err != nil {
		t.Fatalf("Flush against a backend without a cache to flush: %v", err)
	}
}
