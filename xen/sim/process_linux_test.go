package sim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/xen"
)

// The multi-process tests re-exec the test binary as a domain process: the
// environment names its role and the host's socket, TestMain runs the role
// and exits. The child talks to the parent over stdout (one JSON line) and
// stdin.

const (
	envRole   = "XENBLK_SIM_CHILD"
	envSocket = "XENBLK_SIM_SOCKET"
	envRounds = "XENBLK_SIM_ROUNDS"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		if err := runChild(role, os.Getenv(envSocket)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childHello is what a child tells the parent once it is set up.
type childHello struct {
	Dom  xen.DomID
	Refs []xen.GrantRef
	Port xen.Port
}

func runChild(role, socket string) error {
	if role == "rofault" {
		return readOnlyFault()
	}
	d, err := Connect(socket, NewGuest("child-"+role))
	if err != nil {
		return err
	}
	say := func(h childHello) { json.NewEncoder(os.Stdout).Encode(h) }
	in := bufio.NewReader(os.Stdin)
	switch role {
	case "grant":
		gr, err := d.Granter().Grant(0, 2, false)
		if err != nil {
			return err
		}
		copy(gr.Mem, "hello from the child")
		say(childHello{Dom: d.ID(), Refs: gr.Refs})
		if _, err := in.ReadString('\n'); err != nil {
			return err
		}
		if got := string(gr.Mem[xen.PageSize : xen.PageSize+21]); got != "hello from the parent" {
			return fmt.Errorf("child sees %q in page 1", got)
		}
		// The parent has unmapped: the grant must now revoke.
		if err := d.Granter().Revoke(gr); err != nil {
			return err
		}
		say(childHello{Dom: d.ID()})
		_, _ = in.ReadString('\n')
		return d.Close()
	case "pingpong", "relay":
		ch, err := d.Events().AllocUnbound(0)
		if err != nil {
			return err
		}
		rounds, _ := strconv.Atoi(os.Getenv(envRounds))
		say(childHello{Dom: d.ID(), Port: ch.Port()})
		answer, finish := ch.Notify, func() error { return nil }
		if role == "relay" {
			answer, finish = relayed(ch.Notify)
		}
		for i := 0; i < rounds; i++ {
			ok, err := ch.Wait(10 * time.Second)
			if err != nil || !ok {
				return fmt.Errorf("%s %d: signalled %v, %v", role, i, ok, err)
			}
			if err := answer(); err != nil {
				return err
			}
		}
		if err := finish(); err != nil {
			return err
		}
		_, _ = in.ReadString('\n')
		return d.Close()
	case "victim":
		ch, err := d.Events().AllocUnbound(0)
		if err != nil {
			return err
		}
		gr, err := d.Granter().Grant(0, 1, false)
		if err != nil {
			return err
		}
		copy(gr.Mem, "still here")
		say(childHello{Dom: d.ID(), Refs: gr.Refs, Port: ch.Port()})
		select {} // until SIGKILL
	}
	return fmt.Errorf("unknown role %q", role)
}

// relayed answers with notify from another goroutine, as blkfront's
// event goroutine hands a wake-up to the goroutine of the request: hand
// passes one wake-up on; finish waits for every answer and reports the
// first failure.
func relayed(notify func() error) (hand, finish func() error) {
	woken := make(chan struct{})
	answered := make(chan error, 1)
	go func() {
		var first error
		for range woken {
			if err := notify(); err != nil && first == nil {
				first = err
			}
		}
		answered <- first
	}()
	hand = func() error { woken <- struct{}{}; return nil }
	finish = func() error { close(woken); return <-answered }
	return hand, finish
}

// readOnlyFault writes into a read-only mapping of a read-only grant. With
// SIGSEGV's default disposition restored (the Go runtime would turn the
// fault into a panic), the kernel kills the process with SIGSEGV: the
// proof that the page is mapped without write permission.
func readOnlyFault() error {
	h, err := NewHost()
	if err != nil {
		return err
	}
	g, err := h.NewDomain("ro")
	if err != nil {
		return err
	}
	gr, err := g.Granter().Grant(0, 1, true)
	if err != nil {
		return err
	}
	m, err := h.Dom0().Mapper().Map(g.ID(), gr.Refs, true)
	if err != nil {
		return err
	}
	var dfl [4]uint64 // struct sigaction, all zero: SIG_DFL
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGSEGV), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0); e != 0 {
		return e
	}
	m.Bytes()[100] = 1
	return errors.New("a write to a read-only mapping did not fault")
}

type child struct {
	cmd   *exec.Cmd
	hello childHello
	in    *os.File
	out   *bufio.Reader
}

func startChild(t testing.TB, socket, role string, extraEnv ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"="+role, envSocket+"="+socket)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := &child{cmd: cmd, in: stdin.(*os.File), out: bufio.NewReader(stdout)}
	c.hello = c.next(t)
	return c
}

func (c *child) next(t testing.TB) childHello {
	t.Helper()
	line, err := c.out.ReadBytes('\n')
	if err != nil {
		t.Fatalf("child said nothing: %v", err)
	}
	var h childHello
	if err := json.Unmarshal(line, &h); err != nil {
		t.Fatalf("child said %q: %v", line, err)
	}
	return h
}

func (c *child) wait(t testing.TB) {
	t.Helper()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child failed: %v", err)
	}
}

// startHost runs a host serving a socket in a temporary directory.
func startHost(t testing.TB) (*Host, string) {
	t.Helper()
	h, err := NewHost()
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "host.sock")
	l, err := Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	go h.Serve(l)
	t.Cleanup(func() { l.Close() })
	return h, socket
}

func TestCrossProcessGrants(t *testing.T) {
	h, socket := startHost(t)
	// dom0 as a separate process would be the same code; here the parent
	// attaches as dom0 over the socket too, so both ends are remote.
	d0, err := Connect(socket, AsDom0())
	if err != nil {
		t.Fatal(err)
	}
	defer d0.Close()
	if _, err := Connect(socket, AsDom0()); err == nil {
		t.Fatal("a second dom0 process was attached")
	}
	c := startChild(t, socket, "grant")
	if _, ok := h.Domain(c.hello.Dom); !ok || c.hello.Dom == 0 {
		t.Fatalf("child got domain %d", c.hello.Dom)
	}
	// A grant copy reaches the child's page through this process's copy
	// window onto the child's memory.
	got := make([]byte, 20)
	if err := d0.Mapper().Copy([]xen.GrantCopySegment{{Dom: c.hello.Dom, Ref: c.hello.Refs[0], Local: got}}); err != nil || string(got) != "hello from the child" {
		t.Fatalf("grant copy from the child: %v %q", err, got)
	}
	m, err := d0.Mapper().Map(c.hello.Dom, c.hello.Refs, false)
	if err != nil {
		t.Fatal(err)
	}
	b := m.Bytes()
	if got := string(b[:20]); got != "hello from the child" {
		t.Fatalf("parent sees %q", got)
	}
	copy(b[xen.PageSize:], "hello from the parent")
	if err := m.Unmap(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(c.in, "go")
	c.next(t) // revoked
	if _, err := d0.Mapper().Map(c.hello.Dom, c.hello.Refs[:1], true); !errors.Is(err, xen.ErrBadGrant) {
		t.Fatalf("map after revoke: %v", err)
	}
	fmt.Fprintln(c.in, "bye")
	c.wait(t)
}

// startPingPong attaches this process to a new host as dom0 and binds to
// a child guest (role pingpong or relay) that answers rounds
// notifications on the channel, then waits for "bye" on its stdin.
func startPingPong(t testing.TB, role string, rounds int) (xen.Channel, *child) {
	t.Helper()
	_, socket := startHost(t)
	d0, err := Connect(socket, AsDom0())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d0.Close() })
	c := startChild(t, socket, role, envRounds+"="+strconv.Itoa(rounds))
	ch, err := d0.Events().BindInterdomain(c.hello.Dom, c.hello.Port)
	if err != nil {
		t.Fatal(err)
	}
	return ch, c
}

func TestCrossProcessPingPong(t *testing.T) {
	rounds := 1_000_000
	if testing.Short() {
		rounds = 100_000
	}
	ch, c := startPingPong(t, "pingpong", rounds)
	start := time.Now()
	for i := 0; i < rounds; i++ {
		if err := ch.Notify(); err != nil {
			t.Fatal(err)
		}
		ok, err := ch.Wait(10 * time.Second)
		if err != nil || !ok {
			t.Fatalf("ping %d lost: signalled %v, %v", i, ok, err)
		}
	}
	t.Logf("%d round trips in %v", rounds, time.Since(start))
	fmt.Fprintln(c.in, "bye")
	c.wait(t)
	// The child closed its domain: our end reports it.
	if ok, err := ch.Wait(5 * time.Second); !errors.Is(err, xen.ErrClosed) {
		t.Fatalf("after the peer left: %v %v", ok, err)
	}
}

func TestSIGKILLedGuestIsReleased(t *testing.T) {
	h, socket := startHost(t)
	d0 := h.Dom0()
	releases, err := d0.Store().Watch("@releaseDomain", "r")
	if err != nil {
		t.Fatal(err)
	}
	defer releases.Close()
	<-releases.Events() // the registration event
	c := startChild(t, socket, "victim")
	dom := c.hello.Dom
	home := fmt.Sprintf("/local/domain/%d", dom)
	if name, err := d0.Store().Read(home + "/name"); err != nil || name != "child-victim" {
		t.Fatalf("the guest's store area: %q %v", name, err)
	}
	ch, err := d0.Events().BindInterdomain(dom, c.hello.Port)
	if err != nil {
		t.Fatal(err)
	}
	m, err := d0.Mapper().Map(dom, c.hello.Refs, true)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { _, err := ch.Wait(0); waited <- err }()

	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if !errors.Is(err, xen.ErrClosed) {
			t.Fatalf("peer channel after SIGKILL: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a Wait on the dead guest's channel did not wake")
	}
	select {
	case <-releases.Events():
	case <-time.After(5 * time.Second):
		t.Fatal("@releaseDomain did not fire")
	}
	if _, err := d0.Store().Read(home); !errors.Is(err, xen.ErrNotFound) {
		t.Fatalf("the dead guest's store area: %v", err)
	}
	if err := ch.Notify(); !errors.Is(err, xen.ErrClosed) {
		t.Fatalf("notify towards the dead guest: %v", err)
	}
	// Its page stays mapped and readable until we unmap, as on Xen.
	if got := string(m.Bytes()[:10]); got != "still here" {
		t.Fatalf("the dead guest's mapped page reads %q", got)
	}
	if err := m.Unmap(); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.Domain(dom); ok {
		t.Fatal("the dead guest is still a domain")
	}
	if _, err := d0.Mapper().Map(dom, c.hello.Refs, true); err == nil {
		t.Fatal("mapped a dead domain's grant after release")
	}
}

func TestReadOnlyMappingFaults(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"=rofault")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: %v\n%s", err, out)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGSEGV {
		t.Fatalf("child ended with %v, want death by SIGSEGV\n%s", ws, out)
	}
}

// TestListenLeavesALiveHostAlone: a second host given a live host's
// socket is refused, and the live host still takes domains; a stale
// socket file is replaced; a path that is not a socket is refused.
func TestListenLeavesALiveHostAlone(t *testing.T) {
	_, socket := startHost(t)
	if l, err := Listen(socket); !errors.Is(err, ErrInUse) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("Listen on a live host's socket: %v, want ErrInUse", err)
	}
	d, err := Connect(socket, AsDom0())
	if err != nil {
		t.Fatalf("the live host after a refused Listen: %v", err)
	}
	d.Close()

	stale := filepath.Join(t.TempDir(), "stale.sock")
	sl, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: stale, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	sl.SetUnlinkOnClose(false)
	sl.Close()
	l, err := Listen(stale)
	if err != nil {
		t.Fatalf("Listen on a stale socket: %v", err)
	}
	l.Close()

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := Listen(file); err == nil {
		l.Close()
		t.Fatal("Listen on a regular file succeeded")
	}
}
