package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
)

// proc is a running xenblk subcommand with its output lines on a channel.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string
	errb   *lockedBuffer
	stdout io.Closer // the read end of the process's stdout
}

// lockedBuffer is a process's stderr, which a test may read while the
// process still writes it (os/exec copies into it from its own goroutine).
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, _ := cmd.StdoutPipe()
	errb := &lockedBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan string, 100), errb: errb, stdout: out}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return p
}

// closeStdout stops reading the process's stdout: its later writes there
// fail (EPIPE), as when the reader of a pipeline has gone.
func (p *proc) closeStdout() { p.stdout.Close() }

// expect waits for a line with the prefix and returns it.
func (p *proc) expect(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("%v exited before printing %q: %s", p.cmd.Args, prefix, p.errb.String())
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("%v did not print %q in 30s: %s", p.cmd.Args, prefix, p.errb.String())
		}
	}
}

func buildXenblk(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "xenblk")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestAcrossProcessesWithBackendKilled runs host, backend and frontend as
// separate processes, attaches a vbd the way libxl does, writes through the
// frontend's NBD export, kills the backend with SIGKILL in the middle of
// the workload, starts a new one, and checks that every write acknowledged
// before a completed flush is in the image.
func TestAcrossProcessesWithBackendKilled(t *testing.T) {
	needTool(t, "qemu-io")
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	img := filepath.Join(dir, "disk.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 64<<20)
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	serve := startProc(t, bin, "serve", "--host", sock, "--pr-dir", filepath.Join(dir, "pr"), "--journal-dir", filepath.Join(dir, "journal"))
	serve.expect(t, "xenblk serve:")
	addr := freePort(t)
	front := startProc(t, bin, "front", "--host", sock, "--name", "guest1", "--nbd", addr, "--verbose")
	var domid int
	fmt.Sscanf(front.expect(t, "domain "), "domain %d", &domid)
	if out, err := exec.Command(bin, "attach", "--xenstore", xs, "--domain", fmt.Sprint(domid),
		"format=raw, vdev=xvda, access=rw, target="+img).CombinedOutput(); err != nil {
		t.Fatalf("attach: %v %s", err, out)
	}
	url := strings.TrimPrefix(front.expect(t, "NBD "), "NBD ")
	qio := func(cmds ...string) error {
		args := []string{"-f", "raw"}
		for _, c := range cmds {
			args = append(args, "-c", c)
		}
		out, err := exec.Command("qemu-io", append(args, url)...).CombinedOutput()
		if err != nil || bytes.Contains(out, []byte("failed")) {
			return fmt.Errorf("qemu-io %v: %v %s", cmds, err, out)
		}
		return nil
	}
	if err := qio("write -P 0x11 0 4M", "flush"); err != nil {
		t.Fatal(err)
	}
	// Kill the backend while a workload runs, then start another. The
	// workload is long (56 MiB) next to the wait for its first block in
	// the image, so that it is still running at the kill (the restarted
	// backend then finds the image locked by the killed one's io_uring
	// for a moment: imagelock waits for a holder no process shows).
	const span = 56 << 20
	done := make(chan error, 1)
	go func() { done <- qio(fmt.Sprintf("write -P 0x22 4M %d", span), "flush") }()
	first, want := make([]byte, 4096), bytes.Repeat([]byte{0x22}, 4096)
	eventually.True(t, 30*time.Second, "the workload's first block in the image", func() bool {
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		_, err = f.ReadAt(first, 4<<20)
		return (err == nil && bytes.Equal(first, want)) || len(done) > 0
	})
	if len(done) > 0 {
		t.Fatalf("the workload ended before the kill: %v", <-done)
	}
	serve.cmd.Process.Signal(syscall.SIGKILL)
	serve.cmd.Wait()
	serve2 := startProc(t, bin, "serve", "--host", sock, "--pr-dir", filepath.Join(dir, "pr"), "--journal-dir", filepath.Join(dir, "journal"))
	serve2.expect(t, "xenblk serve:")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the workload across the restart: %v", err)
		}
	case <-time.After(60 * time.Second):
		tree, _ := exec.Command(bin, "xenstore", "ls", "--socket", xs, "/local/domain").CombinedOutput()
		t.Fatalf("the workload did not finish after the backend restarted\nfrontend: %s\nnew backend: %s\nstore:\n%s", front.errb.String(), serve2.errb.String(), tree)
	}
	f, _ := os.Open(img)
	defer f.Close()
	got := make([]byte, 4<<20+span)
	io.ReadFull(f, got)
	if sha256.Sum256(got[:4<<20]) != sha256.Sum256(bytes.Repeat([]byte{0x11}, 4<<20)) {
		t.Fatal("data flushed before the kill is not in the image")
	}
	if sha256.Sum256(got[4<<20:]) != sha256.Sum256(bytes.Repeat([]byte{0x22}, span)) {
		t.Fatal("writes acknowledged across the restart are not in the image")
	}
	if out, err := exec.Command(bin, "detach", "--xenstore", xs, "--domain", fmt.Sprint(domid), "xvda", "--force", "--timeout", "5s").CombinedOutput(); err != nil {
		t.Fatalf("detach: %v %s", err, out)
	}
}

func waitFile(t *testing.T, p string) {
	t.Helper()
	eventually.True(t, 10*time.Second, p+" appearing", func() bool { _, err := os.Stat(p); return err == nil })
}

// `xenblk host` as the acceptance: Xen's own xenstore-ls shows the
// tree, a guest process appears in it, and a guest killed with SIGKILL
// disappears from it.
func TestHostShowsAndReleasesAKilledGuest(t *testing.T) {
	needTool(t, "xenstore-ls")
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	waitFile(t, xs)
	ls := func() string {
		cmd := exec.Command("xenstore-ls", "/local/domain")
		cmd.Env = append(os.Environ(), "XENSTORED_PATH="+xs)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("xenstore-ls: %v %s", err, out)
		}
		return string(out)
	}
	guest := startProc(t, bin, "front", "--host", sock, "--name", "doomed", "--wait", "1m")
	var domid int
	fmt.Sscanf(guest.expect(t, "domain "), "domain %d", &domid)
	if tree := ls(); !strings.Contains(tree, `name = "doomed"`) {
		t.Fatalf("the guest is not in xenstore-ls:\n%s", tree)
	}
	guest.cmd.Process.Signal(syscall.SIGKILL)
	guest.cmd.Wait()
	eventually.True(t, 10*time.Second, "the killed guest gone from xenstore-ls", func() bool { return !strings.Contains(ls(), `name = "doomed"`) })
	if tree := ls(); !strings.Contains(tree, "0 = ") {
		t.Fatalf("dom0 vanished too:\n%s", tree)
	}
}
