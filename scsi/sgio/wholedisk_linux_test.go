package sgio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/eventually"
)

// fakeSysfs builds /sys/dev/block/M:m with the given entries.
func fakeSysfs(t *testing.T, entries ...string) string {
	root := t.TempDir()
	dir := filepath.Join(root, "dev", "block", "8:0")
	for _, e := range append([]string{""}, entries...) {
		if err := os.MkdirAll(filepath.Join(dir, e), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestWholeDiskCheckFromSysfs(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []string
		refuse  string
	}{
		{"sd whole disk", []string{"device/scsi_disk/0:0:0:0"}, ""},
		{"partition of an sd disk", []string{"partition", "device/scsi_disk/0:0:0:0"}, "partition"},
		{"device-mapper", []string{"dm"}, "device-mapper"},
		{"loop device", []string{"loop"}, "loop"},
		{"virtio or nvme disk", []string{"device"}, "not a SCSI disk"},
	} {
		err := checkWholeSCSIDisk(fakeSysfs(t, c.entries...), "/dev/x", 8, 0)
		switch {
		case c.refuse == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.refuse != "" && (!errors.Is(err, ErrNotWholeDisk) || !strings.Contains(err.Error(), c.refuse)):
			t.Errorf("%s: %v, want a refusal naming %q", c.name, err, c.refuse)
		}
	}
	if err := checkWholeSCSIDisk(t.TempDir(), "/dev/x", 8, 0); !errors.Is(err, ErrNotWholeDisk) {
		t.Errorf("device missing from sysfs: %v", err)
	}
}

func TestOpenRefusesFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, ErrNotWholeDisk) || !strings.Contains(err.Error(), "not a block device") {
		t.Fatalf("Open(file) = %v", err)
	}
}

// TestOpenRefusesLoopDeviceAndItsPartition attaches a partitioned image to
// a real loop device (CI runs as root with util-linux) and checks that
// neither the loop device nor its partition is accepted.
func TestOpenRefusesLoopDeviceAndItsPartition(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED LOUDLY: attaching a loop device needs root; CI runs as root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("SKIPPED LOUDLY: this machine has no loop driver (/dev/loop-control missing)")
	}
	img := filepath.Join(t.TempDir(), "parted.img")
	mbr := make([]byte, 4<<20)
	// One Linux partition from sector 2048, 2048 sectors long.
	e := mbr[446:]
	e[4] = 0x83
	binary.LittleEndian.PutUint32(e[8:], 2048)
	binary.LittleEndian.PutUint32(e[12:], 2048)
	mbr[510], mbr[511] = 0x55, 0xaa
	if err := os.WriteFile(img, mbr, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", "--partscan", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "--detach", loop).Run() })

	if _, err := Open(loop); !errors.Is(err, ErrNotWholeDisk) || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("Open(%s) = %v, want a loop-device refusal", loop, err)
	}
	// The partition's node may not appear without udev: make our own from
	// the numbers sysfs gives.
	sysDev := filepath.Join("/sys/block", filepath.Base(loop), filepath.Base(loop)+"p1", "dev")
	var numbers []byte
	if !eventually.Within(time.Second, func() bool { numbers, err = os.ReadFile(sysDev); return err == nil }) {
		// Fall back to any partition this machine has.
		found, _ := filepath.Glob("/sys/class/block/*/partition")
		if len(found) == 0 {
			t.Skipf("SKIPPED LOUDLY (loop refusal above was checked): kernel %s did not scan %s's partition table (no msdos partition support?) and the machine has no other partition", kernelRelease(), loop)
		}
		if numbers, err = os.ReadFile(filepath.Join(filepath.Dir(found[0]), "dev")); err != nil {
			t.Fatal(err)
		}
	}
	var major, minor uint32
	if _, err := fmtSscanf(strings.TrimSpace(string(numbers)), &major, &minor); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(t.TempDir(), "p1")
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil {
		t.Fatalf("mknod %s: %v", node, err)
	}
	if _, err := Open(node); !errors.Is(err, ErrNotWholeDisk) || !strings.Contains(err.Error(), "partition") {
		t.Fatalf("Open(partition %d:%d) = %v, want a partition refusal", major, minor, err)
	}
}

func fmtSscanf(s string, major, minor *uint32) (int, error) {
	return fmt.Sscanf(s, "%d:%d", major, minor)
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}
