package qcow2

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// needTool fails (not skips) when CI should have installed the tool.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed; `make deps` (scripts/install-deps.sh) installs it", name)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
		p := filepath.Join(t.TempDir(), "disk.qcow2")
		if err := Create(p, size); err != nil {
			t.Fatal(err)
		}
		d, err := Open(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	})
}

// sparseRaw writes a raw image of size bytes with random data in some
// 64 KiB runs, zeros (holes) elsewhere, and returns its content.
func sparseRaw(t *testing.T, path string, size int64, seed int64) []byte {
	rng := rand.New(rand.NewSource(seed))
	b := make([]byte, size)
	for off := int64(0); off < size; off += 64 << 10 {
		switch rng.Intn(3) {
		case 0:
			rng.Read(b[off : off+64<<10])
		case 1:
			// compressible: a short pattern repeated, in part
			for i := off; i < off+32<<10; i++ {
				b[i] = byte(i % 251)
			}
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func readAll(t *testing.T, d storage.Device) []byte {
	t.Helper()
	b := make([]byte, d.Info().Size)
	// Odd-sized reads cross cluster edges at many places.
	for off := 0; off < len(b); {
		n := min(len(b)-off, 77777)
		if _, err := d.ReadAt(b[off:off+n], int64(off)); err != nil {
			t.Fatalf("ReadAt(%d at %d): %v", n, off, err)
		}
		off += n
	}
	return b
}

// TestReadsQemuImages: images qemu-img writes (v3, v2, compressed, small
// and large clusters, zero clusters) read as qemu-img converts them to raw.
func TestReadsQemuImages(t *testing.T) {
	needTool(t, "qemu-img")
	needTool(t, "qemu-io")
	dir := t.TempDir()
	raw := filepath.Join(dir, "src.raw")
	const size = 8 << 20
	sparseRaw(t, raw, size, 1)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"v3", nil},
		{"v2", []string{"-o", "compat=0.10"}},
		{"compressed", []string{"-c"}},
		{"compressed-v2-4k", []string{"-c", "-o", "compat=0.10,cluster_size=4096"}},
		{"512-byte-clusters", []string{"-o", "cluster_size=512"}},
		{"2M-clusters", []string{"-o", "cluster_size=2M"}},
		{"refcount-bits-64", []string{"-o", "refcount_bits=64"}},
		{"refcount-bits-1", []string{"-o", "refcount_bits=1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(dir, c.name+".qcow2")
			run(t, "qemu-img", append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, c.args...), raw, img)...)
			if c.name == "v3" {
				// zero clusters over data, and a zeroed partial cluster
				run(t, "qemu-io", "-f", "qcow2", "-c", "write -z 0 256k", "-c", "write -z 1m 4k", img)
			}
			want := filepath.Join(dir, c.name+".raw")
			run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, want)
			wb, err := os.ReadFile(want)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Open(img, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if got := readAll(t, d); !bytes.Equal(got, wb) {
				t.Fatal("image reads differently from qemu-img convert -O raw")
			}
			if strings.HasPrefix(c.name, "compressed") {
				// compressed clusters read again, through the reused inflater
				if n := testing.AllocsPerRun(5, func() { readAll(t, d) }); n > 1 {
					t.Errorf("reading the compressed image whole: %v allocations", n)
				}
			}
		})
	}
}

// TestWritesPassQemuCheck: random writes (4 KiB and larger, unaligned),
// discards and write-zeroes on images qemu-img made, and on ours; then
// qemu-img check finds no error and no leak, and qemu-img compare finds
// the image identical to the model.
func TestWritesPassQemuCheck(t *testing.T) {
	needTool(t, "qemu-img")
	dir := t.TempDir()
	const size = 16 << 20
	for _, c := range []struct {
		name   string
		create func(img, raw string)
	}{
		{"v3", func(img, raw string) { run(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "16M") }},
		{"v2", func(img, raw string) {
			run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", img, "16M")
		}},
		{"compressed", func(img, raw string) {
			sparseRaw(t, raw, size, 2)
			run(t, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, img)
		}},
		// 512-byte clusters: the refcount table (one cluster) covers 8 MiB
		// of file, so the writes make it grow, more than once.
		{"grows-refcount-table", func(img, raw string) {
			run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", img, "16M")
		}},
		{"refcount-bits-8", func(img, raw string) {
			run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "refcount_bits=8,cluster_size=4096", img, "16M")
		}},
		{"ours", func(img, raw string) {
			if err := Create(img, size); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(dir, c.name+".qcow2")
			raw := filepath.Join(dir, c.name+".raw")
			c.create(img, raw)
			model, err := os.ReadFile(raw)
			if errors.Is(err, os.ErrNotExist) {
				model, err = make([]byte, size), nil
			}
			if err != nil {
				t.Fatal(err)
			}
			d, err := Open(img, Options{})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewSource(3))
			if c.name == "grows-refcount-table" {
				rng.Read(model)
				for off := int64(0); off < size; off += 1 << 20 {
					if _, err := d.WriteAt(model[off:off+1<<20], off); err != nil {
						t.Fatal(err)
					}
				}
			}
			for i := 0; i < 300; i++ {
				var n int64
				switch i % 5 {
				case 0, 1:
					n = 4096
				case 2:
					n = rng.Int63n(300<<10) + 1
				default:
					n = rng.Int63n(9000) + 1
				}
				off := rng.Int63n(size - n + 1)
				if i%5 == 0 {
					off &^= 4095
				}
				switch {
				case i%17 == 16:
					n = rng.Int63n(1<<20) + 1
					off = rng.Int63n(size - n + 1)
					if err := d.Discard(off, n, false); err != nil {
						t.Fatal(err)
					}
					clear(model[off : off+n])
				case i%13 == 12:
					if err := d.WriteZeroes(off, n); err != nil {
						t.Fatal(err)
					}
					clear(model[off : off+n])
				default:
					p := make([]byte, n)
					rng.Read(p)
					if _, err := d.WriteAt(p, off); err != nil {
						t.Fatalf("WriteAt(%d at %d): %v", n, off, err)
					}
					copy(model[off:], p)
				}
			}
			if !bytes.Equal(readAll(t, d), model) {
				t.Fatal("the image reads differently from the model")
			}
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
			if h := d.Header(); c.name == "grows-refcount-table" && h.RefTableClusters < 4 {
				t.Fatalf("the refcount table has %d clusters: the test did not make it grow", h.RefTableClusters)
			}
			closeAndCheck(t, d, img, raw, model)
		})
	}
}

// closeAndCheck closes d, open on img, and has qemu-img find no error
// and no leak in it, and its content equal to model (written to raw).
func closeAndCheck(t *testing.T, d *Image, img, raw string, model []byte) {
	t.Helper()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(raw, model, 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, "qemu-img", "check", "-f", "qcow2", img)
	if !strings.Contains(out, "No errors were found") || strings.Contains(out, "leaked") {
		t.Fatalf("qemu-img check:\n%s", out)
	}
	run(t, "qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", img, raw)
	// qemu-io opens it too (the bytes are compare's to check).
	out = run(t, "qemu-io", "-r", "-f", "qcow2", "-c", fmt.Sprintf("read 0 %d", len(model)), img)
	if strings.Contains(out, "failed") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io:\n%s", out)
	}
}

// TestSteadyStateAllocatesNothing: reads of any kind of cluster but a
// compressed one, and writes into allocated clusters, allocate nothing.
func TestSteadyStateAllocatesNothing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := Create(p, 8<<20); err != nil {
		t.Fatal(err)
	}
	d, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	buf := make([]byte, 4096)
	if _, err := d.WriteAt(make([]byte, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		op   func() error
	}{
		{"read allocated", func() error { _, err := d.ReadAt(buf, 8192); return err }},
		{"read across clusters", func() error { _, err := d.ReadAt(buf, 64<<10-100); return err }},
		{"read unallocated", func() error { _, err := d.ReadAt(buf, 4<<20); return err }},
		{"write in place", func() error { _, err := d.WriteAt(buf, 12288); return err }},
	} {
		var err error
		if n := testing.AllocsPerRun(100, func() { err = c.op() }); n != 0 || err != nil {
			t.Errorf("%s: %v allocations per op, err %v", c.name, n, err)
		}
	}
}
