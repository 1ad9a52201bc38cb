package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSimFuseExportsTheGuestDisk runs `xenblk sim --fuse DIR` as a user
// would: the file DIR/xvda has the disk's size, a write through it reaches
// the image, and Ctrl-C unmounts it.
func TestSimFuseExportsTheGuestDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: sim --fuse mounts a filesystem and needs root (CI runs as root)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("SKIPPED: no /dev/fuse on this machine (%v)", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "xenblk")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	img, mnt := filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	cmd := exec.Command(bin, "sim", "--disk", img, "--size", "16M", "--nbd", freePort(t),
		"--control", filepath.Join(dir, "control.sock"), "--fuse", mnt)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // a no-op once sim has exited
		exec.Command("umount", "-l", mnt).Run() // only if sim died without unmounting
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var path string
	deadline := time.After(30 * time.Second)
	for path == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("sim exited before printing its FUSE file: %s", stderr.String())
			}
			if f := strings.Fields(l); len(f) == 2 && f[0] == "FUSE" {
				path = f[1]
			}
		case <-deadline:
			t.Fatalf("sim printed no FUSE file in 30s: %s", stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	if want := filepath.Join(mnt, "xvda"); path != want {
		t.Fatalf("FUSE file %s, want %s", path, want)
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() != 16<<20 {
		t.Fatalf("stat %s: %v, size %d; want %d", path, err, st.Size(), 16<<20)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("xenblk fuse "), 1000)
	const off = 5 << 20
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	f.Close()

	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sim exited with %v after Ctrl-C: %s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sim did not stop after Ctrl-C")
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(mounts), " "+mnt+" ") {
		t.Fatalf("%s is still mounted after sim stopped", mnt)
	}
	onDisk, err := os.ReadFile(img)
	if err != nil || len(onDisk) < off+len(data) || !bytes.Equal(onDisk[off:off+len(data)], data) {
		t.Fatalf("the image does not hold what was written through the FUSE file (%v)", err)
	}
}
