package imagelock

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	readWrite  = Mode{Write: true}
	readOnly   = Mode{}
	sharedRW   = Mode{Write: true, Shared: true}
	sharedRO   = Mode{Shared: true}
	everyMode  = []Mode{readWrite, readOnly, sharedRW, sharedRO}
	childEnv   = "IMAGELOCK_TEST_CHILD" // path,write,shared: lock it, say "locked", hold until stdin closes
	childReady = "locked"
)

// TestMain lets the test binary be the other process: with childEnv set,
// it locks the image and holds it until its stdin closes.
func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(child(spec))
	}
	os.Exit(m.Run())
}

func child(spec string) int {
	parts := strings.Split(spec, ",")
	f, err := os.OpenFile(parts[0], os.O_RDWR, 0)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if err := Acquire(f, parts[0], Mode{Write: parts[1] == "1", Shared: parts[2] == "1"}); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println(childReady)
	io.Copy(io.Discard, os.Stdin)
	return 0
}

func image(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func open(t *testing.T, path string, m Mode) (*os.File, error) {
	t.Helper()
	flag := os.O_RDONLY
	if m.Write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := Acquire(f, path, m); err != nil {
		f.Close()
		return nil, err
	}
	t.Cleanup(func() { f.Close() })
	return f, nil
}

// compatible is the package comment's table.
func compatible(a, b Mode) bool {
	switch {
	case a == readWrite || b == readWrite:
		return false
	case a.Shared && b.Shared:
		return true
	case !a.Write && !b.Write:
		return true
	}
	return false
}

// TestModesTogether walks the table both ways round: two opens of one
// image in one process are two open file descriptions, as two processes
// are.
func TestModesTogether(t *testing.T) {
	for _, first := range everyMode {
		for _, second := range everyMode {
			t.Run(first.String()+"+"+second.String(), func(t *testing.T) {
				p := image(t)
				if _, err := open(t, p, first); err != nil {
					t.Fatalf("first open: %v", err)
				}
				_, err := open(t, p, second)
				if want := compatible(first, second); want && err != nil {
					t.Fatalf("refused: %v", err)
				} else if !want {
					var inUse *InUseError
					if !errors.As(err, &inUse) || !errors.Is(err, ErrInUse) {
						t.Fatalf("second open: %v, want an *InUseError", err)
					}
					msg := err.Error()
					for _, s := range []string{p, "this process", "open " + first.String() + ";", "opened " + second.String()} {
						if !strings.Contains(msg, s) {
							t.Errorf("%q does not say %q", msg, s)
						}
					}
				}
			})
		}
	}
}

// A refused opener leaves no lock behind, and closing a holder frees the
// image.
func TestRefusedLeavesNothingAndCloseReleases(t *testing.T) {
	p := image(t)
	reader, err := open(t, p, readOnly)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(t, p, sharedRW); err == nil {
		t.Fatal("a shared writer joined a reader that refuses writers")
	}
	// The refused writer's read lock on "holds write" is gone: another
	// reader still gets in.
	if _, err := open(t, p, readOnly); err != nil {
		t.Fatalf("a second reader after the refused writer: %v", err)
	}
	reader.Close()
	if _, err := open(t, p, readWrite); err == nil {
		t.Fatal("a writer got in while the second reader still holds the image")
	}
}

func TestCloseReleases(t *testing.T) {
	p := image(t)
	f, err := open(t, p, readWrite)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := open(t, p, readWrite); err != nil {
		t.Fatalf("after the first writer closed: %v", err)
	}
}

// holdInChild locks the image in another process and returns its pid; it
// releases the lock when the test ends.
func holdInChild(t *testing.T, path string, m Mode) int {
	t.Helper()
	bit := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path+","+bit(m.Write)+","+bit(m.Shared))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	// The child says "locked" once it holds the image, or why not and exits.
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != childReady {
		t.Fatalf("child: %q", line)
	}
	return cmd.Process.Pid
}

// Across processes the refusal names the holder: its pid, its command and
// how it has the image open.
func TestOtherProcessIsNamed(t *testing.T) {
	p := image(t)
	pid := holdInChild(t, p, readWrite)
	_, err := open(t, p, readOnly)
	var inUse *InUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("open beside the child: %v", err)
	}
	if len(inUse.Holders) != 1 || inUse.Holders[0].PID != pid || inUse.Holders[0].Self || inUse.Holders[0].Mode != readWrite {
		t.Fatalf("holders %+v, want the child %d, read-write", inUse.Holders, pid)
	}
	comm := filepath.Base(os.Args[0])
	comm = comm[:min(len(comm), 15)] // the kernel's TASK_COMM_LEN
	want := fmt.Sprintf("pid %d (%s) has it open read-write", pid, comm)
	if msg := err.Error(); !strings.Contains(msg, want) {
		t.Errorf("%q does not say %q", msg, want)
	}

	// Shared users in two processes go together; the child is not
	// listed against a newcomer it does not conflict with.
	q := image(t)
	holdInChild(t, q, sharedRW)
	if _, err := open(t, q, sharedRW); err != nil {
		t.Fatalf("a shared writer beside a shared writer in another process: %v", err)
	}
	if _, err := open(t, q, readWrite); err == nil {
		t.Fatal("a writer that is not shared joined shared ones")
	}
}

// QEMU uses the same bytes, so each refuses the other: qemu-nbd (which
// opens read-write, sharing writes) and a xenblk writer that is not
// shared.
func TestQEMUSeesUsAndWeSeeQEMU(t *testing.T) {
	qemuNBD, err := exec.LookPath("qemu-nbd")
	if err != nil {
		t.Fatal("qemu-nbd (qemu-utils, scripts/deps.txt) is needed to check QEMU's lock bytes")
	}
	p := image(t)
	dir := filepath.Dir(p)
	pidFile := filepath.Join(dir, "qemu-nbd.pid")
	// --fork returns once the server holds the image.
	out, err := exec.Command(qemuNBD, "--fork", "--pid-file", pidFile, "--socket", filepath.Join(dir, "nbd.sock"), "-f", "raw", p).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-nbd: %v %s", err, out)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGTERM) })
	_, err = open(t, p, readWrite)
	var inUse *InUseError
	if !errors.As(err, &inUse) || len(inUse.Holders) != 1 || inUse.Holders[0].PID != pid || !inUse.Holders[0].Mode.Write {
		t.Fatalf("beside qemu-nbd %d: %v (holders %+v)", pid, err, inUse)
	}
	if _, err := open(t, p, sharedRW); err != nil {
		t.Fatalf("a shared writer beside qemu-nbd, which shares writes: %v", err)
	}

	q := image(t)
	if _, err := open(t, q, readWrite); err != nil {
		t.Fatal(err)
	}
	pidFile2 := filepath.Join(dir, "qemu-nbd2.pid")
	out, err = exec.Command(qemuNBD, "--fork", "--pid-file", pidFile2, "--socket", filepath.Join(dir, "nbd2.sock"), "-f", "raw", q).CombinedOutput()
	if err == nil {
		if b, err := os.ReadFile(pidFile2); err == nil {
			pid2, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			syscall.Kill(pid2, syscall.SIGTERM)
		}
		t.Fatal("qemu-nbd started on an image a xenblk writer holds")
	}
	if !strings.Contains(string(out), "lock") {
		t.Errorf("qemu-nbd refused, but not for the lock: %s", out)
	}
}

// inFlight locks a new open of img in mode m, then leaves that open file
// description in flight in a unix socket (SCM_RIGHTS) with no process
// holding it: a stand-in for a killed backend's file that its io_uring
// keeps for a moment after the process is gone. Calling the returned
// function receives and closes it, which drops the lock.
func inFlight(t *testing.T, img string, m Mode) (drop func()) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := Acquire(f, img, m); err != nil {
		t.Fatal(err)
	}
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Sendmsg(pair[0], []byte{0}, syscall.UnixRights(int(f.Fd())), nil, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dropped := false
	drop = func() {
		if dropped {
			return
		}
		dropped = true
		buf, oob := make([]byte, 1), make([]byte, syscall.CmsgSpace(4))
		_, oobn, _, _, err := syscall.Recvmsg(pair[1], buf, oob, 0)
		if err == nil {
			if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
				if fds, err := syscall.ParseUnixRights(&msgs[0]); err == nil {
					for _, fd := range fds {
						syscall.Close(fd)
					}
				}
			}
		}
		syscall.Close(pair[0])
		syscall.Close(pair[1])
	}
	t.Cleanup(drop)
	return drop
}

// TestInvisibleHolderIsWaitedFor: a lock no process shows (its file
// outlived its process) is waited for, within a bound, and the open goes
// through once it is let go; one never let go is reported after the bound,
// saying so.
func TestInvisibleHolderIsWaitedFor(t *testing.T) {
	img := image(t)
	drop := inFlight(t, img, readWrite)
	retries := 0
	retryHook = func() {
		retries++
		if retries == 3 {
			drop()
		}
	}
	defer func() { retryHook = nil }()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Acquire(f, img, readWrite); err != nil {
		t.Fatalf("after the invisible holder let go: %v", err)
	}
	if retries < 3 {
		t.Fatalf("Acquire did not wait for the invisible holder (%d retries)", retries)
	}

	img2 := image(t)
	inFlight(t, img2, readWrite)
	retryHook = nil
	defer func(g time.Duration) { invisibleHolderGrace = g }(invisibleHolderGrace)
	invisibleHolderGrace = 50 * time.Millisecond
	g, err := os.OpenFile(img2, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	err = Acquire(g, img2, readOnly)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "did not let go within 50ms") {
		t.Fatalf("an invisible holder that stays: %v", err)
	}
}
