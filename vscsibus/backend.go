package vscsibus

import (
	"errors"
	"fmt"
	"slices"

	"github.com/xenblk/xenblk/xenbus"
)

// Backend is the backend end of one vhost. Build it with NewBackend.
type Backend struct {
	vhost *xenbus.Machine
	e     emitter
	peer  xenbus.State
	// hostErr: the toolstack's feature-host asks for what is not served;
	// the vhost is refused at connect, as a frontend that cannot be.
	hostErr error
	started bool
	pass    pass
	// scanning: the pass waits for the EvLUNs it asked for.
	scanning bool
	// settled: the pass has taken the scan that follows its attaches.
	settled bool
	// promoteDue: the frontend wrote Connected since the last promotion.
	promoteDue bool
	luns       map[int]*backLUN
}

// backLUN is a LUN this backend holds: opening, or attached.
type backLUN struct {
	vdev VDev
	// opening: an ActAttachLUN is outstanding.
	opening bool
	// from is the node's value when the open started (1, or 3/4 for a
	// LUN an earlier backend or connection had set up), which the
	// announcing write expects still to find.
	from xenbus.State
	// announce: opened, to be offered (3) once a scan shows the
	// directory still there and its state still from.
	announce bool
	// retry: a reopen (from 3 or 4); failing leaves the node as it is,
	// as Linux's scsiback does (its "try").
	retry bool
}

// NewBackend returns the machine of a vhost's backend that is online.
func NewBackend() *Backend {
	return &Backend{vhost: xenbus.NewBackend(), luns: make(map[int]*backLUN)}
}

// Self is the vhost's state as last written by this end.
func (b *Backend) Self() xenbus.State { return b.e.self }

// Peer is the frontend's state as last seen.
func (b *Backend) Peer() xenbus.State { return b.peer }

// Removed reports whether the vhost is gone (after ActRemove).
func (b *Backend) Removed() bool { return b.vhost.Removed() }

// LUNs lists the LUNs held, in index order, as "dev-N v-dev" plus
// " opening" or " announce" while they are.
func (b *Backend) LUNs() []string {
	var out []string
	for _, n := range sortedKeys(b.luns) {
		l := b.luns[n]
		s := devName(n) + " " + l.vdev.String()
		switch {
		case l.opening:
			s += " opening"
		case l.announce:
			s += " announce"
		}
		out = append(out, s)
	}
	return out
}

// Step feeds one event and returns the actions to carry out, in order.
func (b *Backend) Step(ev Event) []Action {
	if b.vhost.Removed() {
		return nil
	}
	b.e.out = nil
	switch ev.Kind {
	case EvStart:
		if b.started {
			// The driver takes a vhost once; a second start could undo
			// a refusal.
			b.e.warn("started twice: ignored")
			return b.e.out
		}
		b.started = true
		b.hostErr = featureHost(ev.FeatureHost)
	case EvPeerState:
		b.peer = ev.State
		switch ev.State {
		case xenbus.InitWait, xenbus.Reconfigured:
			// Linux's scsiback fails the vhost on these (xenbus_dev_fatal);
			// they are a backend's states, and a frontend that writes them
			// only stalls itself, so they are ignored.
			b.e.warn(fmt.Sprintf("frontend wrote %s, a backend's state: ignored", ev.State))
		case xenbus.Connected:
			b.promoteDue = true
		}
	case EvLUNs:
		b.scanned(ev.Devs)
	case EvLUNDone:
		b.opened(ev.LUN, ev.Err)
	}
	if vev, ok := toVhost(ev); ok {
		b.step(vev)
	}
	b.next()
	return b.e.out
}

// featureHost reads the toolstack's feature-host: "0" (or absent) is a
// vhost of LUNs; "1" asked for a whole host (the LUNs of a host adapter
// passed through as they are), which is not served. Linux's scsiback
// ignores the node.
func featureHost(v string) error {
	switch v {
	case "", "0":
		return nil
	}
	return fmt.Errorf("feature-host=%q: only \"0\" (a vhost of LUNs) is served", clip(v))
}

// step feeds the vhost's handshake and carries its actions over, holding
// back Connected until the connect pass is done.
func (b *Backend) step(ev xenbus.Event) {
	for _, va := range b.vhost.Step(ev) {
		a := fromVhost(va)
		switch {
		case a.Kind == ActConnect && b.hostErr != nil:
			// Closing even when xenbus would wait for a frontend that was
			// there before us: no frontend can be served.
			b.e.emit(Action{Kind: ActFail, Reason: b.hostErr.Error()})
			b.step(xenbus.Event{Kind: xenbus.EvConnectDone, Err: b.hostErr})
			b.e.setState(xenbus.Closing)
		case a.Kind == ActSetState && a.State == xenbus.Connected:
			b.start(passConnect)
		default:
			if endsPass(a) {
				b.pass = passNone
			}
			if a.Kind == ActRemove {
				clear(b.luns)
			}
			b.e.carry(a)
		}
	}
}

func (b *Backend) start(p pass) {
	b.pass, b.scanning, b.settled = p, true, false
	if p == passPromote {
		b.promoteDue = false
	}
	b.e.emit(Action{Kind: ActScanLUNs})
}

// next finishes the pass whose work is done, or starts the one the
// states call for.
func (b *Backend) next() {
	if b.vhost.Removed() {
		return
	}
	if b.pass != passNone {
		if b.scanning || b.opening() {
			return
		}
		if !b.settled && b.announcing() {
			b.settled, b.scanning = true, true
			b.e.emit(Action{Kind: ActScanLUNs})
			return
		}
		p := b.pass
		b.pass = passNone
		switch p {
		case passConnect:
			b.e.setState(xenbus.Connected)
		case passReconfigure:
			b.e.setState(xenbus.Reconfigured)
		case passPromote:
			if b.e.self == xenbus.Reconfigured {
				b.e.setState(xenbus.Connected)
			}
		}
	}
	switch {
	case b.e.self == xenbus.Reconfigured && b.peer == xenbus.Connected:
		b.start(passPromote)
	case b.e.self == xenbus.Connected && b.peer == xenbus.Reconfiguring:
		b.start(passReconfigure)
	case b.e.self == xenbus.Connected && b.peer == xenbus.Connected && b.promoteDue:
		b.start(passPromote)
	}
}

func (b *Backend) opening() bool {
	for _, l := range b.luns {
		if l.opening {
			return true
		}
	}
	return false
}

func (b *Backend) announcing() bool {
	for _, l := range b.luns {
		if l.announce {
			return true
		}
	}
	return false
}

// scanned acts on a snapshot of vscsi-devs. A snapshot nobody asked for
// (its pass was cancelled) only settles what it shows has gone.
func (b *Backend) scanned(devs []DevNodes) {
	s := readSnapshot(devs, b.e.warn)
	p := b.pass
	if !b.scanning {
		p = passNone
	}
	b.scanning = false
	settle := b.settled

	// What the toolstack removed, or changed under a LUN being attached.
	for _, n := range sortedKeys(b.luns) {
		l := b.luns[n]
		st, ok := s.state(n)
		switch {
		case l.opening:
		case !ok:
			b.detach(n, "directory removed")
		case l.announce && st == l.from:
			l.announce = false
			if st != lunAttached {
				b.e.lunState(n, st, lunAttached, "")
			}
		case l.announce && st == lunRemove:
			b.detach(n, "")
			b.e.lunState(n, lunRemove, lunRemoved, "")
		case l.announce:
			b.detach(n, fmt.Sprintf("state became %s while attaching", st))
		}
	}
	if settle {
		return
	}
	switch p {
	case passConnect, passReconfigure:
		// Removals first, so that a LUN replacing another at the same
		// v-dev in one reconfiguration finds it free.
		for _, n := range s.order {
			if st, _ := s.state(n); st == lunRemove {
				b.remove(n)
			}
		}
		for _, n := range s.order {
			switch st, _ := s.state(n); st {
			case lunNew, lunAttached, lunConnected:
				b.add(n, st, s.devs[n])
			}
		}
	case passPromote:
		for _, n := range s.order {
			l := b.luns[n]
			if st, _ := s.state(n); st == lunAttached && l != nil && !l.opening && !l.announce {
				b.e.lunState(n, lunAttached, lunConnected, "")
			}
		}
	}
}

// remove answers a LUN the toolstack set to 5.
func (b *Backend) remove(n int) {
	l := b.luns[n]
	if l != nil && l.opening {
		return // its scan after opening decides
	}
	if l != nil {
		b.detach(n, "")
	}
	b.e.lunState(n, lunRemove, lunRemoved, "")
}

// add attaches a LUN at 1, or one at 3/4 this backend does not hold
// (set up by an earlier backend or lost), or, on connect, offers again
// one it holds.
func (b *Backend) add(n int, st xenbus.State, d DevNodes) {
	if l := b.luns[n]; l != nil {
		switch {
		case l.opening || l.announce:
		case st == lunNew:
			// A new LUN where one is attached: the toolstack replaced
			// dev-N between two scans.
			b.detach(n, "replaced by a new LUN")
			b.add(n, st, d)
		case st == lunConnected && b.pass == passConnect:
			// A (re)connecting frontend adds only the LUNs offered (3).
			b.e.lunState(n, lunConnected, lunAttached, "")
		}
		return
	}
	retry := st != lunNew
	vdev, err := b.valid(n, d)
	if err != nil {
		if retry {
			b.e.warn(devName(n) + ": not reopened: " + err.Error())
		} else {
			b.e.lunState(n, lunNew, lunRemoved, err.Error())
		}
		return
	}
	b.luns[n] = &backLUN{vdev: vdev, opening: true, from: st, retry: retry}
	b.e.emit(Action{Kind: ActAttachLUN, LUN: n, PDev: d.PDev, VDev: vdev})
}

// valid checks a LUN's nodes before anything is opened.
func (b *Backend) valid(n int, d DevNodes) (VDev, error) {
	if d.PDev == "" {
		return VDev{}, errors.New("p-dev is missing")
	}
	if d.VDev == "" {
		return VDev{}, errors.New("v-dev is missing")
	}
	v, err := ParseVDev(d.VDev)
	if err != nil {
		return VDev{}, err
	}
	for m, l := range b.luns { // at most one can match: no two share an address
		if m != n && l.vdev.sameAddr(v) {
			return VDev{}, fmt.Errorf("v-dev %s: channel:target:lun taken by %s", v, devName(m))
		}
	}
	return v, nil
}

// opened takes the outcome of an ActAttachLUN.
func (b *Backend) opened(n int, err error) {
	l := b.luns[n]
	if l == nil || !l.opening {
		b.e.warn(fmt.Sprintf("%s: attach result for no attach in flight: ignored", devName(n)))
		return
	}
	l.opening = false
	if err != nil {
		delete(b.luns, n)
		if l.retry {
			b.e.warn(devName(n) + ": not reopened: " + err.Error())
		} else {
			b.e.lunState(n, l.from, lunRemoved, err.Error())
		}
		return
	}
	l.announce = true
	if b.pass == passNone {
		// No scan is coming: offer it now; the write finds out whether
		// the directory is still there.
		l.announce = false
		if l.from != lunAttached {
			b.e.lunState(n, l.from, lunAttached, "")
		}
	}
}

func (b *Backend) detach(n int, reason string) {
	delete(b.luns, n)
	if reason != "" {
		b.e.warn(devName(n) + ": " + reason + ": detached")
	}
	b.e.emit(Action{Kind: ActDetachLUN, LUN: n})
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
