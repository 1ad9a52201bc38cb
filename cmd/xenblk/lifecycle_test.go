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

	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenstore"
)

// waitExit waits (at most within) for p to exit and returns its exit
// code and how long it took from start.
func waitExit(t *testing.T, p *proc, start time.Time, within time.Duration) (int, time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for range p.lines {
		}
		done <- p.cmd.Wait()
	}()
	select {
	case err := <-done:
		took := time.Since(start)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), took
		}
		if err != nil {
			t.Fatalf("%v: %v", p.cmd.Args, err)
		}
		return 0, took
	case <-time.After(within):
		t.Fatalf("%v did not exit within %v: %s", p.cmd.Args, within, p.errb.String())
	}
	return -1, 0
}

// waitNode waits (watching, at most 10 s) until path holds want.
func waitNode(t *testing.T, st *xenstore.Client, path, want string) {
	t.Helper()
	w, err := st.Watch(path, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	deadline := time.After(10 * time.Second)
	for {
		if v, err := st.Read(path); err == nil && v == want {
			return
		}
		select {
		case <-w.Events():
		case <-deadline:
			v, err := st.Read(path)
			t.Fatalf("%s = %q (%v) after 10s, want %q", path, v, err, want)
		}
	}
}

// TestSimStopsAtOnceAfterCtrlC: nothing in sim's shutdown waits for an
// answer that will not come (it took 10 s: the vbd's removal asked a
// Closed backend to close again). The bound is wide; a clean stop takes
// a small fraction of it.
func TestSimStopsAtOnceAfterCtrlC(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	sim := startProc(t, bin, "sim", "--disk", filepath.Join(dir, "disk.img"), "--size", "16M",
		"--nbd", freePort(t), "--control", filepath.Join(dir, "control.sock"))
	sim.expect(t, "Ctrl-C to stop.")
	start := time.Now()
	sim.cmd.Process.Signal(syscall.SIGINT)
	code, took := waitExit(t, sim, start, 30*time.Second)
	if code != 0 {
		t.Fatalf("sim exited %d after Ctrl-C: %s", code, sim.errb.String())
	}
	if took > 5*time.Second {
		t.Fatalf("sim took %v to stop after Ctrl-C; a clean stop takes well under a second", took)
	}
}

// crossProcHost starts `xenblk host` and `xenblk serve` and returns the
// xenstored socket path and the host socket.
func crossProcHost(t *testing.T, bin, dir string) (sock, xs string) {
	t.Helper()
	sock, xs = filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	startProc(t, bin, "serve", "--host", sock, "--pr-dir", filepath.Join(dir, "pr"),
		"--journal-dir", filepath.Join(dir, "journal")).expect(t, "xenblk serve:")
	return sock, xs
}

func attachImage(t *testing.T, bin, xs string, domid int, img string) {
	t.Helper()
	if out, err := exec.Command(bin, "attach", "--xenstore", xs, "--domain", fmt.Sprint(domid),
		"format=raw, vdev=xvda, access=rw, target="+img).CombinedOutput(); err != nil {
		tree, _ := exec.Command(bin, "xenstore", "ls", "--socket", xs, "/local/domain").CombinedOutput()
		t.Fatalf("attach: %v %s\nthe store:\n%s", err, out, tree)
	}
}

// startFront starts `xenblk front --name NAME ARGS...` on the host,
// attaches img to its domain as xvda, and returns it with its domain id
// once it has printed its NBD line.
func startFront(t *testing.T, bin, sock, xs, img, name string, args ...string) (*proc, int) {
	t.Helper()
	front := startProc(t, bin, append([]string{"front", "--host", sock, "--name", name, "--nbd", freePort(t)}, args...)...)
	var domid int
	fmt.Sscanf(front.expect(t, "domain "), "domain %d", &domid)
	attachImage(t, bin, xs, domid, img)
	return front, domid
}

// detachVBD runs `xenblk detach` (no --force) of the domain's xvda.
func detachVBD(t *testing.T, bin, xs string, domid int) {
	t.Helper()
	if out, err := exec.Command(bin, "detach", "--xenstore", xs, "--domain", fmt.Sprint(domid), "xvda", "--timeout", "30s").CombinedOutput(); err != nil {
		t.Fatalf("detach: %v %s", err, out)
	}
}

func newImage(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// TestAKilledGuestsVBDGoesWithIt: a guest killed mid-life takes its vbd
// with it, as libxl removes a destroyed domain's devices: serve sees the
// domain gone and removes the backend and frontend directories (nothing
// waits for a detach that may never come), and a detach afterwards says
// there is no such device at once instead of waiting for a Closed.
func TestAKilledGuestsVBDGoesWithIt(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	newImage(t, img, 16<<20)
	sock, xs := crossProcHost(t, bin, dir)
	front, domid := startFront(t, bin, sock, xs, img, "doomed")
	front.expect(t, "NBD ")
	front.cmd.Process.Signal(syscall.SIGKILL)
	front.cmd.Wait()
	st, err := xenstore.Dial(xs)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	waitGone(t, st, fmt.Sprintf("/local/domain/0/backend/xenblk/%d/51712", domid))

	start := time.Now()
	out, err := exec.Command(bin, "detach", "--xenstore", xs, "--domain", fmt.Sprint(domid), "xvda", "--timeout", "30s").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "has no vbd xvda") {
		t.Fatalf("detach of a vbd already gone: %v %s; want exit 1 saying there is no such vbd", err, out)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("detach of a vbd already gone took %v", took)
	}
}

// waitGone waits (10 s at most) for path to be removed from the store.
func waitGone(t *testing.T, st *xenstore.Client, path string) {
	t.Helper()
	w, err := st.Watch(path, "gone")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	deadline := time.After(10 * time.Second)
	for {
		if _, err := st.Read(path); errors.Is(err, xen.ErrNotFound) {
			return
		}
		select {
		case <-w.Events():
		case <-deadline:
			t.Fatalf("%s still there 10s after its domain died", path)
		}
	}
}

// TestFrontEndsWhenItsVBDIsDetached: after a detach, front does not go on
// exporting a disk that fails every read: it says so, its NBD clients see
// the connection end (not EIO), and it exits 0; with --reattach it serves
// the next vbd attached to it.
func TestFrontEndsWhenItsVBDIsDetached(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	newImage(t, img, 16<<20)
	sock, xs := crossProcHost(t, bin, dir)
	front, domid := startFront(t, bin, sock, xs, img, "once")
	url := strings.TrimPrefix(front.expect(t, "NBD "), "NBD ")
	cl, err := nbd.Dial(url, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatalf("read before the detach: %v", err)
	}
	start := time.Now()
	detachVBD(t, bin, xs, domid)
	if code, _ := waitExit(t, front, start, 30*time.Second); code != 0 {
		t.Fatalf("front exited %d after its vbd was detached: %s", code, front.errb.String())
	}
	if !strings.Contains(front.errb.String(), "vbd xvda was detached") {
		t.Fatalf("front did not say its vbd was detached: %s", front.errb.String())
	}
	if _, err := cl.ReadAt(make([]byte, 4096), 0); !errors.Is(err, nbd.ErrClosed) {
		t.Fatalf("an NBD read after the detach: %v; want the connection closed", err)
	}

	again, domid := startFront(t, bin, sock, xs, img, "again", "--reattach")
	again.expect(t, "NBD ")
	detachVBD(t, bin, xs, domid)
	again.expect(t, "waiting for the next vbd")
	attachImage(t, bin, xs, domid, img)
	url = strings.TrimPrefix(again.expect(t, "NBD "), "NBD ")
	cl2, err := nbd.Dial(url, "")
	if err != nil {
		t.Fatalf("NBD after the reattach: %v", err)
	}
	defer cl2.Close()
	if _, err := cl2.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatalf("read after the reattach: %v", err)
	}
	again.cmd.Process.Signal(syscall.SIGTERM)
	if code, _ := waitExit(t, again, time.Now(), 30*time.Second); code != 0 {
		t.Fatalf("front --reattach exited %d after SIGTERM: %s", code, again.errb.String())
	}
}

// TestSimFuseOnAFileIsAUsageError: --fuse must name a directory; sim
// says so before it creates or starts anything.
func TestSimFuseOnAFileIsAUsageError(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	file, img := filepath.Join(dir, "file"), filepath.Join(dir, "disk.img")
	os.WriteFile(file, []byte("x"), 0o644)
	sim := startProc(t, bin, "sim", "--disk", img, "--size", "16M", "--nbd", freePort(t),
		"--control", filepath.Join(dir, "control.sock"), "--fuse", file)
	// Bounded: before the check, sim ran on without FUSE until stopped.
	if code, _ := waitExit(t, sim, time.Now(), 30*time.Second); code != exitUsage || !strings.Contains(sim.errb.String(), "--fuse "+file+": not a directory") {
		t.Fatalf("sim --fuse FILE: exit %d, %q; want exit 2 naming the file", code, sim.errb.String())
	}
	if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("sim --fuse FILE created the image (%v)", err)
	}
	front := startProc(t, bin, "front", "--host", filepath.Join(dir, "none.sock"), "--fuse", file)
	if code, _ := waitExit(t, front, time.Now(), 30*time.Second); code != exitUsage || !strings.Contains(front.errb.String(), "not a directory") {
		t.Fatalf("front --fuse FILE: exit %d, %q; want exit 2", code, front.errb.String())
	}
}

// serveAndFront starts host, serve and a connected front over a 16 MiB
// image, and returns serve and front.
func serveAndFront(t *testing.T) (serve, front *proc) {
	t.Helper()
	bin := buildXenblk(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	newImage(t, img, 16<<20)
	sock, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	serve = startProc(t, bin, "serve", "--host", sock, "--pr-dir", filepath.Join(dir, "pr"))
	serve.expect(t, "xenblk serve:")
	front, _ = startFront(t, bin, sock, xs, img, "guest1")
	front.expect(t, "NBD ")
	return serve, front
}

// TestSecondSignalDuringTheShutdownExits: a shutdown stuck on a backend
// that answers nothing (stopped with SIGSTOP) ends at the second signal,
// with a failure status, instead of after the final flush's 10 s bound.
func TestSecondSignalDuringTheShutdownExits(t *testing.T) {
	serve, front := serveAndFront(t)
	serve.cmd.Process.Signal(syscall.SIGSTOP)
	t.Cleanup(func() { serve.cmd.Process.Signal(syscall.SIGCONT) })
	front.cmd.Process.Signal(syscall.SIGTERM)
	front.expect(t, "xenblk front: shutting down")
	start := time.Now()
	front.cmd.Process.Signal(syscall.SIGTERM)
	code, took := waitExit(t, front, start, 30*time.Second)
	if code != exitFailure || !strings.Contains(front.errb.String(), "second Ctrl-C") {
		t.Fatalf("front exited %d after a second signal during its shutdown; want %d saying so: %s", code, exitFailure, front.errb.String())
	}
	if took > 5*time.Second {
		t.Fatalf("front took %v to exit after the second signal", took)
	}
}

// TestFrontStopsWhenTheBackendIsGone: front's last flush, which nothing
// answers once serve has exited, is bounded by its context (it waited
// forever: blkfront's waits ignored their context), and the failure says
// so.
func TestFrontStopsWhenTheBackendIsGone(t *testing.T) {
	serve, front := serveAndFront(t)
	serve.cmd.Process.Signal(syscall.SIGTERM)
	if code, _ := waitExit(t, serve, time.Now(), 30*time.Second); code != 0 {
		t.Fatalf("serve exited %d: %s", code, serve.errb.String())
	}
	front.cmd.Process.Signal(syscall.SIGTERM)
	// The flush's own bound is 10 s.
	code, _ := waitExit(t, front, time.Now(), 30*time.Second)
	if code != exitFailure || !strings.Contains(front.errb.String(), "no answer from the backend") {
		t.Fatalf("front exited %d with its backend gone; want %d saying the flush went unanswered: %s", code, exitFailure, front.errb.String())
	}
}

// TestDetachWithNoBackendServing: a vbd that no serve took up (none runs)
// is detached at once, without --force; a backend that took one up and
// never closes is refused after --timeout with a hint naming detach's own
// flags, and nothing is removed.
func TestDetachWithNoBackendServing(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	newImage(t, img, 16<<20)
	sock, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	// A vbd never attached is named as such, with where to look.
	out, err := exec.Command(bin, "detach", "--xenstore", xs, "--domain", "0", "xvdb").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure || !strings.Contains(string(out), "domain 0 has no vbd xvdb") ||
		!strings.Contains(string(out), "xenblk xenstore ls /local/domain/0/backend/xenblk") {
		t.Errorf("detach of a vbd never attached: %v %s; want exit 1 saying there is no such vbd and where to look", err, out)
	}

	attachImage(t, bin, xs, 0, img)
	start := time.Now()
	detachVBD(t, bin, xs, 0)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("detach of a vbd no backend took up took %v", took)
	}

	attachImage(t, bin, xs, 0, img)
	st, err := xenstore.Dial(xs)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	state := "/local/domain/0/backend/xenblk/0/51712/state"
	if err := st.Write(state, "4"); err != nil { // taken up, then hung
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "detach", "--xenstore", xs, "--domain", "0", "xvda", "--timeout", "300ms").CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
		t.Fatalf("detach of a hung backend: %v %s; want exit 1", err, out)
	}
	if !strings.Contains(string(out), "--force") || !strings.Contains(string(out), "--timeout") {
		t.Errorf("detach of a hung backend does not say what to do: %s", out)
	}
	if _, err := st.Read(state); err != nil {
		t.Errorf("a refused detach removed the vbd: %v", err)
	}
}

// TestHostSocketGivenAsXenstore: the simulated host's own socket where its
// xenstored socket belongs (an easy slip: host prints both) is named for
// what it is, not "protocol wrong type for socket".
func TestHostSocketGivenAsXenstore(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	for _, args := range [][]string{
		{"detach", "--xenstore", sock, "--domain", "0", "xvda"},
		{"xenstore", "--socket", sock, "ls", "/"},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
			t.Fatalf("%s: %v %s; want exit 1", args, err, out)
		}
		if !strings.Contains(string(out), "not a xenstored socket") || strings.Contains(string(out), "wrong type") {
			t.Errorf("%s says: %s", args, out)
		}
	}
}

// TestSimCleansUpWhenNobodyReadsItsOutput: the reader of sim's output
// may be gone by the time sim says it is shutting down (`xenblk sim |
// tee log`: Ctrl-C stops tee too). sim must still stop cleanly: exit 0,
// its control socket removed, not killed by SIGPIPE halfway through.
func TestSimCleansUpWhenNobodyReadsItsOutput(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	control := filepath.Join(dir, "control.sock")
	sim := startProc(t, bin, "sim", "--disk", filepath.Join(dir, "disk.img"), "--size", "16M",
		"--nbd", freePort(t), "--control", control)
	sim.expect(t, "Ctrl-C to stop.")
	sim.closeStdout()
	start := time.Now()
	sim.cmd.Process.Signal(syscall.SIGINT)
	code, _ := waitExit(t, sim, start, 30*time.Second)
	if code != 0 {
		t.Fatalf("sim exited %d after Ctrl-C with nobody reading its output (%v): %s", code, sim.cmd.ProcessState, sim.errb.String())
	}
	if _, err := os.Lstat(control); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket %s left behind: %v", control, err)
	}
}

// TestFrontHandshakeFollowsWait: a vbd attached with no backend serving
// it is given up after front's --wait (it was a fixed 30 s, so a slow
// backend could not be waited for longer), with a message naming --wait;
// Ctrl-C while front waits for the backend is a stop the user asked for
// (exit 0).
func TestFrontHandshakeFollowsWait(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	img := filepath.Join(dir, "disk.img")
	newImage(t, img, 1<<20)

	front, _ := startFront(t, bin, sock, xs, img, "slow", "--wait", "2s")
	start := time.Now()
	code, took := waitExit(t, front, start, 20*time.Second)
	if code != exitFailure || !strings.Contains(front.errb.String(), "--wait 2s") {
		t.Fatalf("front with no backend: exit %d after %v: %s; want %d naming --wait 2s", code, took, front.errb.String(), exitFailure)
	}

	// The first guest's vbd stays (no serve removes a dead domain's
	// devices): another image, which attach does not refuse beside it.
	img2 := filepath.Join(dir, "disk2.img")
	newImage(t, img2, 1<<20)
	front, _ = startFront(t, bin, sock, xs, img2, "stopped", "--wait", "1m")
	start = time.Now()
	front.cmd.Process.Signal(syscall.SIGINT)
	if code, _ := waitExit(t, front, start, 20*time.Second); code != exitOK {
		t.Fatalf("front stopped while waiting for its backend: exit %d: %s", code, front.errb.String())
	}
}
