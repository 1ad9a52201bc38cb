package xenbus

import "fmt"

// EventKind says what happened.
type EventKind int

const (
	// EvStart: the driver took the device; nothing is published yet.
	EvStart EventKind = iota
	// EvPeerState: the other end's state node changed (Event.State).
	// A removed node arrives as Unknown.
	EvPeerState
	// EvConnectDone: the ActConnect the machine asked for finished
	// (Event.Err non-nil if it failed).
	EvConnectDone
	// EvOffline: the device is being removed: the toolstack cleared the
	// backend's `online` node (backend), or the local user asked to detach
	// (frontend).
	EvOffline
	// EvPeerLost: the transport says the other end is gone (its event
	// channel closed, its domain released) even if its state node still
	// claims otherwise.
	EvPeerLost
	// EvHotplugDone: backend only — the toolstack's hotplug script
	// reported the device ready (libxl's block script wrote
	// hotplug-status=connected). Only a machine made by
	// NewHotplugBackend waits for it.
	EvHotplugDone
)

// Event is one input to a machine.
type Event struct {
	Kind  EventKind
	State State // for EvPeerState
	Err   error // for EvConnectDone
}

// ActionKind says what the driver must do.
type ActionKind int

const (
	// ActPublish: write this end's static nodes (a backend's features, sizes).
	ActPublish ActionKind = iota
	// ActConnect: backend — read the frontend's ring-ref, event-channel,
	// protocol and features, map the rings and start serving; frontend —
	// allocate and grant rings, bind event channels, write them. The driver
	// answers with EvConnectDone.
	ActConnect
	// ActAttach: frontend only — the backend is Connected: read sectors,
	// info and sector-size and start I/O (re-issuing what was in flight
	// after a reconnect).
	ActAttach
	// ActRefresh: frontend only — a Connected backend rewrote its nodes
	// (online resize): re-read sectors.
	ActRefresh
	// ActDisconnect: stop I/O, unmap or revoke the rings, unbind the event
	// channels. Requests in flight stay queued on a frontend.
	ActDisconnect
	// ActSetState: write this end's state node (Action.State).
	ActSetState
	// ActRemove: the device is gone for good: remove this end's nodes and
	// forget it.
	ActRemove
)

// Action is one output of a machine.
type Action struct {
	Kind  ActionKind
	State State // for ActSetState
}

func (a Action) String() string {
	switch a.Kind {
	case ActPublish:
		return "publish"
	case ActConnect:
		return "connect"
	case ActAttach:
		return "attach"
	case ActRefresh:
		return "refresh"
	case ActDisconnect:
		return "disconnect"
	case ActSetState:
		return "set-state " + a.State.String()
	case ActRemove:
		return "remove"
	}
	return fmt.Sprintf("Action(%d)", int(a.Kind))
}

func setState(s State) Action { return Action{Kind: ActSetState, State: s} }

// Machine is one end of one device's handshake. Its zero value is not
// usable; build one with NewBackend or NewFrontend.
type Machine struct {
	backend bool
	self    State
	peer    State
	online  bool
	// connecting: an ActConnect is outstanding; its EvConnectDone decides.
	connecting bool
	// connected: the data path is up (rings mapped/granted), so leaving
	// must disconnect first.
	connected bool
	// reattach: a backend's connect was to rings a frontend published
	// for an earlier backend (a backend restart). Those may be
	// stale — the frontend may be noticing the old backend's death — so
	// failing to map them is not the frontend's fault: wait in InitWait
	// for it to start over instead of closing the device.
	reattach bool
	// peerAhead: the frontend was already Initialised or Connected when
	// this backend started. It got there with an earlier backend (a
	// frontend publishes its rings only on seeing InitWait), so the rings
	// it published may be stale even while its state still says
	// Initialised: it attaches before it writes Connected. Cleared once
	// the frontend moves.
	peerAhead bool
	removed   bool
	// peerSeen: the other end has shown a state. Unknown after that
	// means its nodes were removed (the guest is gone); before it, only
	// that it has not written yet.
	peerSeen bool
	// awaitHotplug: a backend whose toolstack runs a hotplug script
	// after seeing InitWait stays in InitWait until EvHotplugDone. libxl
	// waits for exactly InitWait before it runs the script, and its
	// block script refuses a device whose state is no longer InitWait,
	// so connecting first would fail the attach (Linux's blkback holds
	// the same way, until the script's physical-device appears).
	awaitHotplug bool
}

// NewBackend returns the machine of a backend device that is online.
func NewBackend() *Machine { return &Machine{backend: true, online: true} }

// NewHotplugBackend returns the machine of a backend device that is
// online and whose toolstack runs a hotplug script: it connects no
// frontend before EvHotplugDone.
func NewHotplugBackend() *Machine {
	return &Machine{backend: true, online: true, awaitHotplug: true}
}

// NewFrontend returns the machine of a frontend device.
func NewFrontend() *Machine { return &Machine{online: true} }

// Self is this end's state as last published through ActSetState.
func (m *Machine) Self() State { return m.self }

// Peer is the other end's state as last seen.
func (m *Machine) Peer() State { return m.peer }

// Removed reports whether the machine has finished (after ActRemove).
func (m *Machine) Removed() bool { return m.removed }

// Step feeds one event and returns the actions to carry out, in order.
func (m *Machine) Step(ev Event) []Action {
	if m.removed {
		return nil
	}
	var out []Action
	emit := func(a ...Action) {
		for _, x := range a {
			if x.Kind == ActSetState {
				if m.self == x.State {
					continue
				}
				m.self = x.State
			}
			out = append(out, x)
		}
	}
	if ev.Kind == EvPeerState {
		m.peer = ev.State
		if ev.State != Unknown {
			m.peerSeen = true
		}
	}
	if m.backend {
		m.stepBackend(ev, emit)
	} else {
		m.stepFrontend(ev, emit)
	}
	return out
}

func (m *Machine) disconnect(emit func(...Action)) {
	if m.connected || m.connecting {
		m.connected, m.connecting = false, false
		emit(Action{Kind: ActDisconnect})
	}
}

func (m *Machine) remove(emit func(...Action)) {
	m.removed = true
	emit(Action{Kind: ActRemove})
}

func (m *Machine) stepBackend(ev Event, emit func(...Action)) {
	switch ev.Kind {
	case EvStart:
		m.peerAhead = m.peer == Initialised || m.peer == Connected
		emit(Action{Kind: ActPublish}, setState(InitWait))
		// A frontend that was already waiting (backend restart) connects now.
		m.backendPeerChanged(emit)
	case EvPeerState:
		if m.peer != Initialised && m.peer != Connected {
			m.peerAhead = false
		}
		m.backendPeerChanged(emit)
	case EvConnectDone:
		if !m.connecting {
			return
		}
		m.connecting = false
		reattach := m.reattach
		m.reattach = false
		if ev.Err != nil {
			if reattach {
				emit(Action{Kind: ActDisconnect})
				return
			}
			// blkback's answer to a frontend it cannot serve: Closing,
			// with the reason in the error node the driver writes.
			emit(Action{Kind: ActDisconnect}, setState(Closing))
			return
		}
		m.connected = true
		emit(setState(Connected))
	case EvOffline:
		m.online = false
		switch m.peer {
		case Closed, Unknown:
			m.disconnect(emit)
			emit(setState(Closed))
			m.remove(emit)
		default:
			emit(setState(Closing))
		}
	case EvPeerLost:
		m.disconnect(emit)
		emit(setState(Closed))
		if !m.online {
			m.remove(emit)
		}
	case EvHotplugDone:
		if m.awaitHotplug {
			m.awaitHotplug = false
			m.backendPeerChanged(emit)
		}
	}
}

func (m *Machine) backendPeerChanged(emit func(...Action)) {
	if m.self == Unknown || m.self == Initialising {
		return // not started
	}
	switch m.peer {
	case Initialising:
		// A frontend (re)starting: drop whatever we had of its old
		// incarnation and be ready for it again.
		if !m.online {
			return
		}
		if m.self != InitWait || m.connected || m.connecting {
			m.disconnect(emit)
			emit(Action{Kind: ActPublish}, setState(InitWait))
		}
	case Initialised, Connected:
		if m.self == InitWait && !m.connecting && !m.connected && m.online && !m.awaitHotplug {
			m.connecting = true
			// A frontend already Connected, or already Initialised
			// when we started, got there with an earlier backend: its
			// rings may be stale.
			m.reattach = m.peer == Connected || m.peerAhead
			emit(Action{Kind: ActConnect})
		}
	case Closing:
		m.disconnect(emit)
		emit(setState(Closing))
	case Closed:
		m.disconnect(emit)
		emit(setState(Closed))
		if !m.online {
			m.remove(emit)
		}
	case Unknown:
		// The frontend's nodes were removed: the guest is gone (even in
		// the middle of the handshake, if it had shown a state before).
		if m.self != InitWait || m.connected || m.connecting || m.peerSeen {
			m.disconnect(emit)
			emit(setState(Closed))
		}
		if !m.online {
			m.remove(emit)
		}
	}
}

func (m *Machine) stepFrontend(ev Event, emit func(...Action)) {
	switch ev.Kind {
	case EvStart:
		emit(setState(Initialising))
		m.frontendPeerChanged(emit)
	case EvPeerState:
		m.frontendPeerChanged(emit)
	case EvConnectDone:
		if !m.connecting {
			return
		}
		m.connecting = false
		if ev.Err != nil {
			emit(Action{Kind: ActDisconnect}, setState(Closed))
			return
		}
		m.connected = true
		emit(setState(Initialised))
		if m.peer == Connected {
			emit(Action{Kind: ActAttach}, setState(Connected))
		}
	case EvOffline:
		m.online = false
		if m.peer == Closed || m.peer == Unknown || !m.connected && !m.connecting {
			m.disconnect(emit)
			emit(setState(Closed))
			m.remove(emit)
			return
		}
		emit(setState(Closing))
	case EvPeerLost:
		// The backend died under us. Start over: Initialising tells a
		// restarted backend to offer InitWait again, and we connect when
		// it does, re-issuing what was in flight.
		m.disconnect(emit)
		if !m.online {
			emit(setState(Closed))
			m.remove(emit)
			return
		}
		emit(setState(Initialising))
		m.frontendPeerChanged(emit)
	}
}

func (m *Machine) frontendPeerChanged(emit func(...Action)) {
	if m.self == Unknown {
		return // not started
	}
	switch m.peer {
	case InitWait:
		// While Initialised or Connected, InitWait means a restarted
		// backend re-attaching to our rings (it answers what was
		// unanswered and comes back Connected); Linux's blkfront ignores
		// it too. Otherwise it is the backend ready for us.
		if m.online && !m.connecting && !m.connected {
			m.connecting = true
			emit(Action{Kind: ActConnect})
		}
	case Connected:
		switch {
		case m.self == Initialised && m.connected:
			emit(Action{Kind: ActAttach}, setState(Connected))
		case m.self == Connected:
			emit(Action{Kind: ActRefresh})
		}
	case Closing, Closed:
		m.disconnect(emit)
		emit(setState(Closed))
		if !m.online {
			m.remove(emit)
		}
	case Unknown:
		if m.connected || m.connecting {
			m.disconnect(emit)
			emit(setState(Closed))
		}
		if !m.online {
			m.remove(emit)
		}
	}
}
