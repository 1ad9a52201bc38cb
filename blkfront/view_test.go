package blkfront_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/storage"
)

// viewBytes joins a view's pages, checking their shape: one slice per
// page, every one a full page but the last, n bytes in all.
func viewBytes(t *testing.T, pages [][]byte, n int) []byte {
	t.Helper()
	if want := (n + 4095) / 4096; len(pages) != want {
		t.Fatalf("view of %d bytes in %d pages, want %d", n, len(pages), want)
	}
	var out []byte
	for i, p := range pages {
		if i < len(pages)-1 && len(p) != 4096 || cap(p) != len(p) {
			t.Fatalf("page %d of %d: len %d cap %d", i, len(pages), len(p), cap(p))
		}
		out = append(out, p...)
	}
	if len(out) != n {
		t.Fatalf("view of %d bytes, want %d", len(out), n)
	}
	return out
}

// reapViews reaps at least one completion, requiring no error and the
// full length, and returns the tags reaped.
func reapViews(t *testing.T, b *blkfront.Batch, lens map[uint64]int) []uint64 {
	t.Helper()
	var tags []uint64
	_, err := b.Reap(context.Background(), 1, func(tag uint64, n int, err error) {
		if err != nil || n != lens[tag] {
			t.Errorf("view %d: %d bytes, %v; want %d", tag, n, err, lens[tag])
		}
		tags = append(tags, tag)
	})
	if err != nil {
		t.Fatal(err)
	}
	return tags
}

// Data read through ReadView equals ReadAt's across the whole disk, with
// views of 512 bytes to a full indirect request, held a while and released
// in a shuffled order; a held view's pages keep their data while other
// requests (a batch's copying reads and writes, ReadAt, WriteAt) go
// through the same queue's pool.
func TestBatchViewMatchesReadAt(t *testing.T) {
	const size = 8 << 20
	s := newBatchStack(t, storage.NewMemory(size), nil, blkfront.Config{Queues: 1})
	ctx := context.Background()
	disk := fill(11, size)
	if _, err := s.front.WriteAt(ctx, disk, 0); err != nil {
		t.Fatal(err)
	}
	sizes := []int{512, 4096, 4096 + 512, 11 * 4096, 12 * 4096, 64 << 10, s.front.MaxRequestBytes()}
	if s.front.MaxRequestBytes() != 1<<20 {
		t.Fatalf("requests of %d bytes, want 1 MiB (indirect)", s.front.MaxRequestBytes())
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, depth := range []int{1, 8, 32} {
		b, err := s.front.NewBatch(depth)
		if err != nil {
			t.Fatal(err)
		}
		offs, lens := map[uint64]int64{}, map[uint64]int{}
		var held []uint64
		// check compares a held view with the disk and releases it.
		check := func(tag uint64) {
			pages, err := b.View(tag)
			if err != nil {
				t.Fatalf("depth %d: view %d: %v", depth, tag, err)
			}
			off, n := offs[tag], lens[tag]
			if !bytes.Equal(viewBytes(t, pages, n), disk[off:off+int64(n)]) {
				t.Fatalf("depth %d: view %d of %d bytes at %d differs from the disk", depth, tag, n, off)
			}
			if err := b.Release(tag); err != nil {
				t.Fatal(err)
			}
		}
		tag := uint64(0)
		for off, i := int64(0), 0; off < size; i++ {
			n := int(min(int64(sizes[i%len(sizes)]), size-off))
			for {
				err := b.ReadView(off, n, tag)
				if err == nil {
					break
				}
				if !errors.Is(err, blkfront.ErrBatchFull) {
					t.Fatal(err)
				}
				if b.Outstanding() > 0 {
					held = append(held, reapViews(t, b, lens)...)
				}
				// Keep some views held across the next reaps; release
				// the rest in a shuffled order.
				rng.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
				keep := min(len(held), depth/2)
				for _, t := range held[keep:] {
					check(t)
				}
				held = held[:keep]
			}
			offs[tag], lens[tag] = off, n
			off += int64(n)
			tag++
		}
		for b.Outstanding() > 0 {
			held = append(held, reapViews(t, b, lens)...)
		}
		if b.Held() != len(held) {
			t.Fatalf("depth %d: Held %d, want %d", depth, b.Held(), len(held))
		}
		// With views held, traffic through the pool leaves them alone.
		other, err := s.front.NewBatch(8)
		if err != nil {
			t.Fatal(err)
		}
		got := map[uint64]completion{}
		for i := 0; i < 64; i++ {
			buf := make([]byte, 64<<10)
			placeOrReap(t, other, got, func() error { return other.Read(buf, int64(i)*(64<<10), uint64(i)) })
			w := disk[int64(i)*(64<<10) : int64(i+1)*(64<<10)]
			placeOrReap(t, other, got, func() error { return other.Write(w, int64(i)*(64<<10), uint64(1000+i)) })
		}
		reapAll(t, other, got)
		other.Close()
		for i := 0; i < 16; i++ {
			if _, err := s.front.WriteAt(ctx, disk[i<<16:(i+1)<<16], int64(i)<<16); err != nil {
				t.Fatal(err)
			}
		}
		for _, t := range held {
			check(t)
		}
		if b.Held() != 0 {
			t.Fatalf("Held %d after releasing all", b.Held())
		}
		b.Close()
	}
	waitAllSlotsFree(t, s.front)
}

// The contract's edges: a duplicate tag is refused, views count against
// the depth, View and Release of what is not held fail, and Close
// releases what is held (every slot comes back).
func TestBatchViewContract(t *testing.T) {
	s := newBatchStack(t, storage.NewMemory(4<<20), nil, blkfront.Config{Queues: 1})
	b, err := s.front.NewBatch(3)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ReadView(0, 8192, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadView(8192, 8192, 1); err == nil || errors.Is(err, blkfront.ErrBatchFull) {
		t.Fatalf("a second view read under tag 1 while the first is placed: %v", err)
	}
	if _, err := b.View(1); !errors.Is(err, blkfront.ErrNoView) {
		t.Fatalf("View of a view not reaped: %v, want ErrNoView", err)
	}
	if err := b.ReadView(4096, 4096, 2); err != nil {
		t.Fatal(err)
	}
	lens := map[uint64]int{1: 8192, 2: 4096, 3: 512}
	for b.Outstanding() > 0 {
		reapViews(t, b, lens)
	}
	if b.Held() != 2 {
		t.Fatalf("Held %d, want 2", b.Held())
	}
	if err := b.ReadView(0, 4096, 1); err == nil {
		t.Fatal("a view read under the tag of a held view was accepted")
	}
	if err := b.ReadView(0, 512, 3); err != nil {
		t.Fatal(err)
	}
	// Two held and one in flight: the depth of 3 is used up.
	if err := b.Read(make([]byte, 4096), 0, 9); !errors.Is(err, blkfront.ErrBatchFull) {
		t.Fatalf("a fourth request with two views held and one in flight: %v, want ErrBatchFull", err)
	}
	for b.Outstanding() > 0 {
		reapViews(t, b, lens)
	}
	if err := b.Release(2); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(2); !errors.Is(err, blkfront.ErrNoView) {
		t.Fatalf("second Release: %v, want ErrNoView", err)
	}
	if _, err := b.View(2); !errors.Is(err, blkfront.ErrNoView) {
		t.Fatalf("View after Release: %v, want ErrNoView", err)
	}
	// Released in the callback: the slot is free for the next request.
	if err := b.Read(make([]byte, 4096), 0, 9); err != nil {
		t.Fatal(err)
	}
	var inCallback error
	if _, err := b.Reap(context.Background(), 1, func(tag uint64, n int, err error) {
		inCallback = b.Release(3)
	}); err != nil || inCallback != nil {
		t.Fatalf("reap %v, Release from the callback %v", err, inCallback)
	}
	if b.Held() != 1 {
		t.Fatalf("Held %d, want 1 (tag 1)", b.Held())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.View(1); !errors.Is(err, blkfront.ErrBatchClosed) {
		t.Fatalf("View after Close: %v", err)
	}
	if err := b.Release(1); !errors.Is(err, blkfront.ErrBatchClosed) {
		t.Fatalf("Release after Close: %v", err)
	}
	waitAllSlotsFree(t, s.front)
}

// Closing a batch with views held and view reads in flight frees every
// slot; a view held when the Disk closes stays readable until released.
func TestBatchViewClose(t *testing.T) {
	const size = 4 << 20
	s := newBatchStack(t, storage.NewMemory(size), nil, blkfront.Config{Queues: 1})
	ctx := context.Background()
	disk := fill(21, size)
	if _, err := s.front.WriteAt(ctx, disk, 0); err != nil {
		t.Fatal(err)
	}
	b, err := s.front.NewBatch(16)
	if err != nil {
		t.Fatal(err)
	}
	lens := map[uint64]int{}
	for i := 0; i < 8; i++ {
		lens[uint64(i)] = 256 << 10
		if err := b.ReadView(int64(i)*(256<<10), 256<<10, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	for b.Outstanding() > 0 {
		reapViews(t, b, lens)
	}
	for i := 8; i < 16; i++ {
		if err := b.ReadView(int64(i)*(256<<10), 256<<10, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Submit(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitAllSlotsFree(t, s.front)

	b, err = s.front.NewBatch(4)
	if err != nil {
		t.Fatal(err)
	}
	lens = map[uint64]int{0: 1 << 20, 1: 1 << 20}
	for i := 0; i < 2; i++ {
		if err := b.ReadView(int64(i)<<20, 1<<20, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	for b.Outstanding() > 0 {
		reapViews(t, b, lens)
	}
	if err := s.front.Close(); err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < 2; i++ {
		pages, err := b.View(i)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(viewBytes(t, pages, 1<<20), disk[i<<20:(i+1)<<20]) {
			t.Fatalf("view %d differs after the disk closed", i)
		}
	}
	if err := b.Release(1); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadView(0, 4096, 5); !errors.Is(err, blkfront.ErrBatchClosed) {
		t.Fatalf("ReadView on a closed batch: %v", err)
	}
}

// The view path allocates nothing in steady state: rounds of 4 KiB and of
// 1 MiB view reads placed, reaped, read and released.
func TestBatchViewAllocations(t *testing.T) {
	s := newBatchStack(t, storage.Null{Size: 64 << 20}, nil, blkfront.Config{Queues: 1})
	for _, c := range []struct{ depth, n int }{{32, 4096}, {4, 1 << 20}} {
		b, err := s.front.NewBatch(c.depth)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		var failed error
		var sum byte
		reaped := func(tag uint64, n int, err error) {
			if err != nil || n != c.n {
				failed = errors.New("a view read failed")
				return
			}
			pages, err := b.View(tag)
			if err != nil {
				failed = err
				return
			}
			for _, p := range pages {
				sum += p[0] + p[len(p)-1]
			}
			if err := b.Release(tag); err != nil {
				failed = err
			}
		}
		var off int64
		round := func() {
			for i := 0; i < c.depth; i++ {
				off = (off + int64(c.n)) % (64 << 20)
				if err := b.ReadView(off, c.n, uint64(i)); err != nil {
					failed = err
					return
				}
			}
			for b.Outstanding() > 0 {
				if _, err := b.Reap(ctx, 1, reaped); err != nil {
					failed = err
					return
				}
			}
		}
		for i := 0; i < 50; i++ {
			round()
		}
		allocs := testing.AllocsPerRun(50, round)
		if failed != nil {
			t.Fatal(failed)
		}
		if allocs != 0 {
			t.Errorf("%d-byte views: %.2f allocations per round of %d, want 0", c.n, allocs, c.depth)
		}
		b.Close()
	}
}

// Views read on one goroutine while others copy reads and writes through
// the same queue's pool: every view holds its own data (race-clean).
func TestBatchViewBesideGoroutines(t *testing.T) {
	const region = 2 << 20
	s := newBatchStack(t, storage.NewMemory(2*region), nil, blkfront.Config{Queues: 1})
	ctx := context.Background()
	disk := fill(31, region)
	if _, err := s.front.WriteAt(ctx, disk, 0); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errs := make(chan error, 2)
	for g := 0; g < 2; g++ {
		go func(g int) {
			buf := make([]byte, 64<<10)
			for i := 0; ; i++ {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				off := int64(region) + int64(g)*(region/2) + int64(i%8)*int64(len(buf))
				if err := writeReadBack(s.front, fill(uint64(g<<20|i), len(buf)), buf, off); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	b, err := s.front.NewBatch(8)
	if err != nil {
		t.Fatal(err)
	}
	const n = 128 << 10
	lens := map[uint64]int{}
	for round := 0; round < 20; round++ {
		for i := 0; i < 8; i++ {
			tag := uint64(i)
			lens[tag] = n
			if err := b.ReadView(int64((round*8+i)%(region/n))*n, n, tag); err != nil {
				t.Fatal(err)
			}
		}
		for b.Outstanding() > 0 {
			reapViews(t, b, lens)
		}
		for i := 7; i >= 0; i-- {
			pages, err := b.View(uint64(i))
			if err != nil {
				t.Fatal(err)
			}
			off := int64((round*8+i)%(region/n)) * n
			if !bytes.Equal(viewBytes(t, pages, n), disk[off:off+n]) {
				t.Fatalf("round %d: view %d differs", round, i)
			}
			if err := b.Release(uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	b.Close()
	close(stop)
	for g := 0; g < 2; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// writeReadBack writes data at off with WriteAt and reads it back into buf
// with ReadAt.
func writeReadBack(d *blkfront.Disk, data, buf []byte, off int64) error {
	ctx := context.Background()
	if _, err := d.WriteAt(ctx, data, off); err != nil {
		return err
	}
	if _, err := d.ReadAt(ctx, buf, off); err != nil {
		return err
	}
	if !bytes.Equal(buf, data) {
		return errors.New("read back something else than written")
	}
	return nil
}
