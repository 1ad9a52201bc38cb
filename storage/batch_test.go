package storage_test

import (
	"bytes"
	"errors"
	"math/rand"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/xenblk/xenblk/storage"
)

// uringBatch makes f's io_uring batch, skipping loudly where the kernel
// will not make a ring.
func uringBatch(t testing.TB, d storage.Device, ops, bufs int) storage.Batch {
	t.Helper()
	b := storage.NewBatch(d, ops, bufs)
	if !storage.IsUringBatch(b) {
		if f, ok := d.(*storage.File); ok {
			_, err := f.NewBatch(ops, bufs)
			t.Skipf("SKIPPED: io_uring is not permitted here (%v); the io_uring batch is untested on this machine", err)
		}
		t.Fatalf("NewBatch(%T) is not an io_uring batch", d)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func openImage(t testing.TB, size int64, opt storage.FileOptions) *storage.File {
	t.Helper()
	opt.Create = size
	f, err := storage.OpenFile(filepath.Join(t.TempDir(), "batch.img"), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// aligned returns n bytes at a 4096-byte boundary plus shift.
func aligned(n, shift int) []byte {
	b := make([]byte, n+8192)
	o := int(-uintptr(unsafe.Pointer(&b[0]))&4095) + shift
	return b[o : o+n : o+n]
}

// batchKind is a device and the batch under test on it. Batches are made
// for batchOps operations and batchBufs buffers.
type batchKind struct {
	name  string
	uring bool
	make  func(t *testing.T, size int64) (storage.Device, storage.Batch)
}

const batchOps, batchBufs = 16, 2048

var batchKinds = []batchKind{
	{"SyncMemory", false, func(t *testing.T, size int64) (storage.Device, storage.Batch) {
		m := storage.NewMemory(size)
		return m, storage.NewSyncBatch(m, batchOps, batchBufs)
	}},
	{"SyncFile", false, func(t *testing.T, size int64) (storage.Device, storage.Batch) {
		f := openImage(t, size, storage.FileOptions{})
		return f, storage.NewSyncBatch(f, batchOps, batchBufs)
	}},
	{"UringFileBuffered", true, func(t *testing.T, size int64) (storage.Device, storage.Batch) {
		f := openImage(t, size, storage.FileOptions{})
		return f, uringBatch(t, f, batchOps, batchBufs)
	}},
	{"UringFileDirect", true, func(t *testing.T, size int64) (storage.Device, storage.Batch) {
		f := openImage(t, size, storage.FileOptions{Direct: true})
		return f, uringBatch(t, f, batchOps, batchBufs)
	}},
	{"UringSliceOfFile", true, func(t *testing.T, size int64) (storage.Device, storage.Batch) {
		f := openImage(t, size+2<<20, storage.FileOptions{})
		s, err := storage.NewSlice(f, 1<<20, size)
		if err != nil {
			t.Fatal(err)
		}
		return s, uringBatch(t, s, batchOps, batchBufs)
	}},
	{"UringReadOnlyOfDirectFile", true, func(t *testing.T, size int64) (storage.Device, storage.Batch) {
		// Writes go straight to the file; the batch may only read.
		f := openImage(t, size, storage.FileOptions{Direct: true})
		return f, uringBatch(t, storage.ReadOnly(f), batchOps, batchBufs)
	}},
}

// randomBuffers makes count buffers: whole aligned pages, or odd sizes at
// odd addresses, by style.
func randomBuffers(rng *rand.Rand, count int, style int) [][]byte {
	bufs := make([][]byte, count)
	for i := range bufs {
		switch style {
		case 0:
			bufs[i] = aligned(4096, 0)
		case 1:
			bufs[i] = aligned(512*(1+rng.Intn(8)), 0)
		case 3:
			bufs[i] = aligned(512, 512*rng.Intn(8))
		default:
			bufs[i] = aligned(1+rng.Intn(5000), rng.Intn(64))
		}
	}
	return bufs
}

// TestBatchMatchesModel runs rounds of batched reads and writes (several
// buffers each, aligned and not, one beyond IOV_MAX) on disjoint ranges
// and checks every read and, at the end, the whole device against a model
// kept with plain slices.
func TestBatchMatchesModel(t *testing.T) {
	const size = 16 << 20
	const slot = size / batchOps // one operation per slot: a batch's ops never overlap
	for _, k := range batchKinds {
		t.Run(k.name, func(t *testing.T) {
			dev, b := k.make(t, size)
			writer := storage.WritevAt
			canWrite := k.name != "UringReadOnlyOfDirectFile"
			model := make([]byte, size)
			rng := rand.New(rand.NewSource(11))
			seed := make([]byte, size)
			rng.Read(seed)
			if _, err := writer(dev, [][]byte{seed}, 0); err != nil {
				t.Fatal(err)
			}
			copy(model, seed)
			for round := 0; round < 12; round++ {
				type pending struct {
					write bool
					bufs  [][]byte
					off   int64
				}
				ops := map[uint32]pending{}
				for i := 0; i < batchOps; i++ {
					count := 1 + rng.Intn(5)
					if round == 3 && i == 0 {
						count = 1500 // beyond IOV_MAX: split over SQEs
					}
					style := (round + i) % 3
					if count == 1500 {
						style = 3
					}
					bufs := randomBuffers(rng, count, style)
					total := len(bytes.Join(bufs, nil))
					room := slot - total
					if room < 0 {
						t.Fatalf("an operation of %d bytes does not fit a slot", total)
					}
					off := int64(i)*slot + rng.Int63n(int64(room)+1)
					if style != 2 {
						off &^= 511 // O_DIRECT-aligned: straight through
					}
					write := canWrite && rng.Intn(2) == 0
					if write {
						for _, buf := range bufs {
							rng.Read(buf)
						}
					}
					tag := uint32(round*100 + i)
					ops[tag] = pending{write, bufs, off}
					if err := b.Add(write, bufs, off, tag); err != nil {
						t.Fatalf("round %d: Add op %d (%d buffers, %d bytes at %d): %v", round, i, count, total, off, err)
					}
				}
				if b.Len() != batchOps {
					t.Fatalf("Len %d after %d Adds", b.Len(), batchOps)
				}
				seen := map[uint32]bool{}
				err := b.Submit(func(tag uint32, err error) {
					op, ok := ops[tag]
					if !ok || seen[tag] {
						t.Errorf("done(%d): unknown or repeated tag", tag)
						return
					}
					seen[tag] = true
					if err != nil {
						t.Errorf("op %d: %v", tag, err)
						return
					}
					if op.write {
						copy(model[op.off:], bytes.Join(op.bufs, nil))
					} else if !bytes.Equal(bytes.Join(op.bufs, nil), model[op.off:op.off+int64(len(bytes.Join(op.bufs, nil)))]) {
						t.Errorf("round %d: read %d at %d differs from the model", round, tag, op.off)
					}
				})
				if err != nil {
					t.Fatalf("Submit: %v", err)
				}
				if len(seen) != len(ops) || b.Len() != 0 {
					t.Fatalf("done called for %d of %d ops; Len %d after Submit", len(seen), len(ops), b.Len())
				}
			}
			whole := make([]byte, size)
			if _, err := dev.ReadAt(whole, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(whole, model) {
				t.Fatal("the device differs from the model")
			}
		})
	}
}

func TestBatchFull(t *testing.T) {
	for _, k := range batchKinds {
		t.Run(k.name, func(t *testing.T) {
			_, b := k.make(t, 1<<20)
			page := [][]byte{make([]byte, 512)}
			for i := 0; i < batchOps; i++ {
				if err := b.Add(false, page, 0, uint32(i)); err != nil {
					t.Fatalf("Add %d of %d: %v", i, batchOps, err)
				}
			}
			if err := b.Add(false, page, 0, 99); !errors.Is(err, storage.ErrBatchFull) {
				t.Fatalf("Add beyond %d ops: %v, want ErrBatchFull", batchOps, err)
			}
			if b.Len() != batchOps {
				t.Fatalf("a refused Add was queued: Len %d", b.Len())
			}
			calls := 0
			if err := b.Submit(func(uint32, error) { calls++ }); err != nil || calls != batchOps {
				t.Fatalf("Submit: %v, %d calls", err, calls)
			}
			// The buffer limit: one op with nearly all of them, then one
			// more than is left.
			many := make([][]byte, batchBufs-2)
			for i := range many {
				many[i] = make([]byte, 512)
			}
			if err := b.Add(false, many, 0, 1); err != nil {
				t.Fatal(err)
			}
			if err := b.Add(false, many[:3], 0, 2); !errors.Is(err, storage.ErrBatchFull) {
				t.Fatalf("Add beyond %d buffers: %v, want ErrBatchFull", batchBufs, err)
			}
			if err := b.Add(false, many[:2], 0, 3); err != nil {
				t.Fatalf("Add filling the buffers exactly: %v", err)
			}
			b.Submit(func(uint32, error) {})
			// An op no empty batch can hold is not "full": retrying cannot help.
			huge := append(many, many[:3]...)
			if err := b.Add(false, huge, 0, 4); err == nil || errors.Is(err, storage.ErrBatchFull) {
				t.Fatalf("an op of %d buffers in a batch of %d: %v, want an error other than ErrBatchFull", len(huge), batchBufs, err)
			}
		})
	}
}

func TestBatchRefusesOutOfRange(t *testing.T) {
	for _, k := range batchKinds {
		t.Run(k.name, func(t *testing.T) {
			const size = 1 << 20
			dev, b := k.make(t, size)
			for _, c := range []struct {
				bufs [][]byte
				off  int64
			}{
				{[][]byte{make([]byte, 512)}, size},
				{[][]byte{make([]byte, 512)}, -512},
				{[][]byte{make([]byte, 4096), make([]byte, 512)}, size - 4096},
				{[][]byte{make([]byte, 512)}, 1 << 62},
			} {
				for _, write := range []bool{false, true} {
					if err := b.Add(write, c.bufs, c.off, 1); !errors.Is(err, storage.ErrOutOfRange) && !errors.Is(err, storage.ErrReadOnly) {
						t.Errorf("Add(write %v, %d buffers at %d): %v, want ErrOutOfRange", write, len(c.bufs), c.off, err)
					}
				}
			}
			if b.Len() != 0 {
				t.Fatalf("refused Adds were queued: Len %d", b.Len())
			}
			if s, ok := dev.(*storage.Slice); ok {
				// The window's refusal kept the bytes after it untouched.
				after := make([]byte, 4096)
				s.Dev.ReadAt(after, s.Offset+size)
				if !bytes.Equal(after, make([]byte, 4096)) {
					t.Fatal("the bytes after the window changed")
				}
			}
		})
	}
}

func TestBatchReadOnly(t *testing.T) {
	const size = 1 << 20
	roFile := openImage(t, size, storage.FileOptions{})
	roFile.Close()
	f, err := storage.OpenFile(roFile.Path(), storage.FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rw := openImage(t, size, storage.FileOptions{})
	for name, b := range map[string]storage.Batch{
		"ReadOnlyFile":          uringBatch(t, f, 4, 4),
		"ReadOnlyWrapperOfFile": uringBatch(t, storage.ReadOnly(rw), 4, 4),
		"SyncReadOnlyMemory":    storage.NewSyncBatch(storage.ReadOnly(storage.NewMemory(size)), 4, 4),
		"SliceOfReadOnly":       storage.NewBatch(mustSlice(t, storage.ReadOnly(rw), 4096, 8192), 4, 4),
	} {
		buf := [][]byte{make([]byte, 512)}
		if err := b.Add(true, buf, 0, 1); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("%s: write Add: %v, want ErrReadOnly", name, err)
		}
		if err := b.Add(false, buf, 0, 2); err != nil {
			t.Errorf("%s: read Add: %v", name, err)
		}
		var got []uint32
		if err := b.Submit(func(tag uint32, err error) {
			if err != nil {
				t.Errorf("%s: read: %v", name, err)
			}
			got = append(got, tag)
		}); err != nil || len(got) != 1 || got[0] != 2 {
			t.Errorf("%s: Submit %v, completed %v, want just the read (2)", name, err, got)
		}
		b.Close()
	}
}

func mustSlice(t *testing.T, d storage.Device, off, size int64) *storage.Slice {
	s, err := storage.NewSlice(d, off, size)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBatchClose(t *testing.T) {
	for _, k := range batchKinds {
		t.Run(k.name, func(t *testing.T) {
			_, b := k.make(t, 1<<20)
			if err := b.Add(false, [][]byte{make([]byte, 512)}, 0, 1); err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := b.Add(false, [][]byte{make([]byte, 512)}, 0, 2); err == nil {
				t.Fatal("Add after Close succeeded")
			}
			called := false
			if err := b.Submit(func(uint32, error) { called = true }); err == nil || called {
				t.Fatalf("Submit after Close: %v, done called %v", err, called)
			}
		})
	}
}

func TestNewBatchChoosesTheMechanism(t *testing.T) {
	f := openImage(t, 1<<20, storage.FileOptions{})
	uringBatch(t, f, 4, 4) // skips loudly where io_uring is not permitted
	for name, c := range map[string]struct {
		dev   storage.Device
		uring bool
	}{
		"File":              {f, true},
		"SliceOfFile":       {mustSlice(t, f, 4096, 8192), true},
		"ReadOnlyOfFile":    {storage.ReadOnly(f), true},
		"SliceOfReadOnly":   {mustSlice(t, storage.ReadOnly(f), 0, 4096), true},
		"Memory":            {storage.NewMemory(1 << 20), false},
		"SliceOfMemory":     {mustSlice(t, storage.NewMemory(1<<20), 0, 4096), false},
		"ReadOnlyOfNullDev": {storage.ReadOnly(storage.Null{Size: 4096}), false},
	} {
		b := storage.NewBatch(c.dev, 4, 4)
		if storage.IsUringBatch(b) != c.uring {
			t.Errorf("%s: io_uring %v, want %v", name, !c.uring, c.uring)
		}
		b.Close()
	}
}

// TestBatchAllocatesNothing: steady-state Add and Submit allocate nothing
// for the sync batch and the io_uring batch, directly and through a window.
func TestBatchAllocatesNothing(t *testing.T) {
	for _, k := range batchKinds {
		t.Run(k.name, func(t *testing.T) {
			_, b := k.make(t, 1<<20)
			bufs := [][]byte{aligned(4096, 0), aligned(4096, 0)}
			calls := 0
			done := func(tag uint32, err error) {
				if err != nil {
					t.Error(err)
				}
				calls++
			}
			allocs := testing.AllocsPerRun(50, func() {
				for i := 0; i < 8; i++ {
					if err := b.Add(false, bufs, int64(i)*8192, uint32(i)); err != nil {
						t.Fatal(err)
					}
				}
				if err := b.Submit(done); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per 8 Adds and a Submit", allocs)
			}
			if calls != 51*8 {
				t.Fatalf("%d completions, want %d", calls, 51*8)
			}
		})
	}
}

// TestBatchEmptyOperation: an operation without bytes completes at once,
// successfully, beside ordinary ones.
func TestBatchEmptyOperation(t *testing.T) {
	for _, k := range batchKinds {
		t.Run(k.name, func(t *testing.T) {
			_, b := k.make(t, 1<<20)
			for i, bufs := range [][][]byte{nil, {{}}, {make([]byte, 512)}, {{}, {}}} {
				if err := b.Add(false, bufs, 4096, uint32(i)); err != nil {
					t.Fatalf("Add op %d: %v", i, err)
				}
			}
			completed := 0
			err := b.Submit(func(tag uint32, err error) {
				if err != nil {
					t.Errorf("op %d: %v", tag, err)
				}
				completed++
			})
			if err != nil || completed != 4 {
				t.Fatalf("Submit: %v, %d of 4 completed", err, completed)
			}
		})
	}
}

// IOUringAvailable says what uringBatch finds: nil exactly when a File's
// batch is an io_uring one (serve logs its error at startup).
func TestIOUringAvailableAgreesWithTheBatches(t *testing.T) {
	f := openImage(t, 1<<20, storage.FileOptions{})
	b := storage.NewBatch(f, 4, 4)
	defer b.Close()
	err := storage.IOUringAvailable()
	if (err == nil) != storage.IsUringBatch(b) {
		t.Fatalf("IOUringAvailable() = %v, but the file's batch is io_uring: %v", err, storage.IsUringBatch(b))
	}
	if err != nil {
		t.Skipf("SKIPPED: io_uring is not permitted here (%v)", err)
	}
}
