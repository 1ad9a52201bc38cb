// Package storagetest is the block-device conformance suite: one list of
// cases that every storage.Device must pass — each storage backend
// directly, and the whole Xen stack (a frontend's disk as a Device) in one
// process and across processes. Beside it, small wrappers for tests over
// any device: Counter counts operations, Hooks injects faults.
package storagetest

import (
	"bytes"
	"errors"
	"math/rand"
	"sync"
	"testing"

	"github.com/xenblk/xenblk/storage"
)

// Open makes a fresh, zeroed device of size bytes for one case.
type Open func(t *testing.T, size int64) storage.Device

// Case is one conformance check.
type Case struct {
	Name string
	Run  func(t *testing.T, open Open)
	// Sink: the case also holds for a device that keeps nothing (Null),
	// since it never reads back what it wrote.
	Sink bool
}

const size = 4 << 20

// Cases is the suite.
var Cases = []Case{
	{"SizeAndBlockSizes", sizeAndBlocks, true},
	{"OutOfRangeIsErrOutOfRange", outOfRangeErrors, true},
	{"WritesReadBackAcrossTheRange", writesReadBack, false},
	{"FirstAndLastByte", firstAndLast, false},
	{"Flush", flush, false},
	{"DiscardReadsZerosWherePromised", discard, false},
	{"WriteZeroes", writeZeroes, false},
	{"ManyGoroutines", concurrent, false},
	{"OutOfRangeFailsAndTouchesNothing", outOfRange, false},
	{"ReadOnlyRefusesWrites", readOnly, false},
}

// Run runs every case against open.
func Run(t *testing.T, open Open) {
	for _, c := range Cases {
		t.Run(c.Name, func(t *testing.T) { c.Run(t, open) })
	}
}

// RunSink runs the cases that make sense for a device that drops what is
// written (storage.Null): sizes, zeros, and refusals.
func RunSink(t *testing.T, open Open) {
	for _, c := range Cases {
		if c.Sink {
			t.Run(c.Name, func(t *testing.T) { c.Run(t, open) })
		}
	}
}

func mustRead(t *testing.T, d storage.Device, n int, off int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if k, err := d.ReadAt(b, off); err != nil || k != n {
		t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, off, k, err)
	}
	return b
}

func mustWrite(t *testing.T, d storage.Device, p []byte, off int64) {
	t.Helper()
	if k, err := d.WriteAt(p, off); err != nil || k != len(p) {
		t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(p), off, k, err)
	}
}

func sizeAndBlocks(t *testing.T, open Open) {
	d := open(t, size)
	in := d.Info()
	if in.Size != size {
		t.Fatalf("size %d, want %d", in.Size, size)
	}
	if in.LogicalBlockSize != 512 && in.LogicalBlockSize != 4096 {
		t.Fatalf("logical block size %d", in.LogicalBlockSize)
	}
	if in.PhysicalBlockSize < in.LogicalBlockSize {
		t.Fatalf("physical block %d < logical %d", in.PhysicalBlockSize, in.LogicalBlockSize)
	}
	if !bytes.Equal(mustRead(t, d, 64<<10, size-64<<10), make([]byte, 64<<10)) {
		t.Fatal("a fresh device does not read as zeros")
	}
}

// writesReadBack writes random, unaligned, multi-page ranges and checks
// every byte of the device against a model.
func writesReadBack(t *testing.T, open Open) {
	d := open(t, size)
	model := make([]byte, size)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		var n int
		switch i % 4 {
		case 0:
			n = rng.Intn(600) + 1 // sub-sector
		case 1:
			n = (rng.Intn(16) + 1) * 512 // sectors
		case 2:
			n = rng.Intn(300<<10) + 1 // many pages, unaligned
		default:
			n = 4096
		}
		off := rng.Int63n(size - int64(n) + 1)
		if i%4 == 3 {
			off &^= 4095
		}
		p := make([]byte, n)
		rng.Read(p)
		mustWrite(t, d, p, off)
		copy(model[off:], p)
	}
	for off := int64(0); off < size; off += 1 << 20 {
		if got := mustRead(t, d, 1<<20, off); !bytes.Equal(got, model[off:off+1<<20]) {
			t.Fatalf("megabyte at %d differs from what was written", off)
		}
	}
	// Unaligned reads too.
	for i := 0; i < 50; i++ {
		n := rng.Intn(20000) + 1
		off := rng.Int63n(size - int64(n) + 1)
		if !bytes.Equal(mustRead(t, d, n, off), model[off:off+int64(n)]) {
			t.Fatalf("unaligned read of %d at %d differs", n, off)
		}
	}
}

func firstAndLast(t *testing.T, open Open) {
	d := open(t, size)
	mustWrite(t, d, []byte{0xa5}, 0)
	mustWrite(t, d, []byte{0x5a}, size-1)
	if b := mustRead(t, d, 1, 0); b[0] != 0xa5 {
		t.Fatalf("first byte %#x", b[0])
	}
	if b := mustRead(t, d, 1, size-1); b[0] != 0x5a {
		t.Fatalf("last byte %#x", b[0])
	}
}

func flush(t *testing.T, open Open) {
	d := open(t, size)
	mustWrite(t, d, []byte("durable"), 4096)
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if string(mustRead(t, d, 7, 4096)) != "durable" {
		t.Fatal("data changed across Flush")
	}
}

func discard(t *testing.T, open Open) {
	d := open(t, size)
	in := d.Info()
	pattern := bytes.Repeat([]byte{0xee}, 1<<20)
	mustWrite(t, d, pattern, 0)
	err := d.Discard(256<<10, 512<<10, false)
	if !in.CanDiscard {
		if err == nil {
			return // allowed to succeed as a no-op
		}
		if !errors.Is(err, storage.ErrNotSupported) {
			t.Fatalf("Discard on a device without discard: %v, want ErrNotSupported", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Discard: %v", err)
	}
	if in.DiscardZeroes && !bytes.Equal(mustRead(t, d, 512<<10, 256<<10), make([]byte, 512<<10)) {
		t.Fatal("discarded range does not read as zeros though DiscardZeroes")
	}
	if !bytes.Equal(mustRead(t, d, 256<<10, 0), pattern[:256<<10]) || !bytes.Equal(mustRead(t, d, 256<<10, 768<<10), pattern[:256<<10]) {
		t.Fatal("discard touched bytes outside its range")
	}
}

func writeZeroes(t *testing.T, open Open) {
	d := open(t, size)
	mustWrite(t, d, bytes.Repeat([]byte{0x11}, 64<<10), 0)
	if err := d.WriteZeroes(1000, 30000); err != nil {
		t.Fatalf("WriteZeroes: %v", err)
	}
	got := mustRead(t, d, 64<<10, 0)
	for i, b := range got {
		want := byte(0x11)
		if i >= 1000 && i < 31000 {
			want = 0
		}
		if b != want {
			t.Fatalf("byte %d = %#x, want %#x", i, b, want)
		}
	}
}

func concurrent(t *testing.T, open Open) {
	d := open(t, size)
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			base := int64(w) * (size / workers)
			for i := 0; i < 30; i++ {
				n := rng.Intn(32<<10) + 1
				off := base + rng.Int63n(size/workers-int64(n))
				p := make([]byte, n)
				rng.Read(p)
				if _, err := d.WriteAt(p, off); err != nil {
					errs <- err.Error()
					return
				}
				got := make([]byte, n)
				if _, err := d.ReadAt(got, off); err != nil || !bytes.Equal(got, p) {
					errs <- "read back differs under concurrency"
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func outOfRange(t *testing.T, open Open) {
	d := open(t, size)
	mustWrite(t, d, bytes.Repeat([]byte{0x77}, 4096), size-4096)
	for _, c := range []struct{ off, n int64 }{{size, 1}, {size - 1, 2}, {size - 4096, 8192}, {-1, 1}, {1 << 62, 512}} {
		if c.off >= 0 {
			if _, err := d.ReadAt(make([]byte, c.n), c.off); err == nil {
				t.Errorf("read of %d at %d past the end succeeded", c.n, c.off)
			}
		}
		if c.off >= 0 {
			if _, err := d.WriteAt(make([]byte, c.n), c.off); err == nil {
				t.Errorf("write of %d at %d past the end succeeded", c.n, c.off)
			}
		}
	}
	if !bytes.Equal(mustRead(t, d, 4096, size-4096), bytes.Repeat([]byte{0x77}, 4096)) {
		t.Fatal("a refused write changed the end of the device")
	}
}

func readOnly(t *testing.T, open Open) {
	base := open(t, size)
	mustWrite(t, base, []byte("keep"), 0)
	d := base
	if !base.Info().ReadOnly {
		d = storage.ReadOnly(base)
	}
	if !d.Info().ReadOnly {
		t.Fatal("read-only device does not say so")
	}
	if _, err := d.WriteAt([]byte("lost"), 0); err == nil {
		t.Fatal("write to a read-only device succeeded")
	}
	if err := d.Discard(0, 4096, false); err == nil {
		t.Fatal("discard on a read-only device succeeded")
	}
	if string(mustRead(t, d, 4, 0)) != "keep" {
		t.Fatal("a read-only device changed")
	}
}

// outOfRangeErrors: every operation on a range that is not within the
// device fails with ErrOutOfRange, including ranges whose end overflows.
func outOfRangeErrors(t *testing.T, open Open) {
	d := open(t, size)
	in := d.Info()
	for _, c := range []struct{ off, n int64 }{{size, 1}, {size - 1, 2}, {-1, 1}, {1 << 62, 512}, {size - 512, 1<<63 - 1}} {
		if c.n <= 1<<20 {
			if _, err := d.ReadAt(make([]byte, c.n), c.off); !errors.Is(err, storage.ErrOutOfRange) {
				t.Errorf("ReadAt(%d at %d): %v, want ErrOutOfRange", c.n, c.off, err)
			}
			if !in.ReadOnly {
				if _, err := d.WriteAt(make([]byte, c.n), c.off); !errors.Is(err, storage.ErrOutOfRange) {
					t.Errorf("WriteAt(%d at %d): %v, want ErrOutOfRange", c.n, c.off, err)
				}
			}
		}
		if in.ReadOnly {
			continue
		}
		if err := d.WriteZeroes(c.off, c.n); !errors.Is(err, storage.ErrOutOfRange) {
			t.Errorf("WriteZeroes(%d at %d): %v, want ErrOutOfRange", c.n, c.off, err)
		}
		if in.CanDiscard {
			if err := d.Discard(c.off, c.n, false); !errors.Is(err, storage.ErrOutOfRange) {
				t.Errorf("Discard(%d at %d): %v, want ErrOutOfRange", c.n, c.off, err)
			}
		}
	}
}
