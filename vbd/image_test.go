package vbd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xen/sim"
)

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("qemu-img is not installed; `make deps` (scripts/install-deps.sh) installs it")
	}
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestCheckLocalQcow2: a format=qcow2 spec is checked against the file
// and its backing chain (the backing-file policy: absolute, or relative
// to the naming image's directory, and there), and options a qcow2
// image cannot honour are refused.
func TestCheckLocalQcow2(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", base, "4M")
	top := filepath.Join(dir, "top.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top)
	overRaw := filepath.Join(dir, "over-raw.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", raw, "-F", "raw", overRaw)
	orphan := filepath.Join(dir, "orphan.qcow2")
	gone := filepath.Join(dir, "gone.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", gone, "4M")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", "gone.qcow2", "-F", "qcow2", orphan)
	os.Remove(gone)
	viaProto := filepath.Join(dir, "proto.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-b", "nbd://127.0.0.1:1/x", "-F", "raw", viaProto, "4M")
	checkLocalCases(t, []checkLocalCase{
		{"format=qcow2, vdev=xvda, target=" + base, ""},
		{"format=qcow2, vdev=xvda, target=" + top, ""},
		{"format=qcow2, vdev=xvda, sector-size=4096, target=" + overRaw, ""},
		{"format=qcow2, vdev=xvda, target=" + raw, "is not a qcow2 image"},
		{"format=qcow2, vdev=xvda, target=" + orphan, `names backing file "gone.qcow2", which resolves to ` + gone},
		{"format=qcow2, vdev=xvda, target=" + viaProto, `names backing file "nbd://127.0.0.1:1/x"`},
		{"format=qcow2, vdev=xvda, direct=1, target=" + base, "direct applies to raw images"},
		{"format=qcow2, vdev=xvda, rotation-rate=1, target=" + base, "rotation-rate applies to raw images"},
		{"format=raw, vdev=xvda, target=" + base, "is a qcow2 image"},
	})
}

// TestOpenQcow2: a vbd with format=qcow2 serves the disk inside the
// image (its backing file showing through), locked as the spec says:
// the image alone, its backing file shared among readers.
func TestOpenQcow2(t *testing.T) {
	h, _ := sim.NewHost()
	g, _ := h.NewDomain("guest")
	st := h.Store()
	dir := t.TempDir()
	raw := filepath.Join(dir, "base.img")
	content := make([]byte, 1<<20)
	copy(content[4096:], "from the backing file")
	if err := os.WriteFile(raw, content, 0o644); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "top.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", "base.img", "-F", "raw", top)

	vdir := createVBD(t, st, g.ID(), "format=qcow2, vdev=xvdb, access=rw, target="+top)
	d, err := vbd.Open(st, vdir, discardLog)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Info().Size != 1<<20 {
		t.Errorf("size %d, want %d", d.Info().Size, 1<<20)
	}
	buf := make([]byte, 512)
	if _, err := d.ReadAt(buf, 4096); err != nil || !strings.HasPrefix(string(buf), "from the backing file") {
		t.Errorf("read %q, %v; want the backing file's bytes", buf[:21], err)
	}
	copy(buf, "written through the vbd")
	if _, err := d.WriteAt(buf, 8192); err != nil {
		t.Fatal(err)
	}
	// The image is held alone; its backing file may be read by others
	// but not written.
	if other, _, err := vbd.OpenImage(top, diskspec.FormatQcow2, storage.ImageOptions{ReadOnly: true, Lock: storage.LockShared}); err == nil {
		other.Close()
		t.Error("the served image opened again")
	}
	if r, _, err := storage.OpenImage(raw, storage.ImageOptions{ReadOnly: true, Lock: storage.LockShared}); err != nil {
		t.Errorf("the backing file cannot be read alongside: %v", err)
	} else {
		r.Close()
	}
	if w, _, err := storage.OpenImage(raw, storage.ImageOptions{}); err == nil {
		w.Close()
		t.Error("the backing file opened for writing while it backs a served image")
	}
}
