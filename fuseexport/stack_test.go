package fuseexport_test

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/fuseexport"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
)

// diskThroughStack serves backing through our backend to our frontend on
// a simulated host (internal/simstack) and returns the frontend's disk.
// Everything is torn down at the test's end.
func diskThroughStack(t *testing.T, backing storage.Device) storage.Device {
	t.Helper()
	s := simstack.ForTest(t, backing, simstack.Options{})
	g, err := s.AttachGuest(context.Background(), "guest", "vdev=xvda, target=fuse", blkfront.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return g.Disk.Device()
}

// mountUntilFree mounts dev and, at cleanup, unmounts it, retrying for a
// while: the kernel may hold the file for a moment after `losetup -d`.
func mountUntilFree(t *testing.T, dev storage.Device) *fuseexport.Export {
	t.Helper()
	needFUSE(t)
	e, err := fuseexport.Mount(t.TempDir(), "disk", dev, fuseexport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		if !eventually.Within(5*time.Second, func() bool { err = e.Unmount(); return err == nil }) {
			t.Errorf("Unmount: %v", err)
		}
	})
	return e
}

// ext4OverLoop puts a loop device (direct I/O when the kernel allows) on
// path, makes ext4 on it, writes files, checks the filesystem clean and
// reads the files back after a remount. Every step is undone by
// t.Cleanup, also when a step fails.
func ext4OverLoop(t *testing.T, path string) {
	t.Helper()
	for _, tool := range []string{"losetup", "mkfs.ext4", "fsck.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install scripts/deps.txt (e2fsprogs, util-linux)", tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("SKIPPED: no loop devices on this machine (%v)", err)
	}
	out, err := exec.Command("losetup", "-f", "--show", "--direct-io=on", path).CombinedOutput()
	if err != nil {
		t.Logf("losetup --direct-io=on failed (%v: %s); using buffered loop", err, bytes.TrimSpace(out))
		out = []byte(run(t, "losetup", "-f", "--show", path))
	}
	loop := string(bytes.TrimSpace(out))
	t.Cleanup(func() {
		if err := exec.Command("losetup", "-d", loop).Run(); err != nil {
			t.Errorf("losetup -d %s: %v", loop, err)
		}
	})
	run(t, "mkfs.ext4", "-q", "-F", loop)

	fsdir := t.TempDir()
	mounted := false
	t.Cleanup(func() {
		if mounted {
			exec.Command("umount", fsdir).Run()
		}
	})
	run(t, "mount", "-t", "ext4", loop, fsdir)
	mounted = true
	want := map[string][]byte{}
	rng := rand.New(rand.NewSource(7))
	for i := range 8 {
		p := make([]byte, 1+rng.Intn(512<<10))
		rng.Read(p)
		name := filepath.Join(fsdir, "f"+string(rune('a'+i)))
		if err := os.WriteFile(name, p, 0o644); err != nil {
			t.Fatal(err)
		}
		want[name] = p
	}
	run(t, "umount", fsdir)
	mounted = false
	run(t, "fsck.ext4", "-fn", loop)

	run(t, "mount", "-t", "ext4", "-o", "ro", loop, fsdir)
	mounted = true
	for name, p := range want {
		got, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("%s after remount: %d bytes, %v; want %d bytes as written", name, len(got), err, len(p))
		}
	}
	run(t, "umount", fsdir)
	mounted = false
}

// TestExt4OverLoopThroughTheStack: the file exports a frontend disk whose
// backend serves memory, so the filesystem's bytes cross FUSE, blkfront,
// the ring and blkback. The backing memory must hold the ext4 superblock.
func TestExt4OverLoopThroughTheStack(t *testing.T) {
	needFUSE(t)
	mem := storage.NewMemory(64 << 20)
	disk := diskThroughStack(t, mem)
	if got := disk.Info().Size; got != 64<<20 {
		t.Fatalf("frontend disk size %d, want %d", got, 64<<20)
	}
	e := mountUntilFree(t, disk)
	ext4OverLoop(t, e.Path)
	if sb := readDev(t, mem, 2, 1024+56); sb[0] != 0x53 || sb[1] != 0xef {
		t.Fatalf("no ext4 superblock magic in the backend's memory: %x", sb)
	}
}

// TestReadsAndWritesThroughTheStack compares plain file I/O on the export
// of a frontend disk with the backend's memory, both ways.
func TestReadsAndWritesThroughTheStack(t *testing.T) {
	needFUSE(t)
	mem := storage.NewMemory(8 << 20)
	e := mountUntilFree(t, diskThroughStack(t, mem))
	f, err := os.OpenFile(e.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewSource(11))
	for range 20 {
		p := make([]byte, 1+rng.Intn(300<<10))
		rng.Read(p)
		off := rng.Int63n(8<<20 - int64(len(p)))
		if _, err := f.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		if got := readDev(t, mem, len(p), off); !bytes.Equal(got, p) {
			t.Fatalf("write of %d bytes at %d through the file did not reach the backend", len(p), off)
		}
		rng.Read(p)
		if _, err := mem.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(p))
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("read of %d bytes at %d through the file does not show the backend's bytes", len(p), off)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync through the stack: %v", err)
	}
}
