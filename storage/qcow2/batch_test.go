package qcow2

import (
	"bytes"
	"errors"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/xenblk/xenblk/storage"
)

// batchImage is an 8 MiB image of every kind of cluster: compressed
// (qemu-img convert -c), standard ones written here (some in reverse
// order, so that neighbours in the guest are apart in the file), zero
// clusters, and unallocated ones; and its content.
func batchImage(t *testing.T) (*Image, []byte) {
	t.Helper()
	needTool(t, "qemu-img")
	const size = 8 << 20
	dir := t.TempDir()
	raw, img := filepath.Join(dir, "src.raw"), filepath.Join(dir, "b.qcow2")
	model := sparseRaw(t, raw, size, 5)
	run(t, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, img)
	d, err := Open(img, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	rng := rand.New(rand.NewSource(9))
	write := func(off, n int64) {
		rng.Read(model[off : off+n])
		if _, err := d.WriteAt(model[off:off+n], off); err != nil {
			t.Fatal(err)
		}
	}
	write(1<<20, 1<<20) // contiguous in the file
	for c := int64(47); c >= 40; c-- {
		write(c<<16, 1<<16) // each cluster before the last in the file
	}
	write(5<<20+100, 3000) // a partial write: the cluster is copied up
	if err := d.WriteZeroes(6<<20, 256<<10); err != nil {
		t.Fatal(err)
	}
	clear(model[6<<20 : 6<<20+256<<10])
	return d, model
}

// newBatch makes d's batch, skipping loudly where the kernel will not
// make a ring; the test closes it.
func newBatch(t *testing.T, d *Image, ops, bufs int) *imageBatch {
	t.Helper()
	b, err := d.NewBatch(ops, bufs)
	if errors.Is(err, storage.ErrNotSupported) {
		t.Skipf("SKIPPED: io_uring is not permitted here (%v); the qcow2 batch is untested on this machine", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.(*imageBatch)
}

// A batch reads and writes what ReadAt and WriteAt would, whichever way
// each operation goes: mapped reads on the ring, the rest one by one.
func TestBatchMatchesModel(t *testing.T) {
	d, model := batchImage(t)
	ib := newBatch(t, d, 16, 64)
	b := storage.Batch(ib)
	rng := rand.New(rand.NewSource(11))
	size := int64(len(model))
	var onRing, onSync int
	for round := range 200 {
		type op struct {
			write bool
			bufs  [][]byte
			off   int64
		}
		var ops []op
		write := round%4 == 3 // writes in batches of their own: a batch orders nothing
		for range 1 + rng.Intn(16) {
			nb := 1 + rng.Intn(4)
			bufs := make([][]byte, nb)
			var n int64
			for i := range bufs {
				bufs[i] = make([]byte, 512*(1+rng.Intn(16)))
				n += int64(len(bufs[i]))
			}
			off := rng.Int63n((size-n)/512+1) * 512
			if write {
				for _, buf := range bufs {
					rng.Read(buf)
				}
			}
			ops = append(ops, op{write, bufs, off})
		}
		if write { // the model takes writes in order; keep them apart
			ops = ops[:1]
		}
		for i, o := range ops {
			if err := b.Add(o.write, o.bufs, o.off, uint32(i)); err != nil {
				t.Fatal(err)
			}
		}
		onRing += ib.ring.Len()
		onSync += ib.sync.Len()
		var failed []error
		if err := b.Submit(func(tag uint32, err error) {
			if err != nil {
				failed = append(failed, err)
			}
		}); err != nil || failed != nil {
			t.Fatalf("round %d: %v %v", round, err, failed)
		}
		for _, o := range ops {
			pos := o.off
			for _, buf := range o.bufs {
				if o.write {
					copy(model[pos:], buf)
				} else if !bytes.Equal(buf, model[pos:pos+int64(len(buf))]) {
					t.Fatalf("round %d: read of %d at %d differs from the model", round, len(buf), pos)
				}
				pos += int64(len(buf))
			}
		}
	}
	if onRing == 0 || onSync == 0 {
		t.Fatalf("%d operations on the ring, %d one by one: want both ways taken", onRing, onSync)
	}
	if !bytes.Equal(readAll(t, d), model) {
		t.Fatal("the image differs from the model after the batches")
	}
}

// hostRun sends to the ring exactly the reads it may: standard clusters,
// one run in the file.
func TestHostRun(t *testing.T) {
	d, _ := batchImage(t)
	for _, c := range []struct {
		name string
		off  int64
		n    int
		ring bool
	}{
		{"inside a written cluster", 1<<20 + 4096, 4096, true},
		{"across clusters written in order", 1<<20 + 60<<10, 8 << 10, true},
		{"across clusters apart in the file", 40<<16 + 60<<10, 8 << 10, false},
		{"inside a cluster of the reversed run", 41<<16 + 512, 1024, true},
		{"a copied-up cluster", 5 << 20, 4096, true},
		{"a zero cluster", 6 << 20, 4096, false},
		{"from written into zero", 6<<20 - 512, 1024, false},
		{"past the disk", 8 << 20, 512, false},
	} {
		_, got := d.hostRun(false, [][]byte{make([]byte, c.n)}, c.off)
		if got != c.ring {
			t.Errorf("%s: on the ring %v, want %v", c.name, got, c.ring)
		}
	}
	if _, ok := d.hostRun(true, [][]byte{make([]byte, 4096)}, 1<<20); ok {
		t.Error("a write was sent to the read ring")
	}
}

// A batch holds what it was made for, on both ways together.
func TestBatchFull(t *testing.T) {
	d, _ := batchImage(t)
	b := newBatch(t, d, 2, 3)
	buf := func() [][]byte { return [][]byte{make([]byte, 512)} }
	if err := b.Add(false, buf(), 1<<20, 1); err != nil { // the ring
		t.Fatal(err)
	}
	if err := b.Add(false, buf(), 6<<20, 2); err != nil { // one by one
		t.Fatal(err)
	}
	if err := b.Add(false, buf(), 1<<20, 3); !errors.Is(err, storage.ErrBatchFull) {
		t.Fatalf("third operation in a batch of 2: %v", err)
	}
	if err := b.Add(false, make([][]byte, 4), 0, 4); err == nil || errors.Is(err, storage.ErrBatchFull) {
		t.Fatalf("4 buffers in a batch of 3: %v, want an error that is not ErrBatchFull", err)
	}
	if err := b.Submit(func(uint32, error) {}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(false, buf(), 8<<20, 5); !errors.Is(err, storage.ErrOutOfRange) {
		t.Fatalf("a read past the disk: %v", err)
	}
}
