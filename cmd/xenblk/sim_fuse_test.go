package main

import (
	"bufio"
	"bytes"
	"fmt"
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
		cmd.Process.Kill()                      // a no-op once sim has exited
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

// TestFrontFuseExportsTheDisk: `xenblk front --fuse DIR` in its own
// process, served by `xenblk serve`, exports the attached disk as a file
// whose writes reach the image, and unmounts it on SIGTERM.
func TestFrontFuseExportsTheDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: front --fuse mounts a filesystem and needs root (CI runs as root)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("SKIPPED: no /dev/fuse on this machine (%v)", err)
	}
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	img, mnt := filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 16<<20)
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	startProc(t, bin, "serve", "--host", sock, "--pr-dir", filepath.Join(dir, "pr"), "--journal-dir", filepath.Join(dir, "journal")).expect(t, "xenblk serve:")
	front := startProc(t, bin, "front", "--host", sock, "--name", "guest1", "--nbd", freePort(t), "--fuse", mnt)
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() }) // only if front died without unmounting
	var domid int
	fmt.Sscanf(front.expect(t, "domain "), "domain %d", &domid)
	if out, err := exec.Command(bin, "attach", "--xenstore", xs, "--domain", fmt.Sprint(domid),
		"format=raw, vdev=xvda, access=rw, target="+img).CombinedOutput(); err != nil {
		t.Fatalf("attach: %v %s", err, out)
	}
	path := strings.TrimSpace(strings.TrimPrefix(front.expect(t, "  FUSE "), "  FUSE "))
	if want := filepath.Join(mnt, "xvda"); path != want {
		t.Fatalf("FUSE file %q, want %q", path, want)
	}
	data := bytes.Repeat([]byte("front fuse "), 1000)
	const off = 3 << 20
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := f.Stat(); err != nil || st.Size() != 16<<20 {
		t.Fatalf("stat %s: %v; want size %d", path, err, 16<<20)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	f.Close()
	front.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() {
		for range front.lines {
		}
		done <- front.cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("front exited with %v after SIGTERM: %s", err, front.errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("front did not stop after SIGTERM")
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(mounts), " "+mnt+" ") {
		t.Fatalf("%s is still mounted after front stopped", mnt)
	}
	onDisk, err := os.ReadFile(img)
	if err != nil || len(onDisk) < off+len(data) || !bytes.Equal(onDisk[off:off+len(data)], data) {
		t.Fatalf("the image does not hold what was written through the FUSE file (%v)", err)
	}
}
