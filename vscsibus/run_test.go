package vscsibus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenbus"
)

// waitFor bounds every wait of these tests: each is for an event the
// runners make happen within milliseconds.
const waitFor = 10 * time.Second

// vhostDirs is a vhost as the toolstack writes it (what libxl's vscsi
// support would): the backend's directory under dom0, owned by it and
// readable by the guest, and the frontend's under the guest, owned by
// the guest and readable by dom0.
type vhostDirs struct {
	back, front string
	st          xen.Store // the toolstack's (dom0's) connection
}

type testLUN struct {
	n          int
	pdev, vdev string
}

func createVhost(t *testing.T, st xen.Store, guest xen.DomID, id int, featureHost string, luns ...testLUN) vhostDirs {
	t.Helper()
	v := vhostDirs{
		back:  fmt.Sprintf("/local/domain/0/backend/vscsi/%d/%d", guest, id),
		front: fmt.Sprintf("/local/domain/%d/device/vscsi/%d", guest, id),
		st:    st,
	}
	err := st.Transaction(func(tx xen.Tx) error {
		dirs := []struct {
			dir   string
			perms []xen.Perm
			nodes [][2]string
		}{
			{v.back, []xen.Perm{{Dom: 0}, {Dom: guest, Read: true}}, [][2]string{
				{"frontend", v.front}, {"frontend-id", strconv.Itoa(int(guest))}, {"online", "1"},
				{"state", "1"}, {vscsiif.KeyFeatureHost, featureHost}}},
			{v.front, []xen.Perm{{Dom: guest}, {Dom: 0, Read: true}}, [][2]string{
				{"backend", v.back}, {"backend-id", "0"}, {"state", "1"}}},
		}
		for _, d := range dirs {
			if err := tx.Mkdir(d.dir); err != nil {
				return err
			}
			if err := tx.SetPerms(d.dir, d.perms); err != nil {
				return err
			}
			for _, kv := range d.nodes {
				if err := tx.Write(d.dir+"/"+kv[0], kv[1]); err != nil {
					return err
				}
			}
		}
		for _, l := range luns {
			if err := writeLUN(tx, v.back, l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func writeLUN(tx xen.Tx, back string, l testLUN) error {
	dir := back + "/" + vscsiif.DevPath(l.n) + "/"
	for _, kv := range [][2]string{{vscsiif.KeyPDev, l.pdev}, {vscsiif.KeyVDev, l.vdev}, {vscsiif.KeyDevState, "1"}} {
		if err := tx.Write(dir+kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// hotAdd writes dev-N at 1 and asks the vhost to reconfigure.
func (v vhostDirs) hotAdd(t *testing.T, l testLUN) {
	t.Helper()
	if err := v.st.Transaction(func(tx xen.Tx) error { return writeLUN(tx, v.back, l) }); err != nil {
		t.Fatal(err)
	}
	v.reconfigure(t)
}

// reconfigure is the toolstack's 7 in the backend's state node.
func (v vhostDirs) reconfigure(t *testing.T) {
	t.Helper()
	v.write(t, v.back+"/state", strconv.Itoa(vscsiif.VhostStateReconfiguring))
}

func (v vhostDirs) lunState(n int) string { return v.back + "/" + vscsiif.DevPath(n) + "/state" }

// frontLUNState is the frontend's own dev-N/state.
func (v vhostDirs) frontLUNState(n int) string {
	return v.front + "/" + vscsiif.DevPath(n) + "/state"
}

func (v vhostDirs) write(t *testing.T, path, value string) {
	t.Helper()
	if err := v.st.Write(path, value); err != nil {
		t.Fatal(err)
	}
}

// detach is xl's: online=0 and Closing in the backend's directory.
func (v vhostDirs) detach(t *testing.T) {
	t.Helper()
	if err := v.st.Transaction(func(tx xen.Tx) error {
		if err := tx.Write(v.back+"/online", "0"); err != nil {
			return err
		}
		return tx.Write(v.back+"/state", xenbus.Closing.Value())
	}); err != nil {
		t.Fatal(err)
	}
}

// wait waits until path holds want.
func (v vhostDirs) wait(t *testing.T, path, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := xenbus.WaitNode(ctx, v.st, path, xenbus.OneOf(want)); err != nil {
		t.Fatal(err)
	}
}

func (v vhostDirs) waitGone(t *testing.T, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	gone := func(_ string, err error) bool { return errors.Is(err, xen.ErrNotFound) }
	if _, err := xenbus.WaitNode(ctx, v.st, path, gone); !errors.Is(err, xen.ErrNotFound) {
		t.Fatalf("%s not gone: %v", path, err)
	}
}

func (v vhostDirs) read(t *testing.T, path string) string {
	t.Helper()
	s, err := v.st.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeDriver is a vhost's driver that opens nothing: it records what
// the runner asks, answers an AttachLUN at once (on another goroutine
// when async) unless the test holds that LUN's open, and keeps what a
// Connect was given or made.
type fakeDriver struct {
	async bool
	// make is what a frontend's Connect returns.
	make Ring

	mu        sync.Mutex
	ring      Ring // the last connected ring
	connected bool
	segments  int
	attached  map[int]LUN
	hold      map[int]bool
	held      map[int]func(error)
	detached  []int
	removed   bool
}

func newFakeDriver(async bool) *fakeDriver {
	return &fakeDriver{async: async, make: Ring{Ref: 8, Port: 5, ABI: blkif.X86_64},
		attached: map[int]LUN{}, hold: map[int]bool{}, held: map[int]func(error){}}
}

func (d *fakeDriver) Connect(ring Ring) (Ring, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ring == (Ring{}) {
		ring = d.make
	}
	d.ring, d.connected = ring, true
	return ring, nil
}

func (d *fakeDriver) Attach(segments int) error {
	d.mu.Lock()
	d.segments = segments
	d.mu.Unlock()
	return nil
}

func (d *fakeDriver) Refresh(segments int) error { return d.Attach(segments) }

func (d *fakeDriver) Disconnect() {
	d.mu.Lock()
	d.connected = false
	d.mu.Unlock()
}

func (d *fakeDriver) AttachLUN(l LUN, done func(error)) {
	d.mu.Lock()
	if _, dup := d.attached[l.Index]; dup {
		panic(fmt.Sprintf("dev-%d attached twice", l.Index))
	}
	if d.hold[l.Index] {
		d.held[l.Index] = func(err error) {
			d.mu.Lock()
			if err == nil {
				d.attached[l.Index] = l
			}
			d.mu.Unlock()
			done(err)
		}
		d.mu.Unlock()
		return
	}
	d.attached[l.Index] = l
	d.mu.Unlock()
	if d.async {
		go done(nil)
	} else {
		done(nil)
	}
}

func (d *fakeDriver) DetachLUN(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.attached[n]; !ok {
		panic(fmt.Sprintf("dev-%d detached but not attached", n))
	}
	delete(d.attached, n)
	d.detached = append(d.detached, n)
}

func (d *fakeDriver) Remove() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.removed, d.connected = true, false
	clear(d.attached)
}

// asked waits until the runner has asked for the open of dev-n, which
// the test holds, and returns what finishes it.
func (d *fakeDriver) asked(t *testing.T, n int) func(error) {
	t.Helper()
	var done func(error)
	eventually.True(t, waitFor, fmt.Sprintf("the open of dev-%d asked", n), func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		done = d.held[n]
		delete(d.held, n)
		return done != nil
	})
	return done
}

func (d *fakeDriver) holdOpen(n int) {
	d.mu.Lock()
	d.hold[n] = true
	d.mu.Unlock()
}

func (d *fakeDriver) luns() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int
	for n := range d.attached {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (d *fakeDriver) wasDetached(n int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.detached, n)
}

func (d *fakeDriver) isRemoved() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.removed
}

// pair is a Backend runner in dom0 and a Frontend runner in a guest,
// each on its own domain's store connection, around one vhost.
type pair struct {
	v           vhostDirs
	back, front *fakeDriver
	backDone    chan error
	frontDone   chan error
	stopBack    context.CancelFunc
	stopFront   context.CancelFunc
}

const sgGrant = 1024

func newPair(t *testing.T, featureHost string, luns ...testLUN) *pair {
	t.Helper()
	return newPairWith(t, featureHost, nil, luns...)
}

// newPairWith is newPair with the runners changed by adjust before they
// start (back.Store is dom0's own connection, front.Store the guest's).
func newPairWith(t *testing.T, featureHost string, adjust func(p *pair, back, front *Runner), luns ...testLUN) *pair {
	t.Helper()
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	guest, err := h.NewDomain("guest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { guest.Close() })
	p := &pair{v: createVhost(t, h.Store(), guest.ID(), 0, featureHost, luns...),
		back: newFakeDriver(true), front: newFakeDriver(false)}
	back := &Runner{Store: h.Dom0().Store(), Self: p.v.back, Peer: p.v.front,
		Machine: NewBackend(), Driver: p.back, SGGrant: sgGrant}
	front := &Runner{Store: guest.Store(), Self: p.v.front, Peer: p.v.back,
		Machine: NewFrontend(256), Driver: p.front}
	if adjust != nil {
		adjust(p, back, front)
	}
	p.backDone = p.start(t, back, &p.stopBack)
	p.frontDone = p.start(t, front, &p.stopFront)
	return p
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func (p *pair) start(t *testing.T, r *Runner, stop *context.CancelFunc) chan error {
	ctx, cancel := context.WithCancel(context.Background())
	*stop = cancel
	if r.Log == nil {
		r.Log = quiet
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Errorf("%s: the runner did not end", r.Self)
		}
	})
	return done
}

// ended waits for a runner's Run to return and gives its error.
func ended(t *testing.T, what string, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		done <- err // for the cleanup
		return err
	case <-time.After(waitFor):
		t.Fatalf("%s: Run did not return", what)
		return nil
	}
}

// connected waits until the vhost is Connected on both ends with LUNs
// at 4 on both, and both drivers holding them.
func (p *pair) connected(t *testing.T, luns ...int) {
	t.Helper()
	p.v.wait(t, p.v.back+"/state", "4")
	p.v.wait(t, p.v.front+"/state", "4")
	for _, n := range luns {
		p.v.wait(t, p.v.lunState(n), "4")
		p.v.wait(t, p.v.frontLUNState(n), "4")
	}
	if got, fgot := p.back.luns(), p.front.luns(); !slices.Equal(got, luns) || !slices.Equal(fgot, luns) {
		t.Fatalf("LUNs attached: backend %v, frontend %v; want %v", got, fgot, luns)
	}
}

// A vhost's whole life through the real store and its permissions:
// create with two LUNs, hot-add one, hot-remove one, then the toolstack
// clears online.
func TestRunBackToBack(t *testing.T) {
	p := newPair(t, "0", testLUN{0, "/img/a", "0:0:0:0"}, testLUN{1, "/img/b", "0:0:1:0"})
	p.connected(t, 0, 1)
	if got := p.v.read(t, p.v.back+"/"+vscsiif.KeyFeatureSGGrant); got != strconv.Itoa(sgGrant) {
		t.Errorf("feature-sg-grant = %q, want %d", got, sgGrant)
	}
	p.back.mu.Lock()
	ring, l1 := p.back.ring, p.back.attached[1]
	p.back.mu.Unlock()
	if ring != p.front.make {
		t.Errorf("the backend connected to %+v; the frontend published %+v", ring, p.front.make)
	}
	if want := (LUN{Index: 1, PDev: "/img/b", VDev: VDev{Target: 1}}); l1 != want {
		t.Errorf("backend's dev-1: %+v, want %+v", l1, want)
	}
	p.front.mu.Lock()
	segments, f1 := p.front.segments, p.front.attached[1]
	p.front.mu.Unlock()
	if segments != 256 {
		t.Errorf("the frontend attached with %d segments, want 256 (its own most, under feature-sg-grant)", segments)
	}
	if want := (LUN{Index: 1, VDev: VDev{Target: 1}}); f1 != want {
		t.Errorf("frontend's dev-1: %+v, want %+v", f1, want)
	}

	// Hot-add through Reconfiguring.
	p.v.hotAdd(t, testLUN{2, "/img/c", "0:0:2:0"})
	p.connected(t, 0, 1, 2)

	// Hot-remove: 5, then 6 from both ends; the toolstack then deletes it.
	p.v.write(t, p.v.lunState(1), "5")
	p.v.reconfigure(t)
	p.v.wait(t, p.v.lunState(1), "6")
	p.v.wait(t, p.v.frontLUNState(1), "6")
	p.connected(t, 0, 2)
	if !p.back.wasDetached(1) || !p.front.wasDetached(1) {
		t.Fatal("dev-1 went to 6 without both drivers detaching it")
	}
	if err := p.v.st.Remove(p.v.back + "/" + vscsiif.DevPath(1)); err != nil {
		t.Fatal(err)
	}

	// The toolstack clears online: the backend closes, the frontend lets
	// its LUNs go, the backend forgets the vhost; the toolstack removes
	// both directories, and the frontend forgets it too.
	p.v.write(t, p.v.back+"/online", "0")
	if err := ended(t, "backend", p.backDone); err != nil {
		t.Fatalf("backend: %v", err)
	}
	p.v.wait(t, p.v.front+"/state", "6")
	if !p.back.isRemoved() || len(p.front.luns()) != 0 {
		t.Fatalf("after detach: backend removed %v, frontend still holds %v", p.back.isRemoved(), p.front.luns())
	}
	for _, dir := range []string{p.v.back, p.v.front} {
		if err := p.v.st.Remove(dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := ended(t, "frontend", p.frontDone); err != nil {
		t.Fatalf("frontend: %v", err)
	}
	if !p.front.isRemoved() {
		t.Fatal("the frontend's driver was not removed")
	}
	// Nothing wrote into the removed directories.
	p.v.waitGone(t, p.v.back)
	p.v.waitGone(t, p.v.front)
}

// A frontend that closes (its user detached it) takes the vhost to
// Closed on both ends; the backend keeps its LUNs open until the
// toolstack takes the vhost offline.
func TestRunFrontendCloses(t *testing.T) {
	p := newPair(t, "", testLUN{0, "/img/a", "0:0:0:0"})
	p.connected(t, 0)
	p.stopFront()
	if err := ended(t, "frontend", p.frontDone); err != nil {
		t.Fatalf("frontend: %v", err)
	}
	p.v.wait(t, p.v.back+"/state", "6")
	p.v.wait(t, p.v.front+"/state", "6")
	p.back.mu.Lock()
	connected := p.back.connected
	p.back.mu.Unlock()
	if connected || p.back.isRemoved() || !slices.Equal(p.back.luns(), []int{0}) {
		t.Fatalf("backend after its frontend closed: connected %v, removed %v, LUNs %v; want disconnected, holding dev-0",
			connected, p.back.isRemoved(), p.back.luns())
	}
	if !p.front.isRemoved() || len(p.front.luns()) != 0 {
		t.Fatalf("frontend after closing: removed %v, LUNs %v", p.front.isRemoved(), p.front.luns())
	}
	p.v.detach(t)
	if err := ended(t, "backend", p.backDone); err != nil {
		t.Fatalf("backend: %v", err)
	}
	if !p.back.isRemoved() {
		t.Fatal("the backend's driver was not removed")
	}
}

// What the toolstack does to a hot-added dev-N while its open is in
// flight wins once the open ends: removed, the LUN is closed again and
// its directory not written back; set to 5, it is closed and answered 6.
// Either way it is never offered, and the vhost goes back to Connected.
func TestRunToolstackDuringOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  func(v vhostDirs) error
		want string // dev-1/state after; "" gone
	}{
		{"dev-1 removed", func(v vhostDirs) error { return v.st.Remove(v.back + "/" + vscsiif.DevPath(1)) }, ""},
		{"5 written", func(v vhostDirs) error { return v.st.Write(v.lunState(1), "5") }, "6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, "0", testLUN{0, "/img/a", "0:0:0:0"})
			p.connected(t, 0)
			p.back.holdOpen(1)
			p.v.hotAdd(t, testLUN{1, "/img/b", "0:0:1:0"})
			open := p.back.asked(t, 1)
			if err := tc.act(p.v); err != nil {
				t.Fatal(err)
			}
			open(nil)
			p.connected(t, 0)
			if !p.back.wasDetached(1) {
				t.Fatal("dev-1 was opened and is not closed")
			}
			got, err := p.v.st.Read(p.v.lunState(1))
			if err != nil {
				got = ""
			}
			if got != tc.want {
				t.Fatalf("dev-1/state = %q (%v), want %q", got, err, tc.want)
			}
			if _, err := p.v.st.Read(p.v.back + "/" + vscsiif.DevPath(1)); tc.want == "" && !errors.Is(err, xen.ErrNotFound) {
				t.Fatalf("dev-1 removed by the toolstack is back (%v)", err)
			}
		})
	}
}

// raceOnWrite is a store on which the toolstack acts (race) the moment
// the runner's transaction writes want at path, before it commits: the
// worst moment for a compare-and-set.
type raceOnWrite struct {
	xen.Store
	path, want string
	race       func() error
	mu         sync.Mutex
	done       bool
}

func (s *raceOnWrite) Transaction(fn func(xen.Tx) error) error {
	return s.Store.Transaction(func(tx xen.Tx) error { return fn(raceTx{tx, s}) })
}

func (s *raceOnWrite) raced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

type raceTx struct {
	xen.Tx
	s *raceOnWrite
}

func (t raceTx) Write(path, value string) error {
	if err := t.Tx.Write(path, value); err != nil {
		return err
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if path == t.s.path && value == t.s.want && !t.s.done {
		t.s.done = true
		return t.s.race()
	}
	return nil
}

// The toolstack's 5, or its removal of dev-N, landing between the
// backend's read of a hot-added LUN's state and its write of 3 is kept:
// the transaction conflicts, its retry finds the change and writes
// nothing. The LUN is never offered, and the next reconfiguration
// answers the 5 or closes the LUN whose directory went.
func TestRunLUNStateIsCompareAndSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		race func(v vhostDirs) error
		want string // dev-1/state after; "" gone
		// held: the backend's LUNs once Connected again. A LUN at 5
		// waits for the next reconfiguration; one whose directory went
		// is closed at the next scan (the frontend's Connected).
		held []int
	}{
		{"5 written", func(v vhostDirs) error { return v.st.Write(v.lunState(1), "5") }, "5", []int{0, 1}},
		{"dev-1 removed", func(v vhostDirs) error { return v.st.Remove(v.back + "/" + vscsiif.DevPath(1)) }, "", []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var racy *raceOnWrite
			p := newPairWith(t, "0", func(p *pair, back, _ *Runner) {
				racy = &raceOnWrite{Store: back.Store, path: p.v.lunState(1), want: "3",
					race: func() error { return tc.race(p.v) }}
				back.Store = racy
			}, testLUN{0, "/img/a", "0:0:0:0"})
			p.connected(t, 0)

			p.v.hotAdd(t, testLUN{1, "/img/b", "0:0:1:0"})
			p.v.wait(t, p.v.back+"/state", "4")
			p.v.wait(t, p.v.front+"/state", "4")
			if !racy.raced() {
				t.Fatal("the test did not race the backend's write of 3")
			}
			got, err := p.v.st.Read(p.v.lunState(1))
			if err != nil {
				got = ""
			}
			if got != tc.want {
				t.Fatalf("dev-1/state = %q after the race; want %q kept", got, tc.want)
			}
			if !slices.Equal(p.back.luns(), tc.held) || !slices.Equal(p.front.luns(), []int{0}) {
				t.Fatalf("LUNs: backend %v, frontend %v; want %v, [0]", p.back.luns(), p.front.luns(), tc.held)
			}
			p.v.reconfigure(t)
			if tc.want != "" {
				p.v.wait(t, p.v.lunState(1), "6")
			}
			p.connected(t, 0)
			if !p.back.wasDetached(1) {
				t.Fatal("dev-1 not closed after the reconfiguration")
			}
			if _, err := p.v.st.Read(p.v.back + "/" + vscsiif.DevPath(1)); tc.want == "" && !errors.Is(err, xen.ErrNotFound) {
				t.Fatalf("dev-1 removed by the toolstack is back (%v)", err)
			}
		})
	}
}

// feature-host=1 asks for what is not served: the backend refuses the
// vhost when the frontend comes, with the reason in its error node.
func TestRunFeatureHostRefused(t *testing.T) {
	p := newPair(t, "1", testLUN{0, "/img/a", "0:0:0:0"})
	// Closing, then Closed once the frontend is.
	p.v.wait(t, p.v.front+"/state", "6")
	p.v.wait(t, p.v.back+"/state", "6")
	if got := p.v.read(t, p.v.back+"/error"); !strings.Contains(got, "feature-host") {
		t.Errorf("error node %q does not say why", got)
	}
	if l := p.back.luns(); len(l) != 0 {
		t.Errorf("backend opened %v for a refused vhost", l)
	}
}

// A backend whose context ends while its frontend is frozen (crashed:
// its runner abandoned) closes anyway once the grace period is over,
// and lets its driver go.
func TestRunGraceAgainstAFrozenFrontend(t *testing.T) {
	freeze := make(chan struct{})
	p := newPairWith(t, "0", func(_ *pair, back, front *Runner) {
		back.Grace = 50 * time.Millisecond
		front.Abandon = freeze
	}, testLUN{0, "/img/a", "0:0:0:0"})
	p.connected(t, 0)
	close(freeze)
	if err := ended(t, "frontend", p.frontDone); err != nil {
		t.Fatalf("abandoned frontend: %v", err)
	}
	if p.front.isRemoved() {
		t.Fatal("an abandoned runner removed its driver")
	}
	p.stopBack()
	if err := ended(t, "backend", p.backDone); !errors.Is(err, context.Canceled) {
		t.Fatalf("backend past its grace: %v, want context.Canceled", err)
	}
	if got := p.v.read(t, p.v.back+"/state"); got != "6" || !p.back.isRemoved() {
		t.Fatalf("backend past its grace: state %q, removed %v; want 6, removed", got, p.back.isRemoved())
	}
}

// setLUNState writes only into a directory that is there and over the
// value the machine read.
func TestSetLUNState(t *testing.T) {
	const back, front = "/local/domain/0/backend/vscsi/1/0", "/local/domain/1/device/vscsi/0"
	for _, tc := range []struct {
		name    string
		backend bool
		nodes   map[string]string // written first
		a       Action
		want    string // the node after; "" absent
		refused bool
	}{
		{"backend, as read", true, map[string]string{back + "/vscsi-devs/dev-2/state": "1"},
			Action{LUN: 2, From: lunNew, State: lunAttached}, "3", false},
		{"backend, rewritten since", true, map[string]string{back + "/vscsi-devs/dev-2/state": "5"},
			Action{LUN: 2, From: lunNew, State: lunAttached}, "5", true},
		{"backend, garbled since", true, map[string]string{back + "/vscsi-devs/dev-2/state": "x"},
			Action{LUN: 2, From: lunNew, State: lunAttached}, "x", true},
		{"backend, directory removed", true, map[string]string{back + "/state": "4"},
			Action{LUN: 2, From: lunNew, State: lunAttached}, "", true},
		{"backend, state removed", true, map[string]string{back + "/vscsi-devs/dev-2/p-dev": "/img"},
			Action{LUN: 2, From: lunNew, State: lunAttached}, "", true},
		{"backend, directory removed, from anything", true, map[string]string{back + "/state": "4"},
			Action{LUN: 2, State: lunRemoved}, "", true},
		{"backend, from anything", true, map[string]string{back + "/vscsi-devs/dev-2/state": "5"},
			Action{LUN: 2, State: lunRemoved}, "6", false},
		{"frontend, its own first", false, map[string]string{front + "/state": "4"},
			Action{LUN: 2, State: lunConnected}, "4", false},
		{"frontend, directory removed", false, map[string]string{"/local/domain/1/name": "guest"},
			Action{LUN: 2, State: lunConnected}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := sim.NewHost()
			if err != nil {
				t.Fatal(err)
			}
			st := h.Store()
			for k, v := range tc.nodes {
				if err := st.Write(k, v); err != nil {
					t.Fatal(err)
				}
			}
			r := &Runner{Store: st, Self: front, backend: tc.backend}
			if tc.backend {
				r.Self = back
			}
			tc.a.Kind = ActSetLUNState
			dir := r.Self + "/" + vscsiif.DevPath(2)
			_, before := st.Read(dir)
			err = r.setLUNState(tc.a)
			if (err != nil) != tc.refused {
				t.Fatalf("setLUNState(%s) = %v; want refused %v", tc.a, err, tc.refused)
			}
			got, rerr := st.Read(dir + "/state")
			if rerr != nil {
				got = ""
			}
			if got != tc.want {
				t.Fatalf("after %s: node %q, want %q", tc.a, got, tc.want)
			}
			if _, after := st.Read(dir); tc.refused && (before == nil) != (after == nil) {
				t.Fatalf("a refused write changed whether %s exists: %v, then %v", dir, before, after)
			}
		})
	}
}

// readRing takes what a frontend published, and refuses what is
// missing or out of range.
func TestReadRing(t *testing.T) {
	for _, tc := range []struct {
		nodes map[string]string
		want  Ring
		err   string
	}{
		{map[string]string{"ring-ref": "8", "event-channel": "5"}, Ring{Ref: 8, Port: 5, ABI: blkif.Native}, ""},
		{map[string]string{"ring-ref": " 4294967295 ", "event-channel": "0", "protocol": "x86_32-abi"},
			Ring{Ref: 1<<32 - 1, Port: 0, ABI: blkif.X86_32}, ""},
		{map[string]string{"event-channel": "5"}, Ring{}, "has not published"},
		{map[string]string{"ring-ref": "8"}, Ring{}, "has not published"},
		{map[string]string{"ring-ref": "4294967296", "event-channel": "5"}, Ring{}, "over 32 bits"},
		{map[string]string{"ring-ref": "8", "event-channel": "-2"}, Ring{}, "has not published"},
		{map[string]string{"ring-ref": "eight", "event-channel": "5"}, Ring{}, "not a number"},
		{map[string]string{"ring-ref": "8", "event-channel": "5", "protocol": "pdp11"}, Ring{}, "unknown protocol"},
	} {
		read := xenbus.ReaderFunc(func(path string) (string, error) {
			if v, ok := tc.nodes[strings.TrimPrefix(path, "dir/")]; ok {
				return v, nil
			}
			return "", xen.ErrNotFound
		})
		got, err := readRing(read, "dir")
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%v: %+v, %v; want %+v", tc.nodes, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: %v; want an error saying %q", tc.nodes, err, tc.err)
		}
	}
}

// The transport seeing the frontend vanish closes the vhost on the
// backend's side; online, it waits there for a frontend to come back.
func TestRunPeerLost(t *testing.T) {
	lost := make(chan struct{}, 1)
	p := newPairWith(t, "0", func(_ *pair, back, _ *Runner) { back.Lost = lost }, testLUN{0, "/img/a", "0:0:0:0"})
	p.connected(t, 0)
	lost <- struct{}{}
	p.v.wait(t, p.v.back+"/state", "6")
	p.back.mu.Lock()
	connected := p.back.connected
	p.back.mu.Unlock()
	if connected || p.back.isRemoved() {
		t.Fatalf("backend after losing its frontend: connected %v, removed %v; want disconnected, not removed", connected, p.back.isRemoved())
	}
}

// A backend that serves no SG_GRANT removes a predecessor's
// feature-sg-grant: the frontend then puts at most the request's own
// seg[] in a request.
func TestRunNoSGGrant(t *testing.T) {
	p := newPairWith(t, "0", func(p *pair, back, _ *Runner) {
		p.v.write(t, p.v.back+"/"+vscsiif.KeyFeatureSGGrant, "1024")
		back.SGGrant = 0
	}, testLUN{0, "/img/a", "0:0:0:0"})
	p.connected(t, 0)
	if v, err := p.v.st.Read(p.v.back + "/" + vscsiif.KeyFeatureSGGrant); !errors.Is(err, xen.ErrNotFound) {
		t.Errorf("feature-sg-grant = %q (%v) from a backend without SG_GRANT; want it removed", v, err)
	}
	p.front.mu.Lock()
	segments := p.front.segments
	p.front.mu.Unlock()
	if segments != vscsiif.SGTableSize {
		t.Errorf("the frontend attached with %d segments, want %d", segments, vscsiif.SGTableSize)
	}
}
