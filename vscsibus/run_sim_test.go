package vscsibus_test

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
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/vscsispec"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenbus"
)

// The runners of both ends of a vhost, back to back on the simulated
// host's store with its permissions: the backend's in dom0, the
// frontend's in a guest, each on its domain's own store connection, with
// fake drivers, and the toolstack's own vhost and LUN functions.

// waitFor bounds every wait of these tests: each is for an event the
// runners make happen within milliseconds.
const waitFor = 10 * time.Second

// vhost is a vhost the toolstack made, and the toolstack's (dom0's)
// store connection.
type vhost struct {
	toolstack.Vhost
	st          xen.Store
	back, front string
}

func spec(t *testing.T, s string) vscsispec.Spec {
	t.Helper()
	sp, err := vscsispec.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func (v vhost) lunState(n int) string { return v.back + "/" + vscsiif.DevPath(n) + "/state" }

// frontLUNState is the frontend's own dev-N/state.
func (v vhost) frontLUNState(n int) string { return v.front + "/" + vscsiif.DevPath(n) + "/state" }

func (v vhost) write(t *testing.T, path, value string) {
	t.Helper()
	if err := v.st.Write(path, value); err != nil {
		t.Fatal(err)
	}
}

func (v vhost) read(t *testing.T, path string) string {
	t.Helper()
	s, err := v.st.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wait waits until path holds want.
func (v vhost) wait(t *testing.T, path, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := xenbus.WaitNode(ctx, v.st, path, xenbus.OneOf(want)); err != nil {
		t.Fatal(err)
	}
}

func (v vhost) gone(t *testing.T, path string) {
	t.Helper()
	if s, err := v.st.Read(path); !errors.Is(err, xen.ErrNotFound) {
		t.Fatalf("%s is there (%q, %v); want it gone", path, s, err)
	}
}

// addLUN is the toolstack's hot-add (AddLUN: dev-N at 1 and the vhost's
// 7, then the wait for the backend's answer), run on its own goroutine:
// its outcome comes on the channel.
func (v vhost) addLUN(t *testing.T, s string) <-chan error {
	sp := spec(t, s)
	out := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_, err := toolstack.AddLUN(ctx, v.st, v.Vhost, sp)
		out <- err
	}()
	return out
}

func outcome(t *testing.T, what string, c <-chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(waitFor):
		t.Fatalf("%s did not end", what)
		return nil
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return c
}

// fakeDriver is a vhost's driver that opens nothing: it records what
// the runner asks, answers an AttachLUN at once (on another goroutine
// when async) unless the test holds that LUN's open, and keeps what a
// Connect was given or made.
type fakeDriver struct {
	async bool
	// make is what a frontend's Connect returns.
	make vscsibus.Ring

	mu        sync.Mutex
	ring      vscsibus.Ring // the last connected ring
	connected bool
	segments  int
	attached  map[int]vscsibus.LUN
	hold      map[int]bool
	held      map[int]func(error)
	detached  []int
	removed   bool
}

func newFakeDriver(async bool) *fakeDriver {
	return &fakeDriver{async: async, make: vscsibus.Ring{Ref: 8, Port: 5, ABI: blkif.X86_64},
		attached: map[int]vscsibus.LUN{}, hold: map[int]bool{}, held: map[int]func(error){}}
}

func (d *fakeDriver) Connect(ring vscsibus.Ring) (vscsibus.Ring, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ring == (vscsibus.Ring{}) {
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

func (d *fakeDriver) AttachLUN(l vscsibus.LUN, done func(error)) {
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

func (d *fakeDriver) holdOpen(n int) {
	d.mu.Lock()
	d.hold[n] = true
	d.mu.Unlock()
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

func (d *fakeDriver) isConnected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connected
}

// pair is a Backend runner in dom0 and a Frontend runner in a guest
// around one vhost.
type pair struct {
	v           vhost
	back, front *fakeDriver
	backDone    chan error
	frontDone   chan error
	stopBack    context.CancelFunc
	stopFront   context.CancelFunc
}

const sgGrant = 1024

// newPair creates a vhost with a LUN per spec ("PDEV, VDEV[, OPTION]")
// and starts both runners on it.
func newPair(t *testing.T, luns ...string) *pair {
	t.Helper()
	return newPairWith(t, nil, luns...)
}

// newPairWith is newPair with the runners changed by adjust before they
// start (back.Store is dom0's own connection, front.Store the guest's).
func newPairWith(t *testing.T, adjust func(p *pair, back, front *vscsibus.Runner), luns ...string) *pair {
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
	tv := toolstack.Vhost{BackendDom: 0, FrontendDom: guest.ID(), DevID: 0}
	var specs []vscsispec.Spec
	for _, l := range luns {
		specs = append(specs, spec(t, l))
	}
	if err := toolstack.CreateVhost(h.Store(), tv, specs...); err != nil {
		t.Fatal(err)
	}
	p := &pair{v: vhost{Vhost: tv, st: h.Store(), back: tv.BackendPath(), front: tv.FrontendPath()},
		back: newFakeDriver(true), front: newFakeDriver(false)}
	back := &vscsibus.Runner{Store: h.Dom0().Store(), Self: p.v.back, Peer: p.v.front,
		Machine: vscsibus.NewBackend(), Driver: p.back, SGGrant: sgGrant}
	front := &vscsibus.Runner{Store: guest.Store(), Self: p.v.front, Peer: p.v.back,
		Machine: vscsibus.NewFrontend(256), Driver: p.front}
	if adjust != nil {
		adjust(p, back, front)
	}
	p.backDone = start(t, back, &p.stopBack)
	p.frontDone = start(t, front, &p.stopFront)
	return p
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func start(t *testing.T, r *vscsibus.Runner, stop *context.CancelFunc) chan error {
	c, cancel := context.WithCancel(context.Background())
	*stop = cancel
	if r.Log == nil {
		r.Log = quiet
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(c) }()
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
// at 4 on both, and both drivers holding exactly them.
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

// A vhost's whole life: created with two LUNs, one hot-added and one
// hot-removed by the toolstack, then the vhost removed (online cleared).
func TestRunBackToBack(t *testing.T) {
	p := newPair(t, "/img/a, 0:0:0:0", "/img/b, 0:0:1:0")
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
	if want := (vscsibus.LUN{Index: 1, PDev: "/img/b", VDev: vscsibus.VDev{Target: 1}}); l1 != want {
		t.Errorf("backend's dev-1: %+v, want %+v", l1, want)
	}
	p.front.mu.Lock()
	segments, f1 := p.front.segments, p.front.attached[1]
	p.front.mu.Unlock()
	if segments != 256 {
		t.Errorf("the frontend attached with %d segments, want 256 (its own most, under feature-sg-grant)", segments)
	}
	if want := (vscsibus.LUN{Index: 1, VDev: vscsibus.VDev{Target: 1}}); f1 != want {
		t.Errorf("frontend's dev-1: %+v, want %+v", f1, want)
	}

	// Hot-add through Reconfiguring: AddLUN returns once the backend is
	// Connected again with the LUN at 4.
	if err := outcome(t, "AddLUN", p.v.addLUN(t, "/img/c, 0:0:2:0")); err != nil {
		t.Fatal(err)
	}
	p.connected(t, 0, 1, 2)

	// Hot-remove: 5 and 7; both ends answer 6; RemoveLUN then deletes
	// dev-1.
	if err := toolstack.RemoveLUN(ctx(t), p.v.st, p.v.Vhost, 1, false); err != nil {
		t.Fatal(err)
	}
	p.v.gone(t, p.v.back+"/"+vscsiif.DevPath(1))
	p.v.wait(t, p.v.frontLUNState(1), "6")
	p.connected(t, 0, 2)
	if !p.back.wasDetached(1) || !p.front.wasDetached(1) {
		t.Fatal("dev-1 went to 6 without both drivers detaching it")
	}

	// The vhost removed: online=0, the backend closes, the frontend
	// lets its LUNs go, the backend forgets the vhost; the toolstack
	// removes both directories, and the frontend forgets it too.
	if err := toolstack.RemoveVhost(ctx(t), p.v.st, p.v.Vhost, false); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		what string
		done chan error
		d    *fakeDriver
	}{{"backend", p.backDone, p.back}, {"frontend", p.frontDone, p.front}} {
		if err := ended(t, r.what, r.done); err != nil {
			t.Fatalf("%s: %v", r.what, err)
		}
		if !r.d.isRemoved() || len(r.d.luns()) != 0 {
			t.Fatalf("%s after the vhost's removal: removed %v, LUNs %v", r.what, r.d.isRemoved(), r.d.luns())
		}
	}
	// Nothing wrote into the removed directories.
	p.v.gone(t, p.v.back)
	p.v.gone(t, p.v.front)
}

// A frontend that closes (its user detached it) takes the vhost to
// Closed on both ends; the backend keeps its LUNs open until the
// toolstack removes the vhost.
func TestRunFrontendCloses(t *testing.T) {
	p := newPair(t, "/img/a, 0:0:0:0")
	p.connected(t, 0)
	p.stopFront()
	if err := ended(t, "frontend", p.frontDone); err != nil {
		t.Fatalf("frontend: %v", err)
	}
	p.v.wait(t, p.v.back+"/state", "6")
	p.v.wait(t, p.v.front+"/state", "6")
	if p.back.isConnected() || p.back.isRemoved() || !slices.Equal(p.back.luns(), []int{0}) {
		t.Fatalf("backend after its frontend closed: connected %v, removed %v, LUNs %v; want disconnected, holding dev-0",
			p.back.isConnected(), p.back.isRemoved(), p.back.luns())
	}
	if !p.front.isRemoved() || len(p.front.luns()) != 0 {
		t.Fatalf("frontend after closing: removed %v, LUNs %v", p.front.isRemoved(), p.front.luns())
	}
	if err := toolstack.RemoveVhost(ctx(t), p.v.st, p.v.Vhost, false); err != nil {
		t.Fatal(err)
	}
	if err := ended(t, "backend", p.backDone); err != nil {
		t.Fatalf("backend: %v", err)
	}
	if !p.back.isRemoved() {
		t.Fatal("the backend's driver was not removed")
	}
}

// What the toolstack does to a hot-added dev-N while its open is in
// flight wins once the open ends: removed, the LUN is closed again and
// its directory not written back; set to 5, it is closed and answered
// 6 (which AddLUN reports as a failed attach, deleting dev-N). Either
// way it is never offered, and the vhost goes back to Connected.
func TestRunToolstackDuringOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  func(v vhost) error
		// added: what AddLUN's error says.
		added string
	}{
		{"dev-1 removed", func(v vhost) error { return v.st.Remove(v.back + "/" + vscsiif.DevPath(1)) }, "no such store node"},
		{"5 written", func(v vhost) error { return v.st.Write(v.lunState(1), "5") }, "could not attach"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, "/img/a, 0:0:0:0")
			p.connected(t, 0)
			p.back.holdOpen(1)
			added := p.v.addLUN(t, "/img/b, 0:0:1:0")
			open := p.back.asked(t, 1)
			if err := tc.act(p.v); err != nil {
				t.Fatal(err)
			}
			open(nil)
			if err := outcome(t, "AddLUN", added); err == nil || !strings.Contains(err.Error(), tc.added) {
				t.Fatalf("AddLUN: %v; want an error saying %q", err, tc.added)
			}
			p.connected(t, 0)
			if !p.back.wasDetached(1) {
				t.Fatal("dev-1 was opened and is not closed")
			}
			p.v.gone(t, p.v.back+"/"+vscsiif.DevPath(1))
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
// nothing. The LUN is never offered; a LUN at 5 is answered by the next
// reconfiguration, one whose directory went is closed at the next scan.
func TestRunLUNStateIsCompareAndSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		race func(v vhost) error
		want string // dev-1/state after; "" gone
		// held: the backend's LUNs once Connected again.
		held []int
	}{
		{"5 written", func(v vhost) error { return v.st.Write(v.lunState(1), "5") }, "5", []int{0, 1}},
		{"dev-1 removed", func(v vhost) error { return v.st.Remove(v.back + "/" + vscsiif.DevPath(1)) }, "", []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var racy *raceOnWrite
			p := newPairWith(t, func(p *pair, back, _ *vscsibus.Runner) {
				racy = &raceOnWrite{Store: back.Store, path: p.v.lunState(1), want: "3",
					race: func() error { return tc.race(p.v) }}
				back.Store = racy
			}, "/img/a, 0:0:0:0")
			p.connected(t, 0)

			// AddLUN fails: the vhost is Connected again without the LUN.
			if err := outcome(t, "AddLUN", p.v.addLUN(t, "/img/b, 0:0:1:0")); err == nil {
				t.Fatal("AddLUN succeeded for a LUN the toolstack took back")
			}
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
			if !slices.Equal(p.back.luns(), tc.held) {
				t.Fatalf("backend's LUNs %v; want %v", p.back.luns(), tc.held)
			}
			if tc.want != "" {
				if err := toolstack.RemoveLUN(ctx(t), p.v.st, p.v.Vhost, 1, false); err != nil {
					t.Fatal(err)
				}
				p.connected(t, 0)
			}
			if !p.back.wasDetached(1) {
				t.Fatal("dev-1 not closed")
			}
			p.v.gone(t, p.v.back+"/"+vscsiif.DevPath(1))
		})
	}
}

// feature-host=1 asks for what is not served: the backend refuses the
// vhost when the frontend comes, with the reason in its error node.
func TestRunFeatureHostRefused(t *testing.T) {
	p := newPair(t, "/img/a, 0:0:0:0, feature-host")
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
	p := newPairWith(t, func(_ *pair, back, front *vscsibus.Runner) {
		back.Grace = 50 * time.Millisecond
		front.Abandon = freeze
	}, "/img/a, 0:0:0:0")
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

// The transport seeing the frontend vanish closes the vhost on the
// backend's side; online, it waits there for a frontend to come back.
func TestRunPeerLost(t *testing.T) {
	lost := make(chan struct{}, 1)
	p := newPairWith(t, func(_ *pair, back, _ *vscsibus.Runner) { back.Lost = lost }, "/img/a, 0:0:0:0")
	p.connected(t, 0)
	lost <- struct{}{}
	p.v.wait(t, p.v.back+"/state", "6")
	if p.back.isConnected() || p.back.isRemoved() {
		t.Fatalf("backend after losing its frontend: connected %v, removed %v; want disconnected, not removed",
			p.back.isConnected(), p.back.isRemoved())
	}
}

// A backend that serves no SG_GRANT removes a predecessor's
// feature-sg-grant: the frontend then puts at most the request's own
// seg[] in a request.
func TestRunNoSGGrant(t *testing.T) {
	p := newPairWith(t, func(p *pair, back, _ *vscsibus.Runner) {
		p.v.write(t, p.v.back+"/"+vscsiif.KeyFeatureSGGrant, "1024")
		back.SGGrant = 0
	}, "/img/a, 0:0:0:0")
	p.connected(t, 0)
	p.v.gone(t, p.v.back+"/"+vscsiif.KeyFeatureSGGrant)
	p.front.mu.Lock()
	segments := p.front.segments
	p.front.mu.Unlock()
	if segments != vscsiif.SGTableSize {
		t.Errorf("the frontend attached with %d segments, want %d", segments, vscsiif.SGTableSize)
	}
}
