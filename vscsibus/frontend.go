package vscsibus

import (
	"fmt"

	"github.com/xenblk/xenblk/xenbus"
)

// Frontend is the frontend end of one vhost, as Linux's scsifront
// behaves: it adds the LUNs the backend offers (3) when the backend is
// Connected or Reconfigured, removes the ones it sets to 5 when it is
// Reconfiguring, and writes each LUN's outcome in its own
// vscsi-devs/dev-N/state (4 added, 6 removed or failed). Build it with
// NewFrontend.
type Frontend struct {
	vhost *xenbus.Machine
	e     emitter
	peer  xenbus.State
	// own is the most data segments this frontend can put in a request.
	own      int
	pass     pass
	scanning bool
	// refreshDue: the backend rewrote Connected; re-read its features.
	refreshDue bool
	luns       map[int]*frontLUN
}

// frontLUN is a LUN this frontend holds: being added, or added.
type frontLUN struct {
	vdev   VDev
	adding bool
	// drop: removed while being added; removed once added.
	drop bool
}

// NewFrontend returns the machine of a vhost's frontend that can put up
// to maxSegments data segments in one request (vscsiif.SGTableSize or
// less: no SG_GRANT).
func NewFrontend(maxSegments int) *Frontend {
	return &Frontend{vhost: xenbus.NewFrontend(), own: maxSegments, luns: make(map[int]*frontLUN)}
}

// Self is the vhost's state as last written by this end.
func (f *Frontend) Self() xenbus.State { return f.e.self }

// Peer is the backend's state as last seen.
func (f *Frontend) Peer() xenbus.State { return f.peer }

// Removed reports whether the vhost is gone (after ActRemove).
func (f *Frontend) Removed() bool { return f.vhost.Removed() }

// LUNs lists the LUNs held, in index order, as "dev-N v-dev" plus
// " adding" while one is.
func (f *Frontend) LUNs() []string {
	var out []string
	for _, n := range sortedKeys(f.luns) {
		s := devName(n) + " " + f.luns[n].vdev.String()
		if f.luns[n].adding {
			s += " adding"
		}
		out = append(out, s)
	}
	return out
}

// Step feeds one event and returns the actions to carry out, in order.
func (f *Frontend) Step(ev Event) []Action {
	if f.vhost.Removed() {
		return nil
	}
	f.e.out = nil
	switch ev.Kind {
	case EvPeerState:
		f.peer = ev.State
	case EvLUNs:
		f.scanned(ev)
	case EvLUNDone:
		f.added(ev.LUN, ev.Err)
	}
	if vev, ok := toVhost(ev); ok {
		f.step(vev)
	}
	f.next()
	return f.e.out
}

// step feeds the vhost's handshake and carries its actions over: the
// backend's Connected starts the connect pass, which holds back this
// end's Connected until the offered LUNs are added.
func (f *Frontend) step(ev xenbus.Event) {
	for _, va := range f.vhost.Step(ev) {
		a := fromVhost(va)
		switch {
		case a.Kind == ActAttach:
			f.start(passConnect)
		case a.Kind == ActRefresh:
			f.refreshDue = true
		case a.Kind == ActSetState && a.State == xenbus.Connected && f.pass == passConnect:
		default:
			if endsPass(a) {
				f.pass = passNone
			}
			switch {
			case a.Kind == ActRemove:
				clear(f.luns)
			case a.Kind == ActSetState && a.State == xenbus.Closed:
				// scsifront removes its SCSI host, and every LUN with it.
				for _, n := range sortedKeys(f.luns) {
					f.detach(n, "")
				}
			}
			f.e.carry(a)
		}
	}
}

func (f *Frontend) start(p pass) {
	f.pass, f.scanning = p, true
	if p == passRefresh {
		f.refreshDue = false
	}
	f.e.emit(Action{Kind: ActScanLUNs})
}

func (f *Frontend) next() {
	if f.vhost.Removed() {
		return
	}
	if f.pass != passNone {
		if f.scanning || f.adding() {
			return
		}
		p := f.pass
		f.pass = passNone
		switch p {
		case passConnect, passPromote:
			f.e.setState(xenbus.Connected)
		case passReconfigure:
			f.e.setState(xenbus.Reconfiguring)
		}
	}
	switch {
	case f.e.self == xenbus.Connected && f.peer == xenbus.Reconfiguring:
		f.start(passReconfigure)
	case f.e.self == xenbus.Reconfiguring && (f.peer == xenbus.Reconfigured || f.peer == xenbus.Connected):
		// A backend back at Connected without Reconfigured: scsifront
		// goes Connected then too.
		f.start(passPromote)
	case f.e.self == xenbus.Connected && f.refreshDue:
		f.start(passRefresh)
	}
}

func (f *Frontend) adding() bool {
	for _, l := range f.luns {
		if l.adding {
			return true
		}
	}
	return false
}

// scanned acts on a snapshot of the backend's vscsi-devs.
func (f *Frontend) scanned(ev Event) {
	s := readSnapshot(ev.Devs, f.e.warn)
	p := f.pass
	if !f.scanning {
		p = passNone
	}
	f.scanning = false
	segments := SGLimit(ev.SGGrant, f.own)
	switch p {
	case passConnect:
		f.e.emit(Action{Kind: ActAttach, Segments: segments})
		// LUNs kept from an earlier connection stay if still offered.
		for _, n := range sortedKeys(f.luns) {
			if st, _ := s.state(n); !f.luns[n].adding && st != lunAttached && st != lunConnected {
				f.detach(n, "no longer offered")
			}
		}
		for _, n := range s.order {
			// scsifront adds only the LUNs at 3; one at 4 is served too
			// (Linux's scsiback leaves a LUN at 4 when its frontend
			// reconnects), so it is added as well.
			if st, _ := s.state(n); st == lunAttached || st == lunConnected {
				f.add(n, s.devs[n])
			}
		}
	case passReconfigure:
		for _, n := range sortedKeys(f.luns) {
			if st, ok := s.state(n); !f.luns[n].adding && (st == lunRemove || !ok) {
				f.detach(n, "")
			}
		}
	case passPromote:
		for _, n := range s.order {
			if st, _ := s.state(n); st == lunAttached {
				f.add(n, s.devs[n])
			}
		}
	case passRefresh:
		f.e.emit(Action{Kind: ActRefresh, Segments: segments})
	}
}

// add adds a LUN the backend offers, unless it is held already.
func (f *Frontend) add(n int, d DevNodes) {
	if l := f.luns[n]; l != nil {
		if !l.adding {
			f.e.lunState(n, xenbus.Unknown, lunConnected, "")
		}
		return
	}
	v, err := ParseVDev(d.VDev)
	if err != nil {
		// scsifront skips a LUN it cannot address.
		f.e.warn(devName(n) + ": " + err.Error() + ": not added")
		return
	}
	for m, l := range f.luns { // at most one can match: no two share an address
		if l.vdev.sameAddr(v) {
			f.e.lunState(n, xenbus.Unknown, lunRemoved, fmt.Sprintf("v-dev %s: channel:target:lun taken by %s", v, devName(m)))
			return
		}
	}
	f.luns[n] = &frontLUN{vdev: v, adding: true}
	f.e.emit(Action{Kind: ActAttachLUN, LUN: n, VDev: v})
}

// added takes the outcome of adding a LUN.
func (f *Frontend) added(n int, err error) {
	l := f.luns[n]
	if l == nil || !l.adding {
		f.e.warn(fmt.Sprintf("%s: add result for no add in flight: ignored", devName(n)))
		return
	}
	l.adding = false
	if l.drop {
		delete(f.luns, n)
		if err == nil {
			f.e.emit(Action{Kind: ActDetachLUN, LUN: n})
		}
		f.e.lunState(n, xenbus.Unknown, lunRemoved, "")
		return
	}
	if err != nil {
		delete(f.luns, n)
		f.e.lunState(n, xenbus.Unknown, lunRemoved, err.Error())
		return
	}
	f.e.lunState(n, xenbus.Unknown, lunConnected, "")
}

func (f *Frontend) detach(n int, reason string) {
	if l := f.luns[n]; l.adding {
		l.drop = true
		return
	}
	delete(f.luns, n)
	if reason != "" {
		f.e.warn(devName(n) + ": " + reason + ": removed")
	}
	f.e.emit(Action{Kind: ActDetachLUN, LUN: n})
	f.e.lunState(n, xenbus.Unknown, lunRemoved, "")
}
