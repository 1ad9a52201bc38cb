package qcow2

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/storage"
)

// chain builds base.raw <- mid.qcow2 (v2, compressed data of its own)
// <- top.qcow2 (v3, zero clusters over data below) in dir and returns
// top's path and its content as qemu-img reads it.
func chain(t *testing.T, dir string, topArgs ...string) (string, []byte) {
	base := filepath.Join(dir, "base.raw")
	sparseRaw(t, base, 4<<20, 5)
	mid := filepath.Join(dir, "mid.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.raw", "-F", "raw", mid)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0xaa 1m 100k", "-c", "write -c 2m 64k", mid)
	top := filepath.Join(dir, "top.qcow2")
	run(t, "qemu-img", append(append([]string{"create", "-q", "-f", "qcow2"}, topArgs...), "-b", mid, "-F", "qcow2", top)...)
	if len(topArgs) == 0 {
		run(t, "qemu-io", "-f", "qcow2", "-c", "write -z 0 192k", "-c", "write -P 0x55 1050k 10k", top)
	}
	want := filepath.Join(dir, "want.raw")
	run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", top, want)
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	return top, b
}

// TestBackingChainReads: a chain of qcow2 v3 over qcow2 v2 over raw
// reads as qemu-img converts it, and its lower files are locked against
// writers while it is open.
func TestBackingChainReads(t *testing.T) {
	needTool(t, "qemu-img")
	needTool(t, "qemu-io")
	dir := t.TempDir()
	top, want := chain(t, dir)
	d, err := Open(top, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !bytes.Equal(readAll(t, d), want) {
		t.Fatal("the chain reads differently from qemu-img convert -O raw")
	}
	for _, lower := range []string{"mid.qcow2", "base.raw"} {
		f, err := storage.OpenFile(filepath.Join(dir, lower), storage.FileOptions{})
		if err == nil {
			f.Close()
		}
		if !errors.Is(err, storage.ErrInUse) {
			t.Errorf("opening %s for writing under an open chain: %v, want ErrInUse", lower, err)
		}
	}
}

// TestBackingChainWrites: writes (partial clusters copied up from the
// backing file), discards and write-zeroes on an overlay, v3 (zero
// clusters) and v2 (zeros written); then qemu-img check is clean and
// compare finds the model.
func TestBackingChainWrites(t *testing.T) {
	needTool(t, "qemu-img")
	needTool(t, "qemu-io")
	for _, v := range []struct {
		name string
		args []string
	}{{"v3", []string{"-o", "compat=1.1"}}, {"v2", []string{"-o", "compat=0.10"}}} {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			top, model := chain(t, dir, v.args...)
			d, err := Open(top, Options{})
			if err != nil {
				t.Fatal(err)
			}
			size := int64(len(model))
			rng := rand.New(rand.NewSource(7))
			for i := 0; i < 120; i++ {
				n := rng.Int63n(200<<10) + 1
				off := rng.Int63n(size - n + 1)
				switch i % 4 {
				case 0:
					if err := d.Discard(off, n, false); err != nil {
						t.Fatal(err)
					}
					clear(model[off : off+n])
				case 1:
					if err := d.WriteZeroes(off, n); err != nil {
						t.Fatal(err)
					}
					clear(model[off : off+n])
				default:
					n = n%9000 + 1
					p := make([]byte, n)
					rng.Read(p)
					if _, err := d.WriteAt(p, off); err != nil {
						t.Fatal(err)
					}
					copy(model[off:], p)
				}
			}
			if !bytes.Equal(readAll(t, d), model) {
				t.Fatal("the overlay reads differently from the model")
			}
			closeAndCheck(t, d, top, filepath.Join(dir, "model.raw"), model)
		})
	}
}

// TestBackingChainLoopIsRefused: a.qcow2 backed by b.qcow2 backed by
// a.qcow2 is refused, naming the loop.
func TestBackingChainLoopIsRefused(t *testing.T) {
	needTool(t, "qemu-img")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", a, "1M")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b)
	run(t, "qemu-img", "rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", a)
	_, err := Open(b, Options{ReadOnly: true})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "backing chain loops") {
		t.Fatalf("open: %v; want ErrCorrupt saying the chain loops", err)
	}
	run(t, "qemu-img", "rebase", "-u", "-b", "missing.qcow2", "-F", "qcow2", a)
	if _, err := Open(b, Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.qcow2") {
		t.Fatalf("open with a missing backing file: %v", err)
	}
	run(t, "qemu-img", "rebase", "-u", "-b", "x.vmdk", "-F", "vmdk", a)
	if _, err := Open(b, Options{ReadOnly: true}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `"vmdk"`) {
		t.Fatalf("open with a vmdk backing file: %v", err)
	}
}

// TestSnapshotsListedAndRead: snapshots qemu-img takes are listed with
// their IDs and names and read as qemu-img converts them; the image
// with them opens read-only.
func TestSnapshotsListedAndRead(t *testing.T) {
	needTool(t, "qemu-img")
	needTool(t, "qemu-io")
	dir := t.TempDir()
	img := filepath.Join(dir, "s.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "4M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1m", "-c", "write -c 2m 64k", img)
	run(t, "qemu-img", "snapshot", "-c", "first", img)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x22 512k 1m", "-c", "discard 0 64k", img)
	run(t, "qemu-img", "snapshot", "-c", "second", img)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x33 3m 4k", img)
	if _, err := Open(img, Options{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("open for writing: %v, want ErrUnsupported", err)
	}
	d, err := Open(img, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ss := d.Snapshots()
	if len(ss) != 2 || ss[0].ID != "1" || ss[0].Name != "first" || ss[1].ID != "2" || ss[1].Name != "second" || ss[1].Size != 4<<20 {
		t.Fatalf("snapshots %+v", ss)
	}
	for _, c := range []struct{ by, name string }{{"first", "first"}, {"2", "second"}} {
		name := c.by
		want := filepath.Join(dir, "want.raw")
		os.Remove(want)
		run(t, "qemu-img", "convert", "-l", "snapshot.name="+c.name, "-f", "qcow2", "-O", "raw", img, want)
		wb, err := os.ReadFile(want)
		if err != nil {
			t.Fatal(err)
		}
		s, err := d.OpenSnapshot(name)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Info().ReadOnly || !bytes.Equal(readAll(t, s), wb) {
			t.Fatalf("snapshot %s reads differently from qemu-img convert -l", name)
		}
		if _, err := s.WriteAt([]byte{1}, 0); !errors.Is(err, storage.ErrReadOnly) {
			t.Fatalf("write to a snapshot: %v", err)
		}
		s.Close()
	}
	if _, err := d.OpenSnapshot("third"); err == nil || !strings.Contains(err.Error(), `no snapshot "third"`) {
		t.Fatalf("open a missing snapshot: %v", err)
	}
	want := filepath.Join(dir, "want.raw")
	os.Remove(want)
	run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, want)
	wb, _ := os.ReadFile(want)
	if !bytes.Equal(readAll(t, d), wb) {
		t.Fatal("the image reads differently from qemu-img convert after closing its snapshots")
	}
}
