// Package looptest attaches loop devices for tests that need a real block
// device (storage.BlockDev, a phy: vbd).
package looptest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Attach makes a sparse image of size bytes in the test's directory,
// attaches a loop device over it and returns the device's path; both go
// away with the test. It skips loudly where the machine cannot attach one
// (not root, no loop driver); CI runs as root with loop devices, so there
// it always runs.
func Attach(t testing.TB, size int64) (dev, image string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): block-device tests need root to attach a loop device")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("SKIP (loud): this kernel has no loop devices; block devices are untested here")
	}
	image = filepath.Join(t.TempDir(), "loop.img")
	if err := os.WriteFile(image, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", image).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v %s", err, out)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, image
}
