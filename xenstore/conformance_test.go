package xenstore_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenstore"
	"github.com/xenblk/xenblk/xenstore/wire"
)

// The conformance suite: one list of cases, each run against a fresh
// simulated host through two clients of the wire protocol, our own
// (package xenstore) and Debian's C tools (xenstore-utils). A case acts
// as dom0 or as a guest; each identity is a socket the host serves as that
// domain.

// actor is one domain's access to the store, through one client.
// Failures come back as Xen's error name; the C tools print no name, so
// their failures are "ERR" and a case compares names only when the
// client reports them (names()).
type actor interface {
	Read(p string) (string, string)
	Write(p, v string) string
	Rm(p string) string
	Ls(p string) ([]string, string)
	Chmod(p string, perms ...string) string
	Exists(p string) bool
	// Watch starts a watch and returns its event paths; stop ends it.
	Watch(p string) (events <-chan string, stop func())
	names() bool
}

type env struct {
	t      *testing.T
	h      *sim.Host
	g1, g2 xen.DomID
	dom0   actor
	guest1 actor
	admin  xen.Store // in-process dom0, for bulk setup

	dom0Socket string
}

type conformanceCase struct {
	name string
	run  func(e *env)
}

func expectErr(e *env, a actor, got, want, what string) {
	e.t.Helper()
	switch {
	case want == "" && got != "":
		e.t.Errorf("%s: failed with %s", what, got)
	case want != "" && got == "":
		e.t.Errorf("%s: succeeded, want %s", what, want)
	case want != "" && a.names() && got != want:
		e.t.Errorf("%s: error %s, want %s", what, got, want)
	}
}

func nextEvent(e *env, ch <-chan string, want string) {
	e.t.Helper()
	select {
	case got, ok := <-ch:
		if !ok {
			e.t.Fatalf("watch ended before the event %s", want)
		}
		if got != want {
			e.t.Fatalf("watch event %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		e.t.Fatalf("no watch event %s", want)
	}
}

var cases = []conformanceCase{
	{"read-write-remove", func(e *env) {
		_, err := e.dom0.Read("/cf/a")
		expectErr(e, e.dom0, err, wire.ENOENT, "read of a missing node")
		expectErr(e, e.dom0, e.dom0.Write("/cf/a/b", "hello world"), "", "write")
		if v, err := e.dom0.Read("/cf/a/b"); err != "" || v != "hello world" {
			e.t.Errorf("read back %q %s", v, err)
		}
		if !e.dom0.Exists("/cf/a") || e.dom0.Exists("/cf/zz") {
			e.t.Error("exists disagrees with the tree")
		}
		expectErr(e, e.dom0, e.dom0.Rm("/cf/a"), "", "rm of a parent")
		if e.dom0.Exists("/cf/a/b") {
			e.t.Error("a child outlived its removed parent")
		}
	}},
	{"rm-of-a-missing-node-succeeds-if-its-parent-exists", func(e *env) {
		// xenstore.txt: "It is not an error if <path> does not exist, but
		// it _is_ an error if <path>'s immediate parent does not exist
		// either." (The C xenstore-rm runs its rm inside a transaction.)
		expectErr(e, e.dom0, e.dom0.Write("/cf/a/b", "1"), "", "write")
		ev, stop := e.dom0.Watch("/cf/a")
		defer stop()
		nextEvent(e, ev, "/cf/a")
		expectErr(e, e.dom0, e.dom0.Rm("/cf/a/missing"), "", "rm of a missing node whose parent exists")
		expectErr(e, e.dom0, e.dom0.Rm("/cf/nowhere/missing"), wire.ENOENT, "rm of a node whose parent is missing")
		if !e.dom0.Exists("/cf/a/b") {
			e.t.Error("rm of a missing sibling removed /cf/a/b")
		}
		// Removing nothing fires nothing: the next event is this write's.
		if err := e.admin.Write("/cf/a/c", "1"); err != nil {
			e.t.Fatal(err)
		}
		nextEvent(e, ev, "/cf/a/c")
	}},
	{"guest-cannot-touch-another-guest", func(e *env) {
		other := fmt.Sprintf("/local/domain/%d/secret", e.g2)
		if err := e.admin.Write(other, "s3cret"); err != nil {
			e.t.Fatal(err)
		}
		if err := e.admin.SetPerms(other, []xen.Perm{{Dom: e.g2}}); err != nil {
			e.t.Fatal(err)
		}
		v, err := e.guest1.Read(other)
		expectErr(e, e.guest1, err, wire.EACCES, "guest reads another guest's node")
		if v == "s3cret" {
			e.t.Error("the secret leaked")
		}
		expectErr(e, e.guest1, e.guest1.Write(other, "mine"), wire.EACCES, "guest writes another guest's node")
		expectErr(e, e.guest1, e.guest1.Rm(other), wire.EACCES, "guest removes another guest's node")
		if got, _ := e.admin.Read(other); got != "s3cret" {
			e.t.Errorf("the node changed to %q", got)
		}
		own := fmt.Sprintf("/local/domain/%d/data/x", e.g1)
		expectErr(e, e.guest1, e.guest1.Write(own, "1"), "", "guest writes its own home")
		expectErr(e, e.guest1, e.guest1.Write("/cf-root-owned", "1"), wire.EACCES, "guest creates a node under /")
	}},
	{"chmod-grants-read-only", func(e *env) {
		expectErr(e, e.dom0, e.dom0.Write("/cf/shared", "v"), "", "write")
		expectErr(e, e.dom0, e.dom0.Chmod("/cf/shared", "n0", fmt.Sprintf("r%d", e.g1)), "", "chmod")
		if v, err := e.guest1.Read("/cf/shared"); err != "" || v != "v" {
			e.t.Errorf("guest read after chmod: %q %s", v, err)
		}
		expectErr(e, e.guest1, e.guest1.Write("/cf/shared", "w"), wire.EACCES, "guest writes a read-only node")
		perms, err := e.admin.GetPerms("/cf/shared")
		if err != nil || len(perms) != 2 || perms[1] != (xen.Perm{Dom: e.g1, Read: true}) {
			e.t.Errorf("perms after chmod: %v %v", perms, err)
		}
	}},
	{"watch-node-that-does-not-exist-yet", func(e *env) {
		ev, stop := e.dom0.Watch("/cf/later")
		defer stop()
		nextEvent(e, ev, "/cf/later") // the registration event
		if err := e.admin.Write("/cf/later/x", "1"); err != nil {
			e.t.Fatal(err)
		}
		nextEvent(e, ev, "/cf/later/x")
	}},
	{"watch-fires-on-removal-of-a-parent", func(e *env) {
		if err := e.admin.Write("/cf/p/c/d", "1"); err != nil {
			e.t.Fatal(err)
		}
		ev, stop := e.dom0.Watch("/cf/p/c/d")
		defer stop()
		nextEvent(e, ev, "/cf/p/c/d")
		if err := e.admin.Remove("/cf/p"); err != nil {
			e.t.Fatal(err)
		}
		nextEvent(e, ev, "/cf/p/c/d")
	}},
	{"guest-watch-does-not-see-unreadable-changes", func(e *env) {
		ev, stop := e.guest1.Watch("/cf/hidden")
		defer stop()
		nextEvent(e, ev, "/cf/hidden")
		if err := e.admin.Write("/cf/hidden/x", "private"); err != nil { // dom0-owned, n0: unreadable
			e.t.Fatal(err)
		}
		if err := e.admin.Write("/cf/hidden/y", "public"); err != nil {
			e.t.Fatal(err)
		}
		if err := e.admin.SetPerms("/cf/hidden/y", []xen.Perm{{Dom: 0, Read: true}}); err != nil {
			e.t.Fatal(err)
		}
		nextEvent(e, ev, "/cf/hidden/y")
	}},
	{"directory-part-on-1200-long-names", func(e *env) {
		var want []string
		err := e.admin.Transaction(func(tx xen.Tx) error {
			for i := 0; i < 1200; i++ {
				name := fmt.Sprintf("%04d-%s", i, strings.Repeat("n", 60))
				want = append(want, name)
				if err := tx.Write("/cf/big/"+name, "v"); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			e.t.Fatal(err)
		}
		got, errName := e.dom0.Ls("/cf/big")
		sort.Strings(got)
		if errName != "" || strings.Join(got, ",") != strings.Join(want, ",") {
			e.t.Errorf("listing of 1200 names: %d names (%s), want %d", len(got), errName, len(want))
		}
	}},
	{"conflicting-transaction-gets-eagain-and-leaves-no-trace", func(e *env) {
		// Transactions are driven by our client (the C tools have no
		// transaction command); the actor checks that nothing leaked.
		tx, err := xenstore.Dial(e.dom0Socket)
		if err != nil {
			e.t.Fatal(err)
		}
		defer tx.Close()
		stop := errors.New("stop after the conflict")
		runs := 0
		err = tx.Transaction(func(t xen.Tx) error {
			runs++
			if runs > 1 {
				return stop // the retry after EAGAIN: abort it too
			}
			if err := t.Write("/cf/tx/mine", "1"); err != nil {
				return err
			}
			return e.admin.Write("/cf/tx/theirs", "1") // conflicts
		})
		if !errors.Is(err, stop) || runs != 2 {
			e.t.Fatalf("transaction: %v after %d runs; want a retry after EAGAIN", err, runs)
		}
		if e.dom0.Exists("/cf/tx/mine") {
			e.t.Error("the conflicting transaction left a trace")
		}
		if v, err := e.dom0.Read("/cf/tx/theirs"); err != "" || v != "1" {
			e.t.Errorf("the other writer's value: %q %s", v, err)
		}
	}},
	{"quota-nodes-refused-dom0-keeps-working", func(e *env) {
		// Fill the guest's node quota in-band as that guest, then ask once more.
		d, _ := e.h.Domain(e.g1)
		g := d.Store() // the guest's own in-process connection, for speed
		home := fmt.Sprintf("/local/domain/%d/q", e.g1)
		var err error
		for i := 0; err == nil && i < 2000; i++ {
			err = g.Write(fmt.Sprintf("%s/%d", home, i), "x")
		}
		if wire.Name(err) != wire.ENOSPC {
			e.t.Fatalf("a guest filling the store: %v, want ENOSPC", err)
		}
		expectErr(e, e.guest1, e.guest1.Write(home+"/one-more", "x"), wire.ENOSPC, "guest write over its node quota")
		expectErr(e, e.guest1, e.guest1.Write(fmt.Sprintf("/local/domain/%d/q/0", e.g1), strings.Repeat("b", 2049)), wire.ENOSPC, "guest write over the node size quota")
		expectErr(e, e.dom0, e.dom0.Write("/cf/dom0-still-works", "yes"), "", "dom0 write after a guest exhausted its quota")
	}},
}

// TestConformanceClient runs the suite through our client.
func TestConformanceClient(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(sock string) actor {
				cl, err := xenstore.Dial(sock)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cl.Close() })
				return clientActor{cl}
			})
			c.run(e)
		})
	}
}

// TestConformanceCTools runs the suite through Debian's xenstore-utils.
func TestConformanceCTools(t *testing.T) {
	for _, tool := range []string{"xenstore-read", "xenstore-write", "xenstore-ls", "xenstore-list", "xenstore-rm", "xenstore-watch", "xenstore-chmod", "xenstore-exists"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED LOUDLY: %s is not installed (package xenstore-utils, listed in scripts/deps.txt)", tool)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(sock string) actor { return cActor{t, sock} })
			c.run(e)
		})
	}
}

func newEnv(t *testing.T, client func(sock string) actor) *env {
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	d1, err := h.NewDomain("guest-one")
	if err != nil {
		t.Fatal(err)
	}
	d2, err := h.NewDomain("guest-two")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	serve := func(name string, dom xen.DomID) string {
		p := filepath.Join(dir, name)
		l, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go h.ServeXenstoreAs(l, dom)
		return p
	}
	e := &env{t: t, h: h, g1: d1.ID(), g2: d2.ID(), admin: h.Store(), dom0Socket: serve("dom0.sock", 0)}
	e.dom0, e.guest1 = client(e.dom0Socket), client(serve("guest1.sock", d1.ID()))
	return e
}

type clientActor struct{ c *xenstore.Client }

func errName(err error) string {
	if err == nil {
		return ""
	}
	return wire.Name(err)
}

func (a clientActor) names() bool { return true }
func (a clientActor) Read(p string) (string, string) {
	v, err := a.c.Read(p)
	return v, errName(err)
}
func (a clientActor) Write(p, v string) string { return errName(a.c.Write(p, v)) }
func (a clientActor) Rm(p string) string       { return errName(a.c.Remove(p)) }
func (a clientActor) Ls(p string) ([]string, string) {
	v, err := a.c.Directory(p)
	return v, errName(err)
}
func (a clientActor) Chmod(p string, perms ...string) string {
	var ps []xen.Perm
	for _, s := range perms {
		x, ok := wire.ParsePerm(s)
		if !ok {
			return wire.EINVAL
		}
		ps = append(ps, x)
	}
	return errName(a.c.SetPerms(p, ps))
}
func (a clientActor) Exists(p string) bool {
	_, err := a.c.Read(p)
	return !errors.Is(err, xen.ErrNotFound)
}
func (a clientActor) Watch(p string) (<-chan string, func()) {
	w, err := a.c.Watch(p, "cf-token")
	if err != nil {
		ch := make(chan string)
		close(ch)
		return ch, func() {}
	}
	out := make(chan string, 64)
	go func() {
		defer close(out)
		for ev := range w.Events() {
			if ev.Token != "cf-token" {
				out <- "bad token " + ev.Token
				continue
			}
			out <- ev.Path
		}
	}()
	return out, func() { w.Close() }
}

// cActor runs Xen's C tools against one socket.
type cActor struct {
	t    *testing.T
	sock string
}

func (a cActor) names() bool { return false }

func (a cActor) cmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Env = append(os.Environ(), "XENSTORED_PATH="+a.sock)
	return c
}

func (a cActor) run(name string, args ...string) (string, string) {
	out, err := a.cmd(name, args...).Output()
	if err != nil {
		return "", "ERR"
	}
	return string(out), ""
}

func (a cActor) Read(p string) (string, string) {
	out, err := a.run("xenstore-read", p)
	return strings.TrimSuffix(out, "\n"), err
}
func (a cActor) Write(p, v string) string { _, err := a.run("xenstore-write", p, v); return err }
func (a cActor) Rm(p string) string       { _, err := a.run("xenstore-rm", p); return err }
func (a cActor) Ls(p string) ([]string, string) {
	out, err := a.run("xenstore-list", p)
	return strings.Fields(out), err
}
func (a cActor) Chmod(p string, perms ...string) string {
	_, err := a.run("xenstore-chmod", append([]string{p}, perms...)...)
	return err
}
func (a cActor) Exists(p string) bool { _, err := a.run("xenstore-exists", p); return err == "" }
func (a cActor) Watch(p string) (<-chan string, func()) {
	c := a.cmd("xenstore-watch", p)
	stdout, err := c.StdoutPipe()
	if err != nil {
		a.t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		a.t.Fatal(err)
	}
	out := make(chan string, 64)
	go func() {
		defer close(out)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if f := strings.Fields(s.Text()); len(f) > 0 {
				out <- f[0]
			}
		}
	}()
	return out, func() { c.Process.Kill(); c.Wait() }
}
