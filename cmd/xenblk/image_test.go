package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/storage"
)

// TestOpenImageBlockDevice: a vbd whose target is a block device (xl's
// phy:) is served as one — its size from the device, discard through
// BLKDISCARD — not as a zero-length file.
func TestOpenImageBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): needs root to attach a loop device")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("SKIP (loud): this kernel has no loop devices")
	}
	img := filepath.Join(t.TempDir(), "phy.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 8<<20)
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	d, _, err := openImage(dev, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := d.(*storage.BlockDev); !ok {
		t.Fatalf("%s opened as %T, want a BlockDev", dev, d)
	}
	if got := d.Info().Size; got != 8<<20 {
		t.Fatalf("size %d, want %d", got, 8<<20)
	}
}
