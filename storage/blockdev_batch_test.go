package storage_test

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/xenblk/xenblk/internal/looptest"
	"github.com/xenblk/xenblk/storage"
)

// The io_uring batch over a block device joins every batch test (the
// model, full, out of range, close, no allocations, empty operations):
// its device is a loop device over a sparse image.
func init() {
	batchKinds = append(batchKinds, batchKind{"UringBlockDev", true, func(t *testing.T, size int64) (storage.Device, storage.Batch) {
		d := loopBlockDev(t, size)
		return d, uringBatch(t, d, batchOps, batchBufs)
	}})
}

// loopBlockDev attaches a loop device over a new image of size bytes and
// opens it as a BlockDev; both go away with the test (looptest skips
// loudly where no loop device can be attached).
func loopBlockDev(t testing.TB, size int64) *storage.BlockDev {
	t.Helper()
	path, _ := looptest.Attach(t, size)
	d, err := storage.OpenBlockDev(path, storage.BlockDevOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestBlockDevBatchIsUring: a block device, and a partition of one, get
// the io_uring batch from NewBatch, not the one-call-per-operation sync
// batch.
func TestBlockDevBatchIsUring(t *testing.T) {
	d := loopBlockDev(t, 1<<20)
	uringBatch(t, d, 4, 4) // skips loudly where io_uring is not permitted
	part, err := storage.NewSlice(d, 4096, 8192)
	if err != nil {
		t.Fatal(err)
	}
	for name, dev := range map[string]storage.Device{"BlockDev": d, "SliceOfBlockDev": part, "ReadOnlyOfBlockDev": storage.ReadOnly(d)} {
		b := storage.NewBatch(dev, 4, 4)
		if !storage.IsUringBatch(b) {
			t.Errorf("%s: NewBatch gave a batch without io_uring", name)
		}
		b.Close()
	}
}

// TestReadOnlyBlockDevBatch: a block device opened read-only refuses
// batched writes at Add and carries out reads.
func TestReadOnlyBlockDevBatch(t *testing.T) {
	rw := loopBlockDev(t, 1<<20)
	want := make([]byte, 4096)
	for i := range want {
		want[i] = byte(i * 7)
	}
	if _, err := rw.WriteAt(want, 8192); err != nil {
		t.Fatal(err)
	}
	if err := rw.Flush(); err != nil {
		t.Fatal(err)
	}
	rw.Close() // a reader is refused beside a writer
	ro, err := storage.OpenBlockDev(rw.Path(), storage.BlockDevOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	b := uringBatch(t, ro, 4, 4)
	got := make([]byte, 4096)
	if err := b.Add(true, [][]byte{got}, 0, 1); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("write Add on a read-only block device: %v, want ErrReadOnly", err)
	}
	if err := b.Add(false, [][]byte{got}, 8192, 2); err != nil {
		t.Fatal(err)
	}
	var done []uint32
	if err := b.Submit(func(tag uint32, err error) {
		if err != nil {
			t.Errorf("read: %v", err)
		}
		done = append(done, tag)
	}); err != nil || len(done) != 1 || done[0] != 2 {
		t.Fatalf("Submit: %v, completed %v, want just the read (2)", err, done)
	}
	if string(got) != string(want) {
		t.Fatal("the batched read differs from what was written")
	}
}

// BenchmarkBatchBlockDev is BenchmarkBatchFile's "cache" case on a loop
// device (the blocks in the device's page cache): 4 KiB random reads, one
// pread each against io_uring batches of 32 and 128. ns/op is per read.
func BenchmarkBatchBlockDev(b *testing.B) {
	const size = 64 << 20
	d := loopBlockDev(b, size)
	rng := rand.New(rand.NewSource(1))
	offsets := make([]int64, 4096)
	for i := range offsets {
		offsets[i] = rng.Int63n(size/4096) * 4096
	}
	fill := aligned(1<<20, 0)
	for off := int64(0); off < size; off += int64(len(fill)) {
		if _, err := d.WriteAt(fill, off); err != nil {
			b.Fatal(err)
		}
	}
	for _, depth := range []int{0, 32, 128} {
		name := fmt.Sprintf("uring%d", depth)
		if depth == 0 {
			name = "pread"
		}
		b.Run(name, func(b *testing.B) { benchRandomReads(b, d, offsets, depth) })
	}
}
