package storage_test

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/xenblk/xenblk/storage"
)

// BenchmarkBatchFile: 4 KiB random reads of a 64 MiB image, one pread per
// read against io_uring batches of 32 and 128 (one io_uring_enter per
// batch). ns/op is per 4 KiB read. "cache": a buffered image in the page
// cache (the CPU cost of a read); "direct": O_DIRECT, where the batch
// overlaps the device's latency.
func BenchmarkBatchFile(b *testing.B) {
	const size = 64 << 20
	rng := rand.New(rand.NewSource(1))
	offsets := make([]int64, 4096)
	for i := range offsets {
		offsets[i] = rng.Int63n(size/4096) * 4096
	}
	for _, mode := range []struct {
		name   string
		direct bool
		depths []int
	}{{"cache", false, []int{0, 32, 128}}, {"direct", true, []int{0, 128}}} {
		f := openImage(b, size, storage.FileOptions{Direct: mode.direct})
		fill := aligned(1<<20, 0)
		for off := int64(0); off < size; off += int64(len(fill)) {
			if _, err := f.WriteAt(fill, off); err != nil { // buffered: now in the page cache
				b.Fatal(err)
			}
		}
		for _, depth := range mode.depths {
			name := fmt.Sprintf("%s/uring%d", mode.name, depth)
			if depth == 0 {
				name = mode.name + "/pread"
			}
			b.Run(name, func(b *testing.B) { benchRandomReads(b, f, offsets, depth) })
		}
	}
}

// benchRandomReads reads 4 KiB at each offset in turn: with pread when
// depth is 0, else through an io_uring batch submitted every depth reads.
func benchRandomReads(b *testing.B, f storage.Device, offsets []int64, depth int) {
	b.SetBytes(4096)
	if depth == 0 {
		buf := aligned(4096, 0)
		for i := 0; b.Loop(); i++ {
			if _, err := f.ReadAt(buf, offsets[i%len(offsets)]); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	batch := uringBatch(b, f, depth, depth)
	bufs := make([][][]byte, depth)
	for i := range bufs {
		bufs[i] = [][]byte{aligned(4096, 0)}
	}
	var failed error
	done := func(_ uint32, err error) {
		if err != nil {
			failed = err
		}
	}
	for i := 0; b.Loop(); i++ {
		if err := batch.Add(false, bufs[batch.Len()], offsets[i%len(offsets)], uint32(i)); err != nil {
			b.Fatal(err)
		}
		if batch.Len() == depth {
			if err := batch.Submit(done); err != nil || failed != nil {
				b.Fatal(err, failed)
			}
		}
	}
	batch.Submit(done)
}
