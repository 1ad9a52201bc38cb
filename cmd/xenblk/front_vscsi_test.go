package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startFrontVhost starts `xenblk front --vhost 0` as a new guest with a
// control socket, attaches img to it over PVSCSI at 0:0:0:0 with opts,
// and returns it with its control socket and the LUN's NBD URL.
func startFrontVhost(t *testing.T, bin, sock, xs, dir, name, img, opts string, args ...string) (front *proc, domid int, ctl, url string) {
	t.Helper()
	ctl = filepath.Join(dir, name+".sock")
	front = startProc(t, bin, append([]string{"front", "--host", sock, "--name", name, "--vhost", "0", "--nbd", freePort(t), "--control", ctl}, args...)...)
	fmt.Sscanf(front.expect(t, "domain "), "domain %d", &domid)
	attachVscsi(t, bin, xs, domid, img+", 0:0:0:0"+opts)
	line := front.expect(t, "LUN 0:0:0:0: ")
	url = line[strings.Index(line, "NBD ")+len("NBD "):]
	return front, domid, ctl, url
}

func attachVscsi(t *testing.T, bin, xs string, domid int, spec string) {
	t.Helper()
	if out, err := exec.Command(bin, "attach", "--xenstore", xs, "--domain", fmt.Sprint(domid), "--vscsi", spec).CombinedOutput(); err != nil {
		t.Fatalf("attach --vscsi %q: %v %s", spec, err, out)
	}
}

// xenblkRun runs the binary and returns its output and exit status.
func xenblkRun(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("%v: %v", args, err)
	return "", -1
}

// TestFrontVhostAcrossProcesses is PVSCSI as a user meets it: serve,
// two guests (front --vhost) each given the same image over its own
// vhost (shared=1), the LUN read over NBD by qemu-img and nbdinfo, its
// identity and reservations through xenblk scsi on front's control
// socket, the second guest fenced by the first's reservation, and a LUN
// hot-added and detached while front runs.
func TestFrontVhostAcrossProcesses(t *testing.T) {
	nbdinfo, qemuImg := needTool(t, "nbdinfo"), needTool(t, "qemu-img")
	bin := buildXenblk(t)
	dir := t.TempDir()
	img, img2 := filepath.Join(dir, "disk.img"), filepath.Join(dir, "second.img")
	newImage(t, img, 16<<20)
	newImage(t, img2, 8<<20)
	pattern := []byte("xenblk over PVSCSI")
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(pattern, 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sock, xs := crossProcHost(t, bin, dir)
	front1, dom1, ctl1, url1 := startFrontVhost(t, bin, sock, xs, dir, "node1", img, ", shared=1")
	_, _, ctl2, _ := startFrontVhost(t, bin, sock, xs, dir, "node2", img, ", shared=1")

	// The LUN over NBD, by real clients.
	if out, err := exec.Command(nbdinfo, "--size", url1).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(16<<20) {
		t.Fatalf("nbdinfo --size %s: %v %q", url1, err, out)
	}
	copied := filepath.Join(dir, "copy.raw")
	if out, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "raw", url1, copied).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert %s: %v %s", url1, err, out)
	}
	got, err := os.ReadFile(copied)
	if err != nil || len(got) != 16<<20 || string(got[1<<20:1<<20+len(pattern)]) != string(pattern) {
		t.Fatalf("qemu-img read %d bytes (%v); the pattern is not at 1 MiB", len(got), err)
	}

	// Identity and reservations through front's control socket.
	scsi := func(ctl string, args ...string) (string, int) {
		return xenblkRun(t, bin, append([]string{"scsi", args[0], "--control", ctl, "--device", "0:0:0:0"}, args[1:]...)...)
	}
	if out, code := scsi(ctl1, "inquiry", "--vpd", "0x83"); code != 0 || !strings.Contains(out, "designator_type: NAA") {
		t.Fatalf("inquiry --vpd 0x83: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{
		{"persist", "--out", "--register", "--param-sark", "0x1"},
		{"persist", "--out", "--reserve", "--param-rk", "0x1", "--prout-type", "1"},
	} {
		if out, code := scsi(ctl1, args...); code != 0 {
			t.Fatalf("node1 %v: exit %d\n%s", args, code, out)
		}
	}
	// One disk, one set of registrations: node2 sees node1's key.
	if out, code := scsi(ctl2, "persist", "--in", "--read-keys"); code != 0 || !strings.Contains(out, "0x1") {
		t.Fatalf("node2 read-keys: exit %d\n%s", code, out)
	}
	// xenblk pr carries the same actions as PERSISTENT RESERVE commands.
	if out, code := xenblkRun(t, bin, "pr", "read-keys", "--control", ctl2, "--device", "0:0:0:0"); code != 0 || !strings.Contains(out, "0x1") {
		t.Fatalf("node2 pr read-keys: exit %d\n%s", code, out)
	}
	block := filepath.Join(dir, "block.bin")
	if err := os.WriteFile(block, make([]byte, 512), 0o644); err != nil {
		t.Fatal(err)
	}
	write10 := []string{"raw", "2a", "00", "00", "00", "00", "00", "00", "00", "01", "00", "--infile", block}
	if out, code := scsi(ctl2, write10...); code != 3 || !strings.Contains(out, "RESERVATION CONFLICT") {
		t.Fatalf("node2's write under node1's Write Exclusive: exit %d, want 3 (RESERVATION CONFLICT)\n%s", code, out)
	}
	if out, code := scsi(ctl1, write10...); code != 0 {
		t.Fatalf("node1's own write: exit %d\n%s", code, out)
	}

	// A LUN hot-added gets its export; detached, loses it.
	attachVscsi(t, bin, xs, dom1, img2+", 0:0:1:0")
	line := front1.expect(t, "LUN 0:0:1:0: ")
	url2 := line[strings.Index(line, "NBD ")+len("NBD "):]
	if out, err := exec.Command(nbdinfo, "--size", url2).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(8<<20) {
		t.Fatalf("nbdinfo --size %s: %v %q", url2, err, out)
	}
	if out, code := xenblkRun(t, bin, "detach", "--xenstore", xs, "--domain", fmt.Sprint(dom1), "--vscsi", "0:0:1:0"); code != 0 {
		t.Fatalf("detach --vscsi 0:0:1:0: exit %d\n%s", code, out)
	}
	front1.expect(t, "LUN 0:0:1:0 removed")
	if out, err := exec.Command(nbdinfo, "--size", url2).CombinedOutput(); err == nil {
		t.Fatalf("the detached LUN's export still opens: %s", out)
	}
	if out, code := scsi(ctl1, "tur"); code != 0 {
		t.Fatalf("the LUN left after the detach: tur exit %d\n%s", code, out)
	}

	// The vhost's last LUN detached: the vhost goes, and front ends.
	if out, code := xenblkRun(t, bin, "detach", "--xenstore", xs, "--domain", fmt.Sprint(dom1), "--vscsi", "0:0:0:0"); code != 0 {
		t.Fatalf("detach --vscsi 0:0:0:0: exit %d\n%s", code, out)
	}
	front1.expect(t, "vhost 0 was detached")
	if err := front1.cmd.Wait(); err != nil {
		t.Fatalf("front after its vhost was detached: %v: %s", err, front1.errb.String())
	}
}

// TestFrontVhostFuse: with --fuse, each LUN is the file DIR/H:C:T:L/disk
// holding the image's bytes; detached, the file goes, and Ctrl-C with
// nothing holding a file stops front cleanly.
func TestFrontVhostFuse(t *testing.T) {
	needFuseRoot(t)
	bin := buildXenblk(t)
	dir := t.TempDir()
	img, img2 := filepath.Join(dir, "disk.img"), filepath.Join(dir, "second.img")
	newImage(t, img, 4<<20)
	newImage(t, img2, 4<<20)
	pattern := []byte("a LUN through FUSE")
	if err := os.WriteFile(img2, pattern, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img2, 4<<20); err != nil {
		t.Fatal(err)
	}
	sock, xs := crossProcHost(t, bin, dir)
	mnt := filepath.Join(dir, "mnt")
	front, dom, _, _ := startFrontVhost(t, bin, sock, xs, dir, "guest", img, "", "--fuse", mnt)
	front.expect(t, "  FUSE     "+filepath.Join(mnt, "0:0:0:0", "disk"))
	attachVscsi(t, bin, xs, dom, img2+", 0:0:1:0")
	file := filepath.Join(mnt, "0:0:1:0", "disk")
	front.expect(t, "  FUSE     "+file)
	got := make([]byte, len(pattern))
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadAt(got, 0)
	f.Close()
	if err != nil || string(got) != string(pattern) {
		t.Fatalf("%s begins %q (%v), want %q", file, got, err, pattern)
	}
	if out, code := xenblkRun(t, bin, "detach", "--xenstore", xs, "--domain", fmt.Sprint(dom), "--vscsi", "0:0:1:0"); code != 0 {
		t.Fatalf("detach --vscsi 0:0:1:0: exit %d\n%s", code, out)
	}
	front.expect(t, "LUN 0:0:1:0 removed")
	if _, err := os.Stat(file); err == nil {
		t.Fatalf("%s is still there after its LUN was detached", file)
	}
	front.cmd.Process.Signal(syscall.SIGINT)
	if code, _ := waitExit(t, front, time.Now(), 30*time.Second); code != 0 {
		t.Fatalf("front exited %d after Ctrl-C: %s", code, front.errb.String())
	}
	if _, err := os.Stat(filepath.Join(mnt, "0:0:0:0", "disk")); err == nil {
		t.Fatal("the LUN's FUSE file is still there after front stopped")
	}
}
