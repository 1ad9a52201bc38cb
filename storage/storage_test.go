package storage_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

func TestMemory(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device { return storage.NewMemory(size) })
}

func TestNull(t *testing.T) {
	storagetest.RunSink(t, func(t *testing.T, size int64) storage.Device { return storage.Null{Size: size} })
}

// TestReadOnlyWrapper checks the wrapper's refusals and pass-through reads
// directly, then the sink cases on a read-only view. (Every Run also wraps
// its backend in ReadOnly in the ReadOnlyRefusesWrites case.)
func TestReadOnlyWrapper(t *testing.T) {
	m := storage.NewMemory(1 << 20)
	m.WriteAt([]byte("keep"), 100)
	ro := storage.ReadOnly(m)
	if _, err := ro.WriteAt([]byte("lost"), 100); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("WriteAt: %v, want ErrReadOnly", err)
	}
	if err := ro.WriteZeroes(0, 4096); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("WriteZeroes: %v, want ErrReadOnly", err)
	}
	if err := ro.Discard(0, 4096, true); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("Discard: %v, want ErrReadOnly", err)
	}
	in := ro.Info()
	if !in.ReadOnly || in.CanDiscard || in.CanSecureDiscard {
		t.Fatalf("read-only Info %+v still offers changes", in)
	}
	b := make([]byte, 4)
	if _, err := ro.ReadAt(b, 100); err != nil || string(b) != "keep" {
		t.Fatalf("ReadAt through the wrapper: %q, %v", b, err)
	}
	storagetest.RunSink(t, func(t *testing.T, size int64) storage.Device { return storage.ReadOnly(storage.NewMemory(size)) })
}

func TestMemoryIsSparse(t *testing.T) {
	m := storage.NewMemory(1 << 40)
	m.WriteAt([]byte{1}, 1<<39)
	if m.Allocated() > 1<<20 {
		t.Fatalf("a 1 TiB memory disk with one byte written holds %d bytes", m.Allocated())
	}
	m.Discard(1<<39-(1<<20), 2<<20, false)
	if m.Allocated() != 0 {
		t.Fatalf("discard did not free: %d", m.Allocated())
	}
}

func openFile(direct bool) storagetest.Open {
	return func(t *testing.T, size int64) storage.Device {
		f, err := storage.OpenFile(filepath.Join(t.TempDir(), "disk.img"), storage.FileOptions{Create: size, Direct: direct})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
}

func TestFileBuffered(t *testing.T) { storagetest.Run(t, openFile(false)) }

func TestFileDirect(t *testing.T) {
	// O_DIRECT needs a filesystem that supports it (not tmpfs); the test
	// directory is on the project's disk.
	storagetest.Run(t, openFile(true))
}

func TestSlice(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
		s, err := storage.NewSlice(storage.NewMemory(size+3<<20), 1<<20, size)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestSliceNeverTouchesOutside(t *testing.T) {
	m := storage.NewMemory(3 << 20)
	s, _ := storage.NewSlice(m, 1<<20, 1<<20)
	if _, err := s.WriteAt(make([]byte, 2), 1<<20-1); err == nil {
		t.Fatal("write across the slice's end succeeded")
	}
	b := make([]byte, 1)
	m.ReadAt(b, 2<<20)
	if b[0] != 0 {
		t.Fatal("the byte after the slice changed")
	}
	if _, err := storage.NewSlice(m, 2<<20, 2<<20); err == nil {
		t.Fatal("a slice beyond its device was accepted")
	}
}

func TestZeroByteImageIsAClearError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "empty.img")
	os.WriteFile(p, nil, 0o644)
	_, err := storage.OpenFile(p, storage.FileOptions{})
	if err == nil || !contains(err.Error(), "0 bytes") || !contains(err.Error(), "truncate -s SIZE "+p) || !errors.As(err, new(*storage.ImageSizeError)) {
		t.Fatalf("opening a 0-byte image: %v", err)
	}
	if contains(err.Error(), "remove it") {
		t.Errorf("%v: storage cannot promise that whoever opens it creates it", err)
	}
}

// An image with a partial last sector is refused, not rounded down: the
// tail's bytes would be unreachable without a word. The error names the
// lost tail and the truncate that makes the image whole; images that are
// whole open with every byte.
func TestImageWithAPartialLastSectorIsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		size int64
		lbs  uint32
		want string // "" opens
	}{
		{1 << 20, 512, ""},
		{1<<20 + 512, 512, ""},
		{1 << 20, 4096, ""},
		{1<<20 + 100, 512, "is 1048676 bytes, not a whole number of 512-byte sectors: its last 100 bytes could never be read or written; extend it to 1049088 bytes with truncate -s 1049088 "},
		{1<<20 + 512, 4096, "not a whole number of 4096-byte sectors: its last 512 bytes"},
		{1000, 512, "its last 488 bytes"},
	} {
		p := filepath.Join(dir, fmt.Sprintf("d%d-%d.img", c.size, c.lbs))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Truncate(p, c.size)
		f, err := storage.OpenFile(p, storage.FileOptions{LogicalBlockSize: c.lbs})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%d bytes, %d-byte sectors: %v", c.size, c.lbs, err)
		case c.want == "":
			if got := f.Info().Size; got != c.size {
				t.Errorf("%d bytes served as %d", c.size, got)
			}
			f.Close()
		case err == nil:
			f.Close()
			t.Errorf("%d bytes, %d-byte sectors: opened", c.size, c.lbs)
		case !contains(err.Error(), c.want) || !errors.As(err, new(*storage.ImageSizeError)):
			t.Errorf("%d bytes, %d-byte sectors: %v, want it to say %q", c.size, c.lbs, err, c.want)
		}
	}
}

func TestRotationRateOfTheTestDisk(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x")
	os.WriteFile(p, []byte{1}, 0o644)
	r := storage.RotationRateForPath(p)
	if r != 0 && r != 1 {
		t.Fatalf("rotation rate %d: want 0 (rotational/unknown) or 1 (non-rotational)", r)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestVectored moves scattered buffers (aligned and not, many more than
// IOV_MAX) through File's preadv/pwritev and through the generic fallback,
// and compares with a model.
func TestVectored(t *testing.T) {
	const size = 8 << 20
	for _, c := range []struct {
		name string
		dev  func(t *testing.T) storage.Device
	}{
		{"FileBuffered", func(t *testing.T) storage.Device { return openFile(false)(t, size) }},
		{"FileDirect", func(t *testing.T) storage.Device { return openFile(true)(t, size) }},
		{"Memory", func(t *testing.T) storage.Device { return storage.NewMemory(size) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := c.dev(t)
			model := make([]byte, size)
			rng := rand.New(rand.NewSource(5))
			for round := 0; round < 12; round++ {
				var bufs [][]byte
				total := 0
				count := 1 + rng.Intn(8)
				if round == 0 {
					count = 1500 // beyond IOV_MAX
				}
				for i := 0; i < count; i++ {
					n := 4096
					if round%3 == 1 {
						n = 1 + rng.Intn(5000)
					}
					b := make([]byte, n)
					rng.Read(b)
					bufs = append(bufs, b)
					total += n
				}
				off := rng.Int63n(size-int64(total)) &^ 4095
				if round%3 == 2 {
					off += int64(rng.Intn(512))
				}
				if n, err := storage.WritevAt(d, bufs, off); err != nil || n != total {
					t.Fatalf("WritevAt(%d bytes in %d buffers at %d) = %d, %v", total, len(bufs), off, n, err)
				}
				pos := off
				for _, b := range bufs {
					copy(model[pos:], b)
					pos += int64(len(b))
				}
				got := make([][]byte, len(bufs))
				for i, b := range bufs {
					got[i] = make([]byte, len(b))
				}
				if n, err := storage.ReadvAt(d, got, off); err != nil || n != total {
					t.Fatalf("ReadvAt = %d, %v", n, err)
				}
				if !bytes.Equal(bytes.Join(got, nil), model[off:off+int64(total)]) {
					t.Fatalf("round %d: read back differs", round)
				}
			}
			if _, err := storage.WritevAt(d, [][]byte{make([]byte, 4096), make([]byte, 1)}, size-4096); !errors.Is(err, storage.ErrOutOfRange) {
				t.Fatalf("vectored write past the end: %v, want ErrOutOfRange", err)
			}
			whole := make([]byte, size)
			d.ReadAt(whole, 0)
			if !bytes.Equal(whole, model) {
				t.Fatal("the device differs from the model (a refused write touched it?)")
			}
		})
	}
}

// Vectored I/O of no bytes is a success of 0, not a short transfer
// (preadv returns 0 for it, which the transfer loop otherwise reads as
// the end of the file).
func TestFileVectoredOfNoBytes(t *testing.T) {
	f := openFile(false)(t, 1<<20).(*storage.File)
	for _, bufs := range [][][]byte{nil, {}, {{}, {}}} {
		if n, err := f.ReadvAt(bufs, 4096); n != 0 || err != nil {
			t.Errorf("ReadvAt(%d empty buffers) = %d, %v; want 0, nil", len(bufs), n, err)
		}
		if n, err := f.WritevAt(bufs, 1<<20); n != 0 || err != nil {
			t.Errorf("WritevAt(%d empty buffers) at the end = %d, %v; want 0, nil", len(bufs), n, err)
		}
	}
}
