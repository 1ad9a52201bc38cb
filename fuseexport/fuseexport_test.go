package fuseexport_test

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/fuseexport"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// needFUSE skips, loudly, on a machine that cannot mount FUSE at all.
func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the FUSE export tests mount filesystems and need root (CI runs them as root)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("SKIPPED: no /dev/fuse on this machine (%v)", err)
	}
}

func mount(t *testing.T, dev storage.Device, opt fuseexport.Options) *fuseexport.Export {
	t.Helper()
	needFUSE(t)
	e, err := fuseexport.Mount(t.TempDir(), "disk", dev, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
		}
	})
	return e
}

func readDev(t *testing.T, d storage.Device, n int, off int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFileHasTheDeviceSize(t *testing.T) {
	e := mount(t, storage.NewMemory(8<<20+512), fuseexport.Options{})
	st, err := os.Stat(e.Path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 8<<20+512 || !st.Mode().IsRegular() {
		t.Fatalf("stat: size %d mode %v, want a regular file of %d bytes", st.Size(), st.Mode(), 8<<20+512)
	}
	if err := os.Truncate(e.Path, 1<<20); err == nil {
		t.Fatal("truncating the disk file succeeded")
	}
}

func TestReadsAndWritesReachTheDevice(t *testing.T) {
	const size = 4 << 20
	mem := storage.NewMemory(size)
	dev := &storagetest.Counter{Device: mem}
	e := mount(t, dev, fuseexport.Options{})
	f, err := os.OpenFile(e.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	rng := rand.New(rand.NewSource(7))
	model := make([]byte, size)
	for i := 0; i < 60; i++ {
		n := rng.Intn(300<<10) + 1
		off := rng.Int63n(size - int64(n) + 1)
		p := make([]byte, n)
		rng.Read(p)
		if k, err := f.WriteAt(p, off); err != nil || k != n {
			t.Fatalf("WriteAt(%d at %d) = %d, %v", n, off, k, err)
		}
		copy(model[off:], p)
	}
	// The device holds the writes at once: no page cache in between.
	if !bytes.Equal(readDev(t, mem, size, 0), model) {
		t.Fatal("the device differs from what was written through the file")
	}
	// Writes made on the device are seen through the file at once.
	stamp := []byte("written under the mount")
	mem.WriteAt(stamp, 12345)
	copy(model[12345:], stamp)
	got := make([]byte, size)
	if k, err := f.ReadAt(got, 0); err != nil || k != size {
		t.Fatalf("ReadAt whole file = %d, %v", k, err)
	}
	if !bytes.Equal(got, model) {
		t.Fatal("reading through the file differs from the device")
	}

	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if dev.Flushes.Load() == 0 {
		t.Fatal("fsync did not flush the device")
	}

	// The end: reads stop there, writes are cut there.
	if k, err := f.ReadAt(make([]byte, 100), size-10); k != 10 {
		t.Fatalf("read across the end = %d, %v; want 10 bytes", k, err)
	}
	if _, err := f.WriteAt([]byte{1}, size); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write at the end: %v, want ENOSPC", err)
	}
	// A raw pwrite: os.File.WriteAt retries the remainder and reports
	// the ENOSPC of the retry.
	if k, err := unix.Pwrite(int(f.Fd()), bytes.Repeat([]byte{9}, 100), size-10); k != 10 {
		t.Fatalf("write across the end = %d, %v; want a short write of 10 bytes", k, err)
	}
	if st, _ := f.Stat(); st.Size() != size {
		t.Fatalf("file grew to %d", st.Size())
	}
}

func TestPunchHoleDiscards(t *testing.T) {
	mem := storage.NewMemory(4 << 20)
	e := mount(t, mem, fuseexport.Options{})
	mem.WriteAt(bytes.Repeat([]byte{0xee}, 1<<20), 0)
	f, err := os.OpenFile(e.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 128<<10, 256<<10); err != nil {
		t.Fatalf("punch hole: %v", err)
	}
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, 700<<10, 1000); err != nil {
		t.Fatalf("zero range: %v", err)
	}
	got := readDev(t, mem, 1<<20, 0)
	for i, b := range got {
		zero := i >= 128<<10 && i < 384<<10 || i >= 700<<10 && i < 700<<10+1000
		if zero != (b == 0) {
			t.Fatalf("byte %d = %#x after punching [128K,384K) and zeroing [700K,+1000)", i, b)
		}
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 8<<20); err == nil {
		t.Fatal("fallocate growing the disk file succeeded")
	}
}

func TestReadOnlyDevice(t *testing.T) {
	mem := storage.NewMemory(1 << 20)
	mem.WriteAt([]byte("keep"), 0)
	for _, c := range []struct {
		name string
		dev  storage.Device
		opt  fuseexport.Options
	}{
		{"device", storage.ReadOnly(mem), fuseexport.Options{}},
		{"option", mem, fuseexport.Options{ReadOnly: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := mount(t, c.dev, c.opt)
			if _, err := os.OpenFile(e.Path, os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EACCES) {
				t.Fatalf("open for writing: %v, want EROFS", err)
			}
			b, err := os.ReadFile(e.Path)
			if err != nil || len(b) != 1<<20 || string(b[:4]) != "keep" {
				t.Fatalf("reading the read-only file: %d bytes, %v", len(b), err)
			}
		})
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestExt4OverLoopOverTheFile is the whole point of the export: the disk
// file behaves as a disk for the kernel's loop driver and a filesystem.
func TestExt4OverLoopOverTheFile(t *testing.T) {
	needFUSE(t)
	for _, tool := range []string{"losetup", "mkfs.ext4", "fsck.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install scripts/deps.txt (e2fsprogs, util-linux)", tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("SKIPPED: no loop devices on this machine (%v)", err)
	}
	mem := storage.NewMemory(64 << 20)
	e := mount(t, mem, fuseexport.Options{})

	loop := run(t, "losetup", "-f", "--show", e.Path)
	detached := false
	detach := func() {
		if !detached {
			detached = true
			run(t, "losetup", "-d", loop)
		}
	}
	defer detach()
	run(t, "mkfs.ext4", "-q", "-F", loop)
	if sb := readDev(t, mem, 2, 1024+56); sb[0] != 0x53 || sb[1] != 0xef {
		t.Fatalf("no ext4 superblock magic on the device after mkfs: %x", sb)
	}

	fsdir := t.TempDir()
	run(t, "mount", "-t", "ext4", loop, fsdir)
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", fsdir).Run()
		}
	}()
	want := map[string][]byte{}
	rng := rand.New(rand.NewSource(3))
	for i := 0; i < 20; i++ {
		p := make([]byte, rng.Intn(1<<20))
		rng.Read(p)
		name := filepath.Join(fsdir, "f"+string(rune('a'+i)))
		if err := os.WriteFile(name, p, 0o644); err != nil {
			t.Fatal(err)
		}
		want[name] = p
	}
	run(t, "sync", "-f", fsdir)
	run(t, "umount", fsdir)
	mounted = false
	run(t, "fsck.ext4", "-fn", loop)

	// Mount again and read every file back through the whole chain.
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
	detach()
}

// fuseFile is the exported file seen as a storage.Device again, so that
// the conformance suite runs through the kernel's FUSE path. Range checks
// are the adapter's (pread past the end is a short read, not an error);
// the file's own end behaviour is TestReadsAndWritesReachTheDevice's.
type fuseFile struct {
	f   *os.File
	dev storage.Device
}

func (a fuseFile) Info() storage.Info { return a.dev.Info() }
func (a fuseFile) ReadAt(p []byte, off int64) (int, error) {
	if err := storage.CheckRange(off, int64(len(p)), a.dev.Info().Size); err != nil {
		return 0, err
	}
	return a.f.ReadAt(p, off)
}
func (a fuseFile) WriteAt(p []byte, off int64) (int, error) {
	if err := storage.CheckRange(off, int64(len(p)), a.dev.Info().Size); err != nil {
		return 0, err
	}
	return a.f.WriteAt(p, off)
}
func (a fuseFile) Flush() error { return a.f.Sync() }
func (a fuseFile) Discard(off, n int64, secure bool) error {
	if err := storage.CheckRange(off, n, a.dev.Info().Size); err != nil {
		return err
	}
	return unix.Fallocate(int(a.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}
func (a fuseFile) WriteZeroes(off, n int64) error {
	if err := storage.CheckRange(off, n, a.dev.Info().Size); err != nil {
		return err
	}
	return unix.Fallocate(int(a.f.Fd()), unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}
func (a fuseFile) Close() error { return a.f.Close() }

func TestConformanceThroughTheFile(t *testing.T) {
	needFUSE(t)
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
		dev := storage.NewMemory(size)
		e := mount(t, dev, fuseexport.Options{})
		f, err := os.OpenFile(e.Path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() }) // before the unmount (cleanups run last first)
		return fuseFile{f, dev}
	})
}

// TestFileTimesStartAtTheMount: the file's times are when the export was
// mounted (not 1970), and a write moves mtime on.
func TestFileTimesStartAtTheMount(t *testing.T) {
	before := time.Now().Add(-time.Second) // the kernel's clock may round down
	e := mount(t, storage.NewMemory(1<<20), fuseexport.Options{})
	st, err := os.Stat(e.Path)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.ModTime(); m.Before(before) || m.After(time.Now().Add(time.Second)) {
		t.Fatalf("mtime %v, want the mount's time (about %v)", m, before)
	}
	var sys unix.Stat_t
	if err := unix.Stat(e.Path, &sys); err != nil || sys.Atim.Sec < before.Unix() || sys.Ctim.Sec < before.Unix() {
		t.Fatalf("atime %v, ctime %v (%v); want the mount's time", sys.Atim, sys.Ctim, err)
	}
	f, err := os.OpenFile(e.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("x"), 4096); err != nil {
		t.Fatal(err)
	}
	after, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().After(st.ModTime()) {
		t.Fatalf("mtime %v after a write, was %v at the mount", after.ModTime(), st.ModTime())
	}
}

// TestHandlesCountOpensUntilRelease: every open counts until the kernel
// releases it, and a waiter learns of each change without polling.
func TestHandlesCountOpensUntilRelease(t *testing.T) {
	e := mount(t, storage.NewMemory(1<<20), fuseexport.Options{})
	if n, _ := e.Handles(); n != 0 {
		t.Fatalf("%d handles before any open", n)
	}
	a, err := os.Open(e.Path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.OpenFile(e.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, changed := e.Handles()
	if n != 2 {
		t.Fatalf("%d handles with two files open, want 2", n)
	}
	a.Close()
	b.Close()
	// RELEASE is asynchronous to close(2): wait for the count, event by event.
	deadline := time.After(10 * time.Second)
	for n != 0 {
		select {
		case <-changed:
			n, changed = e.Handles()
		case <-deadline:
			t.Fatalf("still %d handles 10s after both files were closed", n)
		}
	}
}
