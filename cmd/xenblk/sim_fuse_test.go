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
	needFuseRoot(t)
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
	// The banner lists every export (SCSI and FUSE lines too) before it
	// ends with "Ctrl-C to stop.".
	var path string
	var banner []string
	deadline := time.After(30 * time.Second)
	for len(banner) == 0 || banner[len(banner)-1] != "Ctrl-C to stop." {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("sim exited before the end of its banner: %s", stderr.String())
			}
			banner = append(banner, l)
			if f := strings.Fields(l); len(f) == 2 && f[0] == "FUSE" {
				path = f[1]
			}
		case <-deadline:
			t.Fatalf("sim's banner did not end in 30s: %s", stderr.String())
		}
	}
	if all := strings.Join(banner, "\n"); path == "" || !strings.Contains(all, "\n  SCSI ") {
		t.Fatalf("the banner, up to its end, lacks the FUSE or SCSI line:\n%s", all)
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

// startFuseFront starts host and serve, and `xenblk front --fuse DIR
// ARGS...` with a 16 MiB image attached, and returns it with the image
// and DIR.
func startFuseFront(t *testing.T, args ...string) (front *proc, img, mnt string) {
	t.Helper()
	needFuseRoot(t)
	bin := buildXenblk(t)
	dir := t.TempDir()
	img, mnt = filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	newImage(t, img, 16<<20)
	sock, xs := crossProcHost(t, bin, dir)
	front, _ = startFront(t, bin, sock, xs, img, "guest1", append([]string{"--fuse", mnt}, args...)...)
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() }) // only if front died without unmounting
	return front, img, mnt
}

// TestFrontFuseExportsTheDisk: `xenblk front --fuse DIR` in its own
// process, served by `xenblk serve`, exports the attached disk as a file
// whose writes reach the image, and unmounts it on SIGTERM.
func TestFrontFuseExportsTheDisk(t *testing.T) {
	front, img, mnt := startFuseFront(t)
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
	if code, _ := waitExit(t, front, time.Now(), 20*time.Second); code != 0 {
		t.Fatalf("front exited %d after SIGTERM: %s", code, front.errb.String())
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

// needFuseRoot skips, loudly, where FUSE cannot be mounted (CI runs as
// root with /dev/fuse).
func needFuseRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: --fuse mounts a filesystem and needs root (CI runs as root)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("SKIPPED: no /dev/fuse on this machine (%v)", err)
	}
}

// loopOn sets a loop device up on path and returns it; the test detaches
// it at the end if it still exists.
func loopOn(t *testing.T, path string) string {
	t.Helper()
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("SKIPPED: no loop devices on this machine (%v)", err)
	}
	out, err := exec.Command("losetup", "-f", "--show", path).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup %s: %v %s", path, err, out)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	return loop
}

func mounted(dir string) bool {
	mounts, _ := os.ReadFile("/proc/self/mounts")
	return strings.Contains(string(mounts), " "+dir+" ")
}

// startFuseSim starts `xenblk sim --fuse DIR` with the given extra flags
// and returns it with its FUSE file, once the banner is complete.
func startFuseSim(t *testing.T, extra ...string) (sim *proc, mnt, path string) {
	t.Helper()
	needFuseRoot(t)
	bin := buildXenblk(t)
	dir := t.TempDir()
	mnt = filepath.Join(dir, "mnt")
	args := append([]string{"sim", "--disk", filepath.Join(dir, "disk.img"), "--size", "16M", "--nbd", freePort(t),
		"--control", filepath.Join(dir, "control.sock"), "--fuse", mnt}, extra...)
	sim = startProc(t, bin, args...)
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() }) // only if sim died without unmounting
	path = strings.TrimSpace(strings.TrimPrefix(sim.expect(t, "  FUSE "), "  FUSE "))
	sim.expect(t, "Ctrl-C to stop.")
	return sim, mnt, path
}

// TestSimCtrlCWaitsForTheLoopDevice is the user's case: ext4 mounted from
// a loop device on the FUSE file. Ctrl-C does not pull the disk out from
// under it: sim says what holds the file and how to release it, keeps
// serving (the filesystem stays writable), and stops by itself (exit 0)
// once it is released, the filesystem clean.
func TestSimCtrlCWaitsForTheLoopDevice(t *testing.T) {
	for _, tool := range []string{"losetup", "mkfs.ext4", "fsck.ext4", "mount", "umount"} {
		needTool(t, tool)
	}
	sim, mnt, path := startFuseSim(t)
	loop := loopOn(t, path)
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v %s", name, strings.Join(args, " "), err, out)
		}
	}
	run("mkfs.ext4", "-q", loop)
	fsdir := t.TempDir()
	run("mount", loop, fsdir)
	t.Cleanup(func() { exec.Command("umount", fsdir).Run() })
	sim.cmd.Process.Signal(syscall.SIGINT)
	msg := sim.expect(t, "xenblk sim: not stopping yet:")
	for _, want := range []string{path, "loop device " + loop + " mounted on " + fsdir, "umount " + fsdir + "; losetup -d " + loop} {
		if !strings.Contains(msg, want) {
			t.Fatalf("sim's answer to Ctrl-C %q does not say %q", msg, want)
		}
	}
	// Still serving: the filesystem takes a write and a sync.
	if err := os.WriteFile(filepath.Join(fsdir, "after-ctrl-c"), []byte("still here"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("sync", "-f", fsdir)
	run("umount", fsdir)
	run("fsck.ext4", "-fn", loop)
	run("losetup", "-d", loop)
	if code, _ := waitExit(t, sim, time.Now(), 30*time.Second); code != 0 {
		t.Fatalf("sim exited %d once the file was released: %s", code, sim.errb.String())
	}
	if mounted(mnt) {
		t.Fatalf("%s is still mounted after sim stopped", mnt)
	}
}

// TestSimSecondCtrlCTearsTheFUSEFileDown: a second Ctrl-C while the file
// is held tears it down anyway, and the exit status says so.
func TestSimSecondCtrlCTearsTheFUSEFileDown(t *testing.T) {
	sim, mnt, path := startFuseSim(t)
	loopOn(t, path)
	sim.cmd.Process.Signal(syscall.SIGINT)
	sim.expect(t, "xenblk sim: not stopping yet:")
	sim.cmd.Process.Signal(syscall.SIGINT)
	if code, _ := waitExit(t, sim, time.Now(), 30*time.Second); code != exitFailure {
		t.Fatalf("sim exited %d after a second Ctrl-C with the file held; want %d: %s", code, exitFailure, sim.errb.String())
	}
	if !strings.Contains(sim.errb.String(), "second Ctrl-C") {
		t.Fatalf("sim's error does not say it was forced: %s", sim.errb.String())
	}
	if mounted(mnt) {
		t.Fatalf("%s is still mounted after a forced stop", mnt)
	}
}

// TestFrontForceTearsTheFUSEFileDown: front --force stops at the first
// SIGTERM although a loop device holds the file, and exits 1.
func TestFrontForceTearsTheFUSEFileDown(t *testing.T) {
	front, _, mnt := startFuseFront(t, "--force")
	path := strings.TrimSpace(strings.TrimPrefix(front.expect(t, "  FUSE "), "  FUSE "))
	loopOn(t, path)
	front.cmd.Process.Signal(syscall.SIGTERM)
	if code, _ := waitExit(t, front, time.Now(), 30*time.Second); code != exitFailure {
		t.Fatalf("front --force exited %d with the file held; want %d: %s", code, exitFailure, front.errb.String())
	}
	if !strings.Contains(front.errb.String(), "--force") {
		t.Fatalf("front's error does not say --force tore the file down: %s", front.errb.String())
	}
	if mounted(mnt) {
		t.Fatalf("%s is still mounted after front stopped", mnt)
	}
}
