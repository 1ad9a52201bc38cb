package storage_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// TestBlockDev runs the conformance suite against a loop device over a
// file, as root (CI is root; elsewhere it says why it skips).
func TestBlockDev(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): block-device tests need root to attach a loop device")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("SKIP (loud): this kernel has no loop devices")
	}
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
		img := filepath.Join(t.TempDir(), "loop.img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Truncate(img, size)
		out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
		if err != nil {
			t.Fatalf("losetup: %v %s", err, out)
		}
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
		d, err := storage.OpenBlockDev(dev, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	})
}

func TestOpenPicksTheKind(t *testing.T) {
	img := filepath.Join(t.TempDir(), "d.img")
	os.WriteFile(img, make([]byte, 1<<20), 0o644)
	d, err := storage.Open(img, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := d.(*storage.File); !ok || !d.Info().ReadOnly {
		t.Fatalf("Open of a regular file gave %T", d)
	}
	if _, err := storage.OpenBlockDev(img, true); err == nil {
		t.Fatal("OpenBlockDev accepted a regular file")
	}
}
