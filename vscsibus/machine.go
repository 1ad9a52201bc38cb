// Package vscsibus is the xenstore side of Xen's PV SCSI protocol
// (vscsiif.h, "Backend/frontend protocol"): a vhost's handshake and the
// life of each of its LUNs (vscsi-devs/dev-N), as two pure machines, a
// Backend and a Frontend. Like xenbus.Machine, which each wraps for the
// vhost's own state, a machine holds no store, no goroutine and no
// clock: the driver feeds it events and carries out the actions it
// returns, in order. Runner (run.go) is that loop over a xen.Store, for
// either end, calling a Driver for the device's own work (rings, LUNs).
//
// What the machines add to xenbus's handshake:
//   - LUNs are read only when the protocol says to (Linux's scsiback and
//     scsifront scan vscsi-devs at their peer's state changes, never on
//     a watch of their own): the machine asks (ActScanLUNs) and is given
//     a snapshot (EvLUNs).
//   - Opening what a LUN's p-dev names, or adding a LUN on the guest's
//     side, is an action whose outcome comes back as an event
//     (ActAttachLUN, EvLUNDone); a vhost's state moves on only once
//     every such action has come back.
//   - A LUN's state node is written compare-and-set (ActSetLUNState with
//     From), so the backend never writes over a value the toolstack wrote
//     after the backend last read it, nor into a removed directory.
//
// Where vscsiif.h and Linux differ, the machines do as Linux does; where
// Linux is lax or loses a LUN, they refuse or recover. docs/PROTOCOL.md
// (Part 4, "The state protocol") lists each case.
package vscsibus

import (
	"fmt"
	"slices"

	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xenbus"
)

// EventKind says what happened.
type EventKind int

const (
	// EvStart: the driver took the vhost. A backend's event carries the
	// toolstack's feature-host node (FeatureHost, "" if absent).
	EvStart EventKind = iota
	// EvPeerState: the other end's state node changed (State; a removed
	// or garbled node is Unknown).
	EvPeerState
	// EvConnectDone: the ActConnect asked for finished (Err if it failed).
	EvConnectDone
	// EvOffline: the toolstack cleared a backend's online node, or the
	// local user detached a frontend.
	EvOffline
	// EvPeerLost: the transport saw the other end vanish.
	EvPeerLost
	// EvLUNs: the answer to ActScanLUNs: every directory under the
	// backend's vscsi-devs (Devs), and for a frontend the backend's
	// feature-sg-grant (SGGrant, "" if absent).
	EvLUNs
	// EvLUNDone: the ActAttachLUN for LUN finished (Err if it failed).
	EvLUNDone
)

// Event is one input to a machine.
type Event struct {
	Kind        EventKind
	State       xenbus.State // EvPeerState
	Err         error        // EvConnectDone, EvLUNDone
	FeatureHost string       // EvStart, backend
	Devs        []DevNodes   // EvLUNs
	SGGrant     string       // EvLUNs, frontend
	LUN         int          // EvLUNDone
}

// DevNodes is one directory under the backend's vscsi-devs as read: its
// name and its nodes' raw values, "" for a node that is absent.
type DevNodes struct {
	Name              string
	State, PDev, VDev string
}

// ActionKind says what the driver must do.
type ActionKind int

const (
	// The vhost's handshake, as xenbus's actions of the same names.
	//
	// ActPublish: backend — write feature-sg-grant (the most data
	// segments of an SG_GRANT request it serves).
	ActPublish ActionKind = iota
	// ActConnect: backend — read the frontend's ring-ref, event-channel
	// and protocol (a single-page ring), map the ring, bind the channel;
	// frontend — grant a ring page, allocate the channel, write them.
	// Answer EvConnectDone before feeding any other event.
	ActConnect
	// ActAttach: frontend — start I/O, with at most Segments data
	// segments a request (the backend's feature-sg-grant read by
	// SGLimit). LUNs are added after it: adding one may send commands.
	ActAttach
	// ActRefresh: frontend — the backend rewrote Connected; Segments as
	// it now stands.
	ActRefresh
	ActDisconnect
	ActSetState
	// ActRemove: forget the vhost and close every LUN it holds, attached
	// or still opening.
	ActRemove
	// ActScanLUNs: read every directory under the backend's vscsi-devs
	// (and, for a frontend, the backend's feature-sg-grant) and answer
	// EvLUNs.
	ActScanLUNs
	// ActAttachLUN: backend — open what PDev names and serve it at VDev's
	// channel:target:lun; frontend — add the LUN at VDev. Answer
	// EvLUNDone.
	ActAttachLUN
	// ActDetachLUN: backend — stop routing requests to the LUN (a request
	// for it is then answered NO_CONNECT) and close it once its requests
	// in flight have completed; frontend — remove the LUN.
	ActDetachLUN
	// ActSetLUNState: write vscsi-devs/dev-LUN/state = State in this
	// end's directory, in a transaction that first checks that the
	// directory exists (a backend's dev-LUN; a frontend's own vhost
	// directory, under which it keeps its own dev-LUN/state) and, unless
	// From is Unknown, that the node still reads From; otherwise write
	// nothing (the next scan shows why).
	ActSetLUNState
	// ActFail: the vhost cannot be served; write Reason to the error node.
	ActFail
	// ActWarn: something read was refused or ignored; log Reason.
	ActWarn
)

// Action is one output of a machine.
type Action struct {
	Kind     ActionKind
	State    xenbus.State // ActSetState, ActSetLUNState
	From     xenbus.State // ActSetLUNState
	LUN      int          // ActAttachLUN, ActDetachLUN, ActSetLUNState
	PDev     string       // ActAttachLUN, backend
	VDev     VDev         // ActAttachLUN
	Segments int          // ActAttach, ActRefresh (frontend)
	Reason   string       // ActSetLUNState (why, when refusing), ActFail, ActWarn
}

func (a Action) String() string {
	var s string
	switch a.Kind {
	case ActPublish:
		s = "publish"
	case ActConnect:
		s = "connect"
	case ActAttach:
		s = fmt.Sprintf("attach segments=%d", a.Segments)
	case ActRefresh:
		s = fmt.Sprintf("refresh segments=%d", a.Segments)
	case ActDisconnect:
		s = "disconnect"
	case ActSetState:
		s = "set-state " + a.State.String()
	case ActRemove:
		s = "remove"
	case ActScanLUNs:
		s = "scan-luns"
	case ActAttachLUN:
		s = fmt.Sprintf("attach-lun %s v-dev=%s", devName(a.LUN), a.VDev)
		if a.PDev != "" {
			s += " p-dev=" + a.PDev
		}
	case ActDetachLUN:
		s = "detach-lun " + devName(a.LUN)
	case ActSetLUNState:
		// Numbers, as vscsiif.h writes a LUN's states.
		s = fmt.Sprintf("lun-state %s %d", devName(a.LUN), int(a.State))
		if a.From != xenbus.Unknown {
			s = fmt.Sprintf("lun-state %s %d->%d", devName(a.LUN), int(a.From), int(a.State))
		}
	case ActFail:
		s = "fail"
	case ActWarn:
		s = "warn"
	default:
		s = fmt.Sprintf("Action(%d)", int(a.Kind))
	}
	if a.Reason != "" {
		s += " (" + a.Reason + ")"
	}
	return s
}

// fromVhost turns an action of the wrapped xenbus.Machine into ours.
func fromVhost(a xenbus.Action) Action {
	return Action{Kind: vhostActions[a.Kind], State: a.State}
}

var vhostActions = map[xenbus.ActionKind]ActionKind{
	xenbus.ActPublish:    ActPublish,
	xenbus.ActConnect:    ActConnect,
	xenbus.ActAttach:     ActAttach,
	xenbus.ActRefresh:    ActRefresh,
	xenbus.ActDisconnect: ActDisconnect,
	xenbus.ActSetState:   ActSetState,
	xenbus.ActRemove:     ActRemove,
}

// toVhost is the event of the wrapped xenbus.Machine, for the events it
// takes.
func toVhost(ev Event) (xenbus.Event, bool) {
	switch ev.Kind {
	case EvStart:
		return xenbus.Event{Kind: xenbus.EvStart}, true
	case EvPeerState:
		return xenbus.Event{Kind: xenbus.EvPeerState, State: ev.State}, true
	case EvConnectDone:
		return xenbus.Event{Kind: xenbus.EvConnectDone, Err: ev.Err}, true
	case EvOffline:
		return xenbus.Event{Kind: xenbus.EvOffline}, true
	case EvPeerLost:
		return xenbus.Event{Kind: xenbus.EvPeerLost}, true
	}
	return xenbus.Event{}, false
}

// The LUN states, as XenbusStates (vscsiif pins the numbers).
const (
	lunNew       = xenbus.State(vscsiif.LUNStateNew)
	lunAttached  = xenbus.State(vscsiif.LUNStateAttached)
	lunConnected = xenbus.State(vscsiif.LUNStateConnected)
	lunRemove    = xenbus.State(vscsiif.LUNStateRemove)
	lunRemoved   = xenbus.State(vscsiif.LUNStateRemoved)
)

// pass is what a machine does with the LUNs at one point of the
// protocol: scan, act on each LUN, wait for what it started, and then
// move the vhost's state.
type pass uint8

const (
	passNone pass = iota
	// backend: the rings are mapped; attach the new LUNs, offer every
	// served one (3), then Connected. Frontend: the backend is Connected;
	// start I/O and add the offered LUNs, then Connected.
	passConnect
	// backend: the frontend is Reconfiguring; detach the LUNs at 5 (6),
	// attach the new ones (3), then Reconfigured. Frontend: the backend
	// is Reconfiguring; remove the LUNs at 5, then Reconfiguring.
	passReconfigure
	// backend: the frontend is Connected; promote the LUNs it was offered
	// (3 → 4), then Connected if Reconfigured. Frontend: the backend is
	// Reconfigured; add the offered LUNs, then Connected.
	passPromote
	// frontend: the backend rewrote Connected; re-read feature-sg-grant.
	passRefresh
)

// snapshot is an EvLUNs's directories by index, the ones refused
// reported as warnings.
type snapshot struct {
	devs  map[int]DevNodes
	order []int // indexes, ascending
}

func readSnapshot(devs []DevNodes, warn func(string)) snapshot {
	s := snapshot{devs: make(map[int]DevNodes, min(len(devs), MaxLUNs))}
	var all []int
	named := make(map[int]DevNodes, len(devs))
	for _, d := range devs {
		n, err := ParseDevName(d.Name)
		if err != nil {
			warn("vscsi-devs/" + err.Error() + ": ignored")
			continue
		}
		if _, dup := named[n]; dup {
			warn(devName(n) + " listed twice: the first kept")
			continue
		}
		named[n] = d
		all = append(all, n)
	}
	slices.Sort(all)
	for i, n := range all {
		if i >= MaxLUNs {
			warn(fmt.Sprintf("%s: over %d LUNs on one vhost: ignored", devName(n), MaxLUNs))
			continue
		}
		s.devs[n] = named[n]
		s.order = append(s.order, n)
	}
	return s
}

func (s snapshot) state(n int) (xenbus.State, bool) {
	d, ok := s.devs[n]
	if !ok {
		return xenbus.Unknown, false
	}
	return lunState(d.State), true
}

// emitter collects one Step's actions and keeps this end's state as
// last written.
type emitter struct {
	self xenbus.State
	out  []Action
}

func (e *emitter) emit(a Action) { e.out = append(e.out, a) }

func (e *emitter) setState(s xenbus.State) {
	if e.self == s {
		return
	}
	e.self = s
	e.emit(Action{Kind: ActSetState, State: s})
}

// carry passes on an action of the wrapped xenbus.Machine.
func (e *emitter) carry(a Action) {
	if a.Kind == ActSetState {
		e.setState(a.State)
		return
	}
	e.emit(a)
}

// endsPass reports whether an action of the wrapped xenbus.Machine ends
// the pass under way: the vhost leaves the state the pass was for.
func endsPass(a Action) bool {
	return a.Kind == ActSetState || a.Kind == ActDisconnect || a.Kind == ActRemove
}

func (e *emitter) warn(reason string) { e.emit(Action{Kind: ActWarn, Reason: reason}) }

func (e *emitter) lunState(n int, from, to xenbus.State, reason string) {
	e.emit(Action{Kind: ActSetLUNState, LUN: n, From: from, State: to, Reason: reason})
}
