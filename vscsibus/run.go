package vscsibus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// Ring is a vhost's data path as the frontend publishes it: one ring
// page (ring-ref), an event channel, and the ABI its protocol node names
// (absent: native).
type Ring struct {
	Ref  xen.GrantRef
	Port xen.Port
	ABI  blkif.ABI
}

// LUN is a LUN to attach (ActAttachLUN): its vscsi-devs/dev-N index,
// what serves it (a backend's p-dev, opaque here; "" on a frontend) and
// its address.
type LUN struct {
	Index int
	PDev  string
	VDev  VDev
}

// Driver carries out the device-specific actions of one vhost's machine;
// the Runner does every store read and write. The Runner calls it from
// one goroutine, never concurrently; only AttachLUN's done may be called
// from another.
type Driver interface {
	// Connect sets up the data path (ActConnect). A backend is given the
	// ring the frontend published, read and checked by the Runner: it
	// maps the page and binds the channel (and returns ring as given). A
	// frontend is given a zero Ring: it grants a ring page to the
	// backend and allocates a channel, and returns them for the Runner to
	// publish. An error is fed back as EvConnectDone and written to the
	// vhost's error node.
	Connect(ring Ring) (Ring, error)
	// Attach and Refresh are the frontend's ActAttach and ActRefresh:
	// start I/O, or go on, with at most segments data segments a request.
	// An Attach error is written to the error node and takes the vhost
	// offline, as xenbus.Runner does. A backend driver returns nil.
	Attach(segments int) error
	Refresh(segments int) error
	// Disconnect tears the data path down (ActDisconnect); the LUNs stay
	// attached. It may be called when nothing is connected.
	Disconnect()
	// AttachLUN opens what lun.PDev names and serves it at lun.VDev
	// (backend), or adds the LUN at lun.VDev (frontend), and reports the
	// outcome by calling done exactly once, from any goroutine, before or
	// after returning: an open that takes time (an NBD connect) must not
	// hold the Runner up. The Runner feeds the outcome as EvLUNDone.
	AttachLUN(lun LUN, done func(error))
	// DetachLUN stops serving (backend) or removes (frontend) a LUN
	// attached earlier (ActDetachLUN).
	DetachLUN(index int)
	// Remove forgets the vhost and closes every LUN it holds, attached
	// or still opening (ActRemove): a done called after Remove is
	// dropped, so the driver closes what such an open gave it. Run
	// returns after it.
	Remove()
}

// Machine is a vhost's machine as a Runner drives it: a *Backend or a
// *Frontend.
type Machine interface {
	Step(Event) []Action
	Self() xenbus.State
	Peer() xenbus.State
	Removed() bool
}

var (
	_ Machine = (*Backend)(nil)
	_ Machine = (*Frontend)(nil)
)

// Runner is the thin loop around a vhost's machine, as xenbus.Runner is
// around a device's: it watches the other end's state node (and, for a
// backend, its own online node), feeds the machine, and carries out its
// actions through the store and the Driver.
//
// What it adds to xenbus.Runner's contract, as the machines ask:
//   - ActScanLUNs is answered at once with every dev-N directory under
//     the backend's vscsi-devs (and a frontend's view of the backend's
//     feature-sg-grant), read in one transaction;
//   - ActSetLUNState is compare-and-set in one transaction (setLUNState);
//   - EvConnectDone is fed before any other event;
//   - ActFail writes the error node; ActWarn and refusals are logged.
//
// Every write into this end's directory is made in a transaction that
// first checks the directory is there: the toolstack removes it once
// both ends are Closed, and a node written after that would stay behind.
type Runner struct {
	Store   xen.Store
	Self    string // this end's vhost directory, e.g. /local/domain/0/backend/vscsi/1/0
	Peer    string // the other end's
	Machine Machine
	Driver  Driver
	// SGGrant is a backend's feature-sg-grant, written on ActPublish:
	// the most data segments of an SG_GRANT request it serves. 0 or
	// less removes the node (no SG_GRANT).
	SGGrant int
	// Lost, if not nil, signals that the transport saw the other end
	// vanish; each receive feeds EvPeerLost.
	Lost <-chan struct{}
	// Abandon, if not nil, makes Run return at once when closed, writing
	// nothing and calling nothing: what a crash looks like to the other
	// end.
	Abandon <-chan struct{}
	// Grace bounds how long Run keeps the handshake going after ctx is
	// cancelled, waiting for the other end to close. Zero means 5s.
	Grace time.Duration
	// OnStep, if not nil, is told both ends' states after each event the
	// machine takes, from Run's goroutine.
	OnStep func(self, peer xenbus.State)
	Log    *slog.Logger

	backend bool
	log     *slog.Logger
	done    *lunResults
}

// Run drives the vhost until the machine removes it, until ctx is
// cancelled and the grace period for a clean close has passed, or until
// the store fails. Unless Abandon ended it, the Driver has been removed
// (Remove called) when Run returns. A Runner runs once.
func (r *Runner) Run(ctx context.Context) (err error) {
	switch r.Machine.(type) {
	case *Backend:
		r.backend = true
	case *Frontend:
		r.backend = false
	default:
		return fmt.Errorf("vscsibus: runner for %s: a machine must be a *Backend or a *Frontend, not %T", r.Self, r.Machine)
	}
	r.log = r.Log
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("vhost", r.Self)
	r.done = newLUNResults()
	defer r.done.close()
	// released: the driver needs no Remove from here (Abandon, or the
	// grace period's own).
	released := false
	defer func() {
		if err != nil && !released && !r.Machine.Removed() {
			// The store failed under the vhost: nothing more can be
			// negotiated, so the driver lets go of what it holds.
			r.log.Error("vhost abandoned", "err", err)
			r.Driver.Disconnect()
			r.Driver.Remove()
		}
	}()

	peerWatch, err := r.Store.Watch(r.Peer+"/state", "vscsi-peer")
	if err != nil {
		return fmt.Errorf("vscsibus: watch %s/state: %w", r.Peer, err)
	}
	defer peerWatch.Close()
	// A backend goes offline when the toolstack writes online=0; a
	// frontend when the toolstack removes its directory.
	offlineNode := r.Self + "/state"
	if r.backend {
		offlineNode = r.Self + "/online"
	}
	offline, err := r.Store.Watch(offlineNode, "vscsi-online")
	if err != nil {
		return fmt.Errorf("vscsibus: watch %s: %w", offlineNode, err)
	}
	defer offline.Close()

	// The other end's state before we start: whether it was ever seen
	// decides what its vanishing means.
	if err := r.feed(Event{Kind: EvPeerState, State: r.readState(r.Peer)}); err != nil {
		return err
	}
	start := Event{Kind: EvStart}
	if r.backend {
		v, err := r.Store.Read(r.Self + "/" + vscsiif.KeyFeatureHost)
		if err != nil && !errors.Is(err, xen.ErrNotFound) {
			return fmt.Errorf("vscsibus: read %s/%s: %w", r.Self, vscsiif.KeyFeatureHost, err)
		}
		start.FeatureHost = strings.TrimSpace(v)
	}
	if err := r.feed(start); err != nil {
		return err
	}
	grace := r.Grace
	if grace == 0 {
		grace = 5 * time.Second
	}
	stop := ctx.Done()
	var deadline <-chan time.Time
	for !r.Machine.Removed() {
		var ev Event
		select {
		case _, ok := <-peerWatch.Events():
			if !ok {
				return errors.New("vscsibus: store connection closed")
			}
			ev = Event{Kind: EvPeerState, State: r.readState(r.Peer)}
		case _, ok := <-offline.Events():
			if !ok {
				return errors.New("vscsibus: store connection closed")
			}
			if !r.wentOffline(offlineNode) {
				continue
			}
			ev = Event{Kind: EvOffline}
		case <-r.done.ready():
			for _, ev := range r.done.take() {
				if err := r.feed(ev); err != nil {
					return err
				}
			}
			continue
		case <-r.Lost:
			ev = Event{Kind: EvPeerLost}
		case <-r.Abandon:
			released = true
			return nil
		case <-stop:
			stop = nil
			deadline = time.After(grace)
			ev = Event{Kind: EvOffline}
		case <-deadline:
			r.log.Warn("other end did not close in time; removing anyway", "grace", grace)
			r.Driver.Disconnect()
			r.writeIn(r.Self, r.Self+"/state", xenbus.Closed.Value())
			r.Driver.Remove()
			released = true
			return ctx.Err()
		}
		if err := r.feed(ev); err != nil {
			return err
		}
	}
	return nil
}

// wentOffline reads the node whose watch fired: a backend's online node
// cleared (or removed), a frontend's own state removed with its
// directory once it had written one.
func (r *Runner) wentOffline(node string) bool {
	v, err := r.Store.Read(node)
	if err != nil && !errors.Is(err, xen.ErrNotFound) {
		return false
	}
	if r.backend {
		return err != nil || strings.TrimSpace(v) == "0"
	}
	return err != nil && r.Machine.Self() != xenbus.Unknown
}

// feed steps the machine with ev and with every event its actions
// answer at once (EvConnectDone first, then EvLUNs in order); OnStep
// hears the outcome of each.
func (r *Runner) feed(ev Event) error {
	queue := []Event{ev}
	for len(queue) > 0 {
		ev, queue = queue[0], queue[1:]
		var connected []Event
		for _, a := range r.Machine.Step(ev) {
			r.log.Debug("vscsibus action", "action", a.String(), "peer", r.Machine.Peer())
			answer, err := r.carry(a)
			if err != nil {
				return err
			}
			switch {
			case answer == nil:
			case answer.Kind == EvConnectDone:
				connected = append(connected, *answer)
			default:
				queue = append(queue, *answer)
			}
		}
		queue = append(connected, queue...)
		if r.OnStep != nil {
			r.OnStep(r.Machine.Self(), r.Machine.Peer())
		}
	}
	return nil
}

// carry carries out one action and returns the event that answers it
// at once, if any. An error is the store's: the vhost cannot go on.
func (r *Runner) carry(a Action) (*Event, error) {
	switch a.Kind {
	case ActPublish:
		return nil, r.publish()
	case ActConnect:
		err := r.connect()
		if err != nil {
			r.fail(fmt.Sprintf("connect: %v", err))
		}
		return &Event{Kind: EvConnectDone, Err: err}, nil
	case ActAttach:
		if err := r.Driver.Attach(a.Segments); err != nil {
			r.fail(fmt.Sprintf("attach: %v", err))
			return &Event{Kind: EvOffline}, nil
		}
	case ActRefresh:
		if err := r.Driver.Refresh(a.Segments); err != nil {
			r.log.Warn("refresh failed", "err", err)
		}
	case ActDisconnect:
		r.Driver.Disconnect()
	case ActSetState:
		r.writeIn(r.Self, r.Self+"/state", a.State.Value())
	case ActRemove:
		r.Driver.Remove()
	case ActScanLUNs:
		ev, err := r.scan()
		if err != nil {
			return nil, err
		}
		return &ev, nil
	case ActAttachLUN:
		n := a.LUN
		var once sync.Once
		r.Driver.AttachLUN(LUN{Index: n, PDev: a.PDev, VDev: a.VDev}, func(err error) {
			once.Do(func() { r.done.push(Event{Kind: EvLUNDone, LUN: n, Err: err}) })
		})
	case ActDetachLUN:
		r.Driver.DetachLUN(a.LUN)
	case ActSetLUNState:
		if a.Reason != "" {
			r.log.Warn("LUN refused", "lun", devName(a.LUN), "state", int(a.State), "reason", a.Reason)
		}
		if err := r.setLUNState(a); err != nil {
			r.log.Info("LUN state not written", "lun", devName(a.LUN), "state", int(a.State), "why", err)
		}
	case ActFail:
		r.fail(a.Reason)
	case ActWarn:
		r.log.Warn(a.Reason)
	}
	return nil, nil
}

// publish writes a backend's feature-sg-grant.
func (r *Runner) publish() error {
	key := r.Self + "/" + vscsiif.KeyFeatureSGGrant
	err := r.Store.Transaction(func(tx xen.Tx) error {
		if _, err := tx.Read(r.Self); err != nil {
			return err
		}
		if r.SGGrant <= 0 {
			return tx.Remove(key)
		}
		return tx.Write(key, strconv.Itoa(r.SGGrant))
	})
	if err != nil && !errors.Is(err, xen.ErrNotFound) {
		return fmt.Errorf("vscsibus: publish %s: %w", r.Self, err)
	}
	return nil
}

// connect carries out ActConnect: a backend reads the frontend's ring and
// hands it to the driver; a frontend has the driver make one and
// publishes it.
func (r *Runner) connect() error {
	if r.backend {
		ring, err := readRing(r.Store, r.Peer)
		if err != nil {
			return err
		}
		_, err = r.Driver.Connect(ring)
		return err
	}
	ring, err := r.Driver.Connect(Ring{})
	if err != nil {
		return err
	}
	err = r.Store.Transaction(func(tx xen.Tx) error {
		if _, err := tx.Read(r.Self); err != nil {
			return err
		}
		for _, kv := range [][2]string{
			{vscsiif.KeyRingRef, strconv.FormatUint(uint64(ring.Ref), 10)},
			{vscsiif.KeyEventChannel, strconv.FormatUint(uint64(ring.Port), 10)},
			{vscsiif.KeyProtocol, ring.ABI.String()},
		} {
			if err := tx.Write(r.Self+"/"+kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// The machine disconnects on the error, which frees the ring.
		return fmt.Errorf("publish ring in %s: %w", r.Self, err)
	}
	return nil
}

// readRing reads the ring a frontend published in its directory dir:
// ring-ref and event-channel (both required, decimal) and protocol.
func readRing(st xenbus.Reader, dir string) (Ring, error) {
	var ring Ring
	ref, err := xenbus.ReadNumber[int64](st, dir+"/"+vscsiif.KeyRingRef, -1)
	if err != nil {
		return ring, err
	}
	port, err := xenbus.ReadNumber[int64](st, dir+"/"+vscsiif.KeyEventChannel, -1)
	if err != nil {
		return ring, err
	}
	switch {
	case ref < 0 || port < 0:
		return ring, fmt.Errorf("frontend %s has not published %s and %s", dir, vscsiif.KeyRingRef, vscsiif.KeyEventChannel)
	case ref > 1<<32-1:
		return ring, fmt.Errorf("%s/%s %d is over 32 bits", dir, vscsiif.KeyRingRef, ref)
	case port > 1<<32-1:
		return ring, fmt.Errorf("%s/%s %d is over 32 bits", dir, vscsiif.KeyEventChannel, port)
	}
	ring.Ref, ring.Port = xen.GrantRef(ref), xen.Port(port)
	proto, err := st.Read(dir + "/" + vscsiif.KeyProtocol)
	if err != nil && !errors.Is(err, xen.ErrNotFound) {
		return ring, err
	}
	if ring.ABI, err = blkif.ParseProtocol(strings.TrimSpace(proto)); err != nil {
		return ring, err
	}
	return ring, nil
}

// devsDir is the backend's vscsi-devs, the one list of a vhost's LUNs.
func (r *Runner) devsDir() string {
	if r.backend {
		return r.Self + "/" + vscsiif.KeyDevs
	}
	return r.Peer + "/" + vscsiif.KeyDevs
}

// scan answers ActScanLUNs: every directory under the backend's
// vscsi-devs with its state, p-dev and v-dev ("" if absent), and for a
// frontend the backend's feature-sg-grant, in one transaction so that
// the snapshot is one moment of the store. A directory whose name is not
// dev-N is listed without its nodes (the machine ignores it).
func (r *Runner) scan() (Event, error) {
	ev := Event{Kind: EvLUNs}
	dir := r.devsDir()
	err := r.Store.Transaction(func(tx xen.Tx) error {
		ev.Devs, ev.SGGrant = nil, ""
		read := func(path string) (string, error) {
			v, err := tx.Read(path)
			if errors.Is(err, xen.ErrNotFound) {
				return "", nil
			}
			return v, err
		}
		names, err := tx.Directory(dir)
		if err != nil && !errors.Is(err, xen.ErrNotFound) {
			return err
		}
		for _, name := range names {
			d := DevNodes{Name: name}
			if _, err := ParseDevName(name); err == nil {
				p := dir + "/" + name + "/"
				for _, f := range []struct {
					key string
					v   *string
				}{{vscsiif.KeyDevState, &d.State}, {vscsiif.KeyPDev, &d.PDev}, {vscsiif.KeyVDev, &d.VDev}} {
					if *f.v, err = read(p + f.key); err != nil {
						return err
					}
				}
			}
			ev.Devs = append(ev.Devs, d)
		}
		if !r.backend {
			ev.SGGrant, err = read(r.Peer + "/" + vscsiif.KeyFeatureSGGrant)
		}
		return err
	})
	if err != nil {
		return ev, fmt.Errorf("vscsibus: read %s: %w", dir, err)
	}
	return ev, nil
}

// errNotFrom is a compare-and-set's refusal: the node no longer holds
// what the machine read.
type errNotFrom struct {
	want xenbus.State
	raw  string
}

func (e errNotFrom) Error() string {
	return fmt.Sprintf("state is %q, not %d", clip(e.raw), int(e.want))
}

// setLUNState carries out ActSetLUNState in this end's directory, in one
// transaction: on a backend, only if vscsi-devs/dev-N is still there
// and, unless From is Unknown, its state still reads From; on a
// frontend, which keeps its own dev-N/state, only if its vhost directory
// is still there (From is always Unknown). A refusal writes nothing and
// is returned; the next scan shows the machine why.
func (r *Runner) setLUNState(a Action) error {
	dir := r.Self + "/" + vscsiif.DevPath(a.LUN)
	mustExist := dir
	if !r.backend {
		mustExist = r.Self
	}
	return r.Store.Transaction(func(tx xen.Tx) error {
		if _, err := tx.Read(mustExist); err != nil {
			return err
		}
		if a.From != xenbus.Unknown {
			v, err := tx.Read(dir + "/" + vscsiif.KeyDevState)
			if err != nil {
				return err
			}
			if lunState(v) != a.From {
				return errNotFrom{want: a.From, raw: v}
			}
		}
		return tx.Write(dir+"/"+vscsiif.KeyDevState, a.State.Value())
	})
}

// fail writes reason to this end's error node (ActFail, a failed
// connect or attach).
func (r *Runner) fail(reason string) {
	r.log.Error("vhost failed", "reason", reason)
	r.writeIn(r.Self, r.Self+"/error", reason)
}

// writeIn writes path in a transaction that first checks that dir is
// there: writing would otherwise bring back a directory the toolstack
// removed, which then makes the next attach of the vhost fail.
func (r *Runner) writeIn(dir, path, value string) {
	err := r.Store.Transaction(func(tx xen.Tx) error {
		if _, err := tx.Read(dir); err != nil {
			return err
		}
		return tx.Write(path, value)
	})
	if err != nil && !errors.Is(err, xen.ErrNotFound) {
		r.log.Warn("cannot write", "node", path, "value", value, "err", err)
	}
}

func (r *Runner) readState(dir string) xenbus.State {
	v, err := r.Store.Read(dir + "/state")
	if err != nil {
		return xenbus.Unknown
	}
	return xenbus.ParseState(strings.TrimSpace(v))
}

// lunResults carries the outcomes of AttachLUN, which may come from any
// goroutine, to Run's. It never blocks a caller: at most one open is
// outstanding per LUN the machine holds, and outcomes after Run has
// returned are dropped.
type lunResults struct {
	mu      sync.Mutex
	pending []Event
	closed  bool
	wake    chan struct{}
}

func newLUNResults() *lunResults { return &lunResults{wake: make(chan struct{}, 1)} }

func (q *lunResults) push(ev Event) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.pending = append(q.pending, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *lunResults) ready() <-chan struct{} { return q.wake }

func (q *lunResults) take() []Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.pending
	q.pending = nil
	return out
}

func (q *lunResults) close() {
	q.mu.Lock()
	q.closed, q.pending = true, nil
	q.mu.Unlock()
}
