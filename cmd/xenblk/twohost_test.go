package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/etcdtest"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/nbd"
)

// twoHostLease is the lease every serve of these tests runs with: short,
// so that a PREEMPT's hold and a cut-off host's fail-closed cost the
// tests little.
const twoHostLease = 1 * time.Second

// cutProxy forwards TCP connections to target until it is cut: then it
// closes every connection and refuses new ones, as a network partition
// between one host and the etcd cluster would, until it is mended. It can
// also hold one direction: the bytes keep arriving and are swallowed, never
// delivered, as on a link that dies with a request or its answer on it.
type cutProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	mode   proxyMode
	conns  map[net.Conn]bool
	held   bytes.Buffer // requests swallowed while holdingRequests
}

// proxyMode is what a cutProxy does with connections and their bytes.
type proxyMode int

const (
	forwarding      proxyMode = iota
	cutOff                    // no connection, none accepted
	holdingRequests           // the client's bytes never reach etcd
	holdingAnswers            // etcd's bytes never reach the client
)

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		l.Close()
		p.setCut(true)
	})
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *cutProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.mode == cutOff {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { p.pump(up, c, holdingRequests); up.Close(); c.Close() }()
	p.pump(c, up, holdingAnswers)
	c.Close()
	up.Close()
}

// pump copies src to dst until either fails, swallowing what arrives
// while the proxy is in mode hold (kept, for requests).
func (p *cutProxy) pump(dst, src net.Conn, hold proxyMode) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			held := p.mode == hold
			if held && hold == holdingRequests {
				p.held.Write(buf[:n])
			}
			p.mu.Unlock()
			if !held {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *cutProxy) setCut(cut bool) {
	if cut {
		p.setMode(cutOff)
	} else {
		p.setMode(forwarding)
	}
}

// setMode changes what the proxy does from now on. Cutting, or leaving a
// hold, closes every connection: a stream that lost bytes must not go on.
func (p *cutProxy) setMode(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m == cutOff || p.mode == holdingRequests || p.mode == holdingAnswers {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
	p.mode = m
	p.held.Reset()
}

// heldContains reports whether the requests swallowed since the hold
// began contain s.
func (p *cutProxy) heldContains(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Contains(p.held.Bytes(), []byte(s))
}

func (p *cutProxy) addr() string { return p.l.Addr().String() }

// simHost is one simulated Xen host of a two-host cluster: its `xenblk
// host`, its `xenblk serve` on the shared reservation store.
type simHost struct {
	bin, dir, sock, xs, store string
	lease                     time.Duration
	serve                     *proc
}

func startSimHost(t *testing.T, bin, dir, store string, lease time.Duration) *simHost {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := &simHost{bin: bin, dir: dir, sock: filepath.Join(dir, "host.sock"), xs: filepath.Join(dir, "xenstored"), store: store, lease: lease}
	startProc(t, bin, "host", "--socket", h.sock, "--xenstored", h.xs)
	waitFile(t, h.sock)
	h.startServe(t)
	return h
}

func (h *simHost) startServe(t *testing.T) {
	t.Helper()
	h.serve = startProc(t, h.bin, "serve", "--host", h.sock, "--pr-store", h.store, "--pr-lease", h.lease.String(),
		"--journal-dir", filepath.Join(h.dir, "journal"))
	h.serve.expect(t, "xenblk serve:")
}

// guest is a guest of a simHost: a front whose disk xvda is the shared
// image, named initiator on every host, with its NBD export and control
// socket.
type guest struct {
	name, ctl string
	device    string // the control socket's name for the disk
	front     *proc
	domid     int
	disk      *nbd.Client
}

func (h *simHost) guest(t *testing.T, name, img string) *guest {
	t.Helper()
	g := &guest{name: name, ctl: filepath.Join(h.dir, name+".sock"), device: "xvda"}
	g.front = startProc(t, h.bin, "front", "--host", h.sock, "--name", name, "--nbd", freePort(t), "--control", g.ctl)
	fmt.Sscanf(g.front.expect(t, "domain "), "domain %d", &g.domid)
	spec := "format=raw, vdev=xvda, access=rw, shared=1, initiator=" + name + ", target=" + img
	if out, err := exec.Command(h.bin, "attach", "--xenstore", h.xs, "--domain", fmt.Sprint(g.domid), spec).CombinedOutput(); err != nil {
		t.Fatalf("attach %s: %v %s", name, err, out)
	}
	url := strings.TrimPrefix(g.front.expect(t, "NBD "), "NBD ")
	d, err := nbd.Dial(url, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	g.disk = d
	return g
}

// vscsiGuest is a guest given pdev (an image or an NBD URL) over PVSCSI
// at 0:0:0:0, named initiator on every host.
func (h *simHost) vscsiGuest(t *testing.T, name, pdev string) *guest {
	t.Helper()
	front, domid, ctl, url := startFrontVhost(t, h.bin, h.sock, h.xs, h.dir, name, pdev, ", shared=1, initiator="+name)
	d, err := nbd.Dial(url, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &guest{name: name, ctl: ctl, device: "0:0:0:0", front: front, domid: domid, disk: d}
}

func (g *guest) write() error {
	_, err := g.disk.WriteAt(make([]byte, 4096), 8192)
	return err
}

// writeAdmitted waits (10 s at most) for g's write to be admitted.
func (g *guest) writeAdmitted(t *testing.T, what string) {
	t.Helper()
	var err error
	if !eventually.Within(10*time.Second, func() bool { err = g.write(); return err == nil }) {
		t.Fatalf("%s: still refused after 10s: %v", what, err)
	}
}

func (g *guest) read() error {
	_, err := g.disk.ReadAt(make([]byte, 4096), 8192)
	return err
}

// persist runs `xenblk scsi persist ARGS` as g, past the unit attentions
// a nexus sees first, and returns its output and exit code.
func (g *guest) persist(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	args = append([]string{"scsi", "--control", g.ctl, "--device", g.device, "persist"}, args...)
	var out, errs string
	var code int
	for range 4 {
		out, errs, code = runXenblkCode(t, bin, args...)
		if !strings.Contains(out, "Unit Attention") {
			break
		}
	}
	return out + errs, code
}

func (g *guest) mustPersist(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, code := g.persist(t, bin, args...)
	if code != 0 {
		t.Fatalf("%s: xenblk scsi persist %s: exit %d\n%s", g.name, strings.Join(args, " "), code, out)
	}
	return out
}

// twoHosts starts an etcd cluster of three members, two simulated hosts
// whose serves keep reservations in it (host 1 reaches it through a
// proxy the test can cut) and a guest on each, node-a on host 1 and
// node-b on host 2, sharing one image.
func twoHosts(t *testing.T, lease time.Duration) (bin string, etcd *etcdtest.Cluster, cut *cutProxy, h1, h2 *simHost, a, b *guest) {
	t.Helper()
	bin = buildXenblk(t)
	etcd = etcdtest.Start(t, 3)
	cut = newCutProxy(t, etcd.Endpoints()[0])
	dir := t.TempDir()
	img := filepath.Join(dir, "cluster.img")
	newImage(t, img, 16<<20)
	h1 = startSimHost(t, bin, filepath.Join(dir, "h1"), "etcd://"+cut.addr(), lease)
	h2 = startSimHost(t, bin, filepath.Join(dir, "h2"), etcd.URL(), lease)
	a, b = h1.guest(t, "node-a", img), h2.guest(t, "node-b", img)
	return
}

// Linux's fence_scsi across two hosts: node-b, on host 2, fences node-a,
// on host 1. The moment B's PREEMPT (and later PREEMPT AND ABORT)
// completes, A's writes are refused on host 1: no waiting, that is the
// fencing bound (docs/PROTOCOL.md, "Fencing across hosts"). One etcd
// member is killed on the way; quorum holds and no guest notices.
func TestFenceSCSIAcrossHosts(t *testing.T) {
	bin, etcd, _, _, _, a, b := twoHosts(t, twoHostLease)
	a.mustPersist(t, bin, "-o", "-I", "-S", "0xa1", "-Z")
	b.mustPersist(t, bin, "-o", "-I", "-S", "0xb1", "-Z")
	a.mustPersist(t, bin, "-o", "-R", "-K", "0xa1", "-T", "5")
	if out := b.mustPersist(t, bin, "-i", "-r"); !strings.Contains(out, "Key=0xa1") || !strings.Contains(out, "registrants only") {
		t.Fatalf("READ RESERVATION on host 2:\n%s", out)
	}
	// One member of three killed: quorum holds, nothing changes for the
	// guests (host 1 reaches etcd through member 0 alone).
	etcd.Stop(2)
	if err := a.write(); err != nil {
		t.Fatalf("holder A's write: %v", err)
	}
	if err := b.write(); err != nil {
		t.Fatalf("registrant B's write: %v", err)
	}
	b.mustPersist(t, bin, "-o", "-P", "-K", "0xb1", "-S", "0xa1", "-T", "5")
	if err := a.write(); err == nil {
		t.Fatal("host 1 admitted fenced A's write after B's PREEMPT completed on host 2")
	}
	if err := a.read(); err != nil {
		t.Fatalf("fenced A's read under WERO: %v", err)
	}
	if err := b.write(); err != nil {
		t.Fatalf("survivor B's write: %v", err)
	}
	if out := a.mustPersist(t, bin, "-i", "-k"); strings.Contains(out, "0xa1") || !strings.Contains(out, "0xb1") {
		t.Fatalf("keys read on host 1 after the preempt:\n%s", out)
	}
	a.mustPersist(t, bin, "-o", "-I", "-S", "0xa2", "-Z")
	b.mustPersist(t, bin, "-o", "-A", "-K", "0xb1", "-S", "0xa2", "-T", "5")
	if err := a.write(); err == nil {
		t.Fatal("host 1 admitted A's write after B's PREEMPT AND ABORT completed on host 2")
	}
}

// The Windows failover cluster validation's sequence across two hosts:
// register, clear, register again, reserve, preempt from the other host,
// release, clear, with READ FULL STATUS naming each node by its
// initiator whatever host serves it.
func TestWindowsClusterValidationAcrossHosts(t *testing.T) {
	bin, _, _, _, _, a, b := twoHosts(t, twoHostLease)
	a.mustPersist(t, bin, "-o", "-I", "-S", "0xa1")
	b.mustPersist(t, bin, "-o", "-I", "-S", "0xb2")
	a.mustPersist(t, bin, "-o", "-C", "-K", "0xa1")
	if out := b.mustPersist(t, bin, "-i", "-k"); strings.Contains(out, "0xb2") {
		t.Fatalf("keys on host 2 after A's CLEAR on host 1:\n%s", out)
	}
	a.mustPersist(t, bin, "-o", "-I", "-S", "0xa1")
	b.mustPersist(t, bin, "-o", "-I", "-S", "0xb2")
	a.mustPersist(t, bin, "-o", "-R", "-K", "0xa1", "-T", "5")
	if out := b.mustPersist(t, bin, "-i", "-r"); !strings.Contains(out, "Key=0xa1") {
		t.Fatalf("READ RESERVATION on host 2:\n%s", out)
	}
	b.mustPersist(t, bin, "-o", "-P", "-K", "0xb2", "-S", "0xa1", "-T", "5")
	if out := b.mustPersist(t, bin, "-i", "-k"); strings.Contains(out, "0xa1") || !strings.Contains(out, "0xb2") {
		t.Fatalf("keys on host 2 after the preempt:\n%s", out)
	}
	if out := a.mustPersist(t, bin, "-i", "-r"); !strings.Contains(out, "Key=0xb2") {
		t.Fatalf("READ RESERVATION on host 1 after the preempt:\n%s", out)
	}
	if err := a.write(); err == nil {
		t.Fatal("preempted A's write admitted on host 1")
	}
	if err := a.read(); err != nil {
		t.Fatalf("preempted A's read under WERO: %v", err)
	}
	if out, code := a.persist(t, bin, "-o", "-G", "-K", "0xa1", "-S", "0xa1"); code != exitConflict || !strings.Contains(out, "RESERVATION CONFLICT") {
		t.Fatalf("A registering with its preempted key: exit %d\n%s", code, out)
	}
	full := a.mustPersist(t, bin, "-i", "-s")
	if !strings.Contains(full, "(xen:vm:node-b:51712)") || !strings.Contains(full, "<< Reservation holder >>") || strings.Contains(full, "node-a") {
		t.Fatalf("READ FULL STATUS on host 1:\n%s", full)
	}
	b.mustPersist(t, bin, "-o", "-L", "-K", "0xb2", "-T", "5")
	// A change that admits (a RELEASE, a CLEAR) reaches the other host
	// through its watch: until then that host refuses on its older copy,
	// which is never unsafe; the bound is the watch's lag.
	a.writeAdmitted(t, "A's write after B's RELEASE on the other host")
	b.mustPersist(t, bin, "-o", "-C", "-K", "0xb2")
	if out := a.mustPersist(t, bin, "-i", "-k"); !strings.Contains(out, "NO registered reservation keys") {
		t.Fatalf("keys on host 1 after B's CLEAR:\n%s", out)
	}
}

// A guest that moves: node-a registers on host 1, its disk is detached
// there and attached on host 2 (its initiator with it); its
// registration is still its own there, and it reserves with its key.
func TestGuestKeepsItsRegistrationAcrossHosts(t *testing.T) {
	bin, _, _, h1, h2, a, _ := twoHosts(t, twoHostLease)
	a.mustPersist(t, bin, "-o", "-I", "-S", "0xa1")
	a.disk.Close()
	if out, err := exec.Command(bin, "detach", "--xenstore", h1.xs, "--domain", fmt.Sprint(a.domid), "xvda", "--timeout", "30s").CombinedOutput(); err != nil {
		t.Fatalf("detach on host 1: %v %s", err, out)
	}
	moved := h2.guest(t, "node-a", filepath.Join(filepath.Dir(h1.dir), "cluster.img"))
	moved.mustPersist(t, bin, "-o", "-R", "-K", "0xa1", "-T", "5")
	if out := moved.mustPersist(t, bin, "-i", "-s"); !strings.Contains(out, "(xen:vm:node-a:51712)") || !strings.Contains(out, "<< Reservation holder >>") {
		t.Fatalf("READ FULL STATUS on host 2:\n%s", out)
	}
	if err := moved.write(); err != nil {
		t.Fatalf("the moved holder's write: %v", err)
	}
}

// A host cut off from etcd: its guest's writes go on for at most a lease,
// then stop (the host fails closed and says so); its PR commands fail
// with a CHECK CONDITION; the other host is untouched; all comes back
// when the host reaches etcd again.
func TestHostCutOffFromEtcdFailsClosed(t *testing.T) {
	bin, _, cut, h1, _, a, b := twoHosts(t, twoHostLease)
	a.mustPersist(t, bin, "-o", "-I", "-S", "0xa1")
	a.mustPersist(t, bin, "-o", "-R", "-K", "0xa1", "-T", "5")
	if err := a.write(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cut.setCut(true)
	eventually.True(t, 30*time.Second, "host 1 refuses A's writes once cut off", func() bool { return a.write() != nil })
	// The bound: the last renewal before the cut was at most a lease
	// earlier; the margin is for a loaded machine's scheduling.
	if took := time.Since(start); took > twoHostLease+2*time.Second {
		t.Errorf("A's writes went on for %v after the cut; the lease is %v", took, twoHostLease)
	}
	if err := b.read(); err != nil {
		t.Fatalf("host 2's guest, not cut off: %v", err)
	}
	if out, code := a.persist(t, bin, "-o", "-R", "-K", "0xa1", "-T", "5"); code != exitConflict || !strings.Contains(out, "Hardware Error") {
		t.Fatalf("RESERVE on the cut-off host: exit %d\n%s", code, out)
	}
	eventually.True(t, 10*time.Second, "host 1 logs that it fails closed", func() bool {
		return strings.Contains(h1.serve.errb.String(), "refusing reads and writes that depend on the reservation")
	})
	cut.setCut(false)
	eventually.True(t, 60*time.Second, "host 1 admits A's writes again once it reaches etcd", func() bool { return a.write() == nil })
}

// serve SIGKILLed in the middle of a PREEMPT AND ABORT: node-a, on host
// 1, preempts node-b, the holder, on host 2, and host 1's serve is killed
// at one point of the operation. At every point the operation happened
// either everywhere or nowhere: while host 1 is down, host 2 shows the
// state from before the command if its compare-and-swap never reached
// etcd, the state after it if it did; once host 1's serve is back, the
// two hosts agree on one state, before or after, and the guest's status
// does not contradict it (GOOD only with the state after).
func TestServeKilledDuringPreemptAndAbort(t *testing.T) {
	const (
		before = "0xa1 0xb1*" // node-b holds, both registered
		after  = "0xa1*"      // node-a holds, node-b's key gone
	)
	fenced := func(_ *cutProxy, b *guest) bool { return b.write() != nil }
	for _, kill := range []struct {
		name string
		link proxyMode // host 1's link to etcd while the command runs
		// reached reports the command has come to the kill point.
		reached func(cut *cutProxy, b *guest) bool
		stored  bool // whether etcd holds the preempt at the kill
	}{
		// The compare-and-swap is on its way: its put (the record, whose
		// JSON names Written) left serve and waits in the proxy.
		{"before the CAS reached etcd", holdingRequests, func(cut *cutProxy, _ *guest) bool { return cut.heldContains(`"Written":`) }, false},
		// etcd stored it (host 2 fenced node-b through its watch) and
		// its answer never reached host 1.
		{"after etcd stored the CAS, its answer lost", holdingAnswers, fenced, true},
		// Answered, and host 1 holds the command's completion until
		// every host has seen the change.
		{"during the hold", forwarding, fenced, true},
	} {
		t.Run(kill.name, func(t *testing.T) {
			// A long lease: the kill lands well within the PREEMPT's hold
			// and before host 1's lease runs out while its link is held.
			bin, _, cut, h1, _, a, b := twoHosts(t, 8*time.Second)
			b.mustPersist(t, bin, "-o", "-I", "-S", "0xb1")
			a.mustPersist(t, bin, "-o", "-I", "-S", "0xa1")
			b.mustPersist(t, bin, "-o", "-R", "-K", "0xb1", "-T", "5")
			if got := reservationState(t, bin, a); got != before {
				t.Fatalf("state before the command: %s, want %s", got, before)
			}
			cut.setMode(kill.link)
			var out bytes.Buffer
			preempt := exec.Command(bin, "scsi", "--control", a.ctl, "--device", "xvda", "persist", "-o", "-A", "-K", "0xa1", "-S", "0xb1", "-T", "5")
			preempt.Stdout, preempt.Stderr = &out, &out
			if err := preempt.Start(); err != nil {
				t.Fatal(err)
			}
			preempted := make(chan struct{})
			go func() {
				preempt.Wait()
				close(preempted)
			}()
			t.Cleanup(func() {
				preempt.Process.Kill()
				<-preempted
			})
			eventually.True(t, 30*time.Second, "the PREEMPT AND ABORT comes "+kill.name, func() bool { return kill.reached(cut, b) })
			select {
			case <-preempted:
				t.Fatalf("the PREEMPT AND ABORT completed before serve could be killed %s:\n%s", kill.name, out.String())
			default:
			}
			h1.serve.cmd.Process.Signal(syscall.SIGKILL)
			h1.serve.cmd.Wait()
			cut.setMode(forwarding)

			want, bWrites := before, true
			if kill.stored {
				want, bWrites = after, false
			}
			if got := reservationState(t, bin, b); got != want {
				t.Fatalf("host 2 with host 1's serve killed %s: state %s, want %s", kill.name, got, want)
			}
			if err := b.write(); (err == nil) != bWrites {
				t.Fatalf("node-b's write on host 2 with the state %s: %v", want, err)
			}

			h1.startServe(t)
			select {
			case <-preempted:
			case <-time.After(2 * time.Minute):
				t.Fatalf("the guest's PREEMPT AND ABORT had no status 2 minutes after serve came back")
			}
			fromA, fromB := reservationState(t, bin, a), reservationState(t, bin, b)
			if fromA != fromB || (fromA != before && fromA != after) {
				t.Fatalf("after the restart host 1 shows %s, host 2 %s; want both %s or both %s", fromA, fromB, before, after)
			}
			if preempt.ProcessState.ExitCode() == 0 && fromA != after {
				t.Fatalf("the guest's PREEMPT AND ABORT was GOOD, and the state is %s:\n%s", fromA, out.String())
			}
			t.Logf("killed %s: the state settled %s; the guest's command: exit %d %s", kill.name, fromA, preempt.ProcessState.ExitCode(), strings.TrimSpace(out.String()))
			if err := b.write(); (err == nil) != (fromA == before) {
				t.Fatalf("node-b's write with the state %s: %v", fromA, err)
			}
			if err := a.write(); err != nil {
				t.Fatalf("node-a's write, registered in either state: %v", err)
			}
		})
	}
}

// reservationState is READ FULL STATUS as g sees it, summed up: the
// registered keys in order, the holder's starred.
func reservationState(t *testing.T, bin string, g *guest) string {
	t.Helper()
	full := g.mustPersist(t, bin, "-i", "-s")
	var keys []string
	for _, d := range strings.Split(full, "Key=")[1:] {
		key, _, _ := strings.Cut(d, "\n")
		if strings.Contains(d, "<< Reservation holder >>") {
			key += "*"
		}
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return strings.Join(keys, " ")
}

// fenceAcross runs fence_scsi's sequence: b, on one host, fences a, on
// the other; the moment each preempt completes a's writes are refused.
func fenceAcross(t *testing.T, bin string, a, b *guest) {
	t.Helper()
	a.mustPersist(t, bin, "-o", "-I", "-S", "0xa1", "-Z")
	b.mustPersist(t, bin, "-o", "-I", "-S", "0xb1", "-Z")
	a.mustPersist(t, bin, "-o", "-R", "-K", "0xa1", "-T", "5")
	if err := a.write(); err != nil {
		t.Fatalf("holder %s's write: %v", a.name, err)
	}
	b.mustPersist(t, bin, "-o", "-P", "-K", "0xb1", "-S", "0xa1", "-T", "5")
	if err := a.write(); err == nil {
		t.Fatalf("%s's write admitted after %s's PREEMPT completed on the other host", a.name, b.name)
	}
	if err := b.write(); err != nil {
		t.Fatalf("survivor %s's write: %v", b.name, err)
	}
	a.mustPersist(t, bin, "-o", "-I", "-S", "0xa2", "-Z")
	b.mustPersist(t, bin, "-o", "-A", "-K", "0xb1", "-S", "0xa2", "-T", "5")
	if err := a.write(); err == nil {
		t.Fatalf("%s's write admitted after %s's PREEMPT AND ABORT completed on the other host", a.name, b.name)
	}
}

// The same fencing over PVSCSI, the shared disk an NBD export of
// nbdkit's memory plugin that each host's serve opens through its NBD
// client (storage's NBD device).
func TestFenceSCSIAcrossHostsOnNbdkit(t *testing.T) {
	nbdkit := needTool(t, "nbdkit")
	bin := buildXenblk(t)
	etcd := etcdtest.Start(t, 3)
	dir := t.TempDir()
	port := strings.TrimPrefix(freePort(t), "127.0.0.1:")
	kit := exec.Command(nbdkit, "--foreground", "--exit-with-parent", "--ipaddr", "127.0.0.1", "--port", port, "memory", "16M")
	if err := kit.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kit.Process.Kill(); kit.Wait() })
	eventually.True(t, 30*time.Second, "nbdkit listening on "+port, func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	url := "nbd://127.0.0.1:" + port + "/"
	h1 := startSimHost(t, bin, filepath.Join(dir, "h1"), etcd.URL(), twoHostLease)
	h2 := startSimHost(t, bin, filepath.Join(dir, "h2"), etcd.URL(), twoHostLease)
	fenceAcross(t, bin, h1.vscsiGuest(t, "node-a", url), h2.vscsiGuest(t, "node-b", url))
}
