package vscsibus

import (
	"testing"

	"github.com/xenblk/xenblk/xenbus"
)

// world wires a Backend and a Frontend through a perfect store and
// drivers whose every open and add succeeds, with a toolstack writing
// vscsiif.h's sequences.
type world struct {
	t                *testing.T
	be               *Backend
	fe               *Frontend
	devs             store                // the backend's vscsi-devs
	own              map[int]xenbus.State // the frontend's vscsi-devs/dev-N/state
	beState, feState xenbus.State         // the vhost's state nodes
	served, added    map[int]bool
	queue            []func()
}

func newWorld(t *testing.T) *world {
	return &world{t: t, be: NewBackend(), fe: NewFrontend(256), devs: store{},
		own: map[int]xenbus.State{}, served: map[int]bool{}, added: map[int]bool{}}
}

func (w *world) backend(ev Event) {
	for _, a := range w.be.Step(ev) {
		switch a.Kind {
		case ActSetState:
			w.beState = a.State
			w.later(func() { w.frontend(Event{Kind: EvPeerState, State: a.State}) })
		case ActConnect:
			w.backend(Event{Kind: EvConnectDone})
		case ActScanLUNs:
			w.later(func() { w.backend(Event{Kind: EvLUNs, Devs: w.devs.snapshot()}) })
		case ActAttachLUN:
			w.served[a.LUN] = true
			w.later(func() { w.backend(Event{Kind: EvLUNDone, LUN: a.LUN}) })
		case ActDetachLUN:
			w.served[a.LUN] = false
		case ActSetLUNState:
			w.devs.cas(a)
		case ActWarn, ActFail:
			w.t.Errorf("backend: %s", a)
		}
	}
}

func (w *world) frontend(ev Event) {
	for _, a := range w.fe.Step(ev) {
		switch a.Kind {
		case ActSetState:
			w.feState = a.State
			w.later(func() { w.backend(Event{Kind: EvPeerState, State: a.State}) })
		case ActConnect:
			w.frontend(Event{Kind: EvConnectDone})
		case ActScanLUNs:
			w.later(func() { w.frontend(Event{Kind: EvLUNs, Devs: w.devs.snapshot(), SGGrant: "1024"}) })
		case ActAttachLUN:
			w.added[a.LUN] = true
			w.later(func() { w.frontend(Event{Kind: EvLUNDone, LUN: a.LUN}) })
		case ActDetachLUN:
			w.added[a.LUN] = false
		case ActSetLUNState:
			w.own[a.LUN] = a.State
		case ActAttach:
			if a.Segments != 256 {
				w.t.Errorf("frontend attached with %d segments, want 256", a.Segments)
			}
		case ActWarn, ActFail:
			w.t.Errorf("frontend: %s", a)
		}
	}
}

func (w *world) later(f func()) { w.queue = append(w.queue, f) }

func (w *world) drain() {
	for n := 0; len(w.queue) > 0; n++ {
		if n > 10000 {
			w.t.Fatal("the machines do not settle")
		}
		f := w.queue[0]
		w.queue = w.queue[1:]
		f()
	}
}

// reconfigure is the toolstack's "state = 7": the backend's own state
// node, which only the frontend watches.
func (w *world) reconfigure() {
	w.beState = xenbus.Reconfiguring
	w.later(func() { w.frontend(Event{Kind: EvPeerState, State: xenbus.Reconfiguring}) })
	w.drain()
}

func (w *world) want(n int, backend, frontend xenbus.State, served bool) {
	w.t.Helper()
	if w.beState != xenbus.Connected || w.feState != xenbus.Connected {
		w.t.Fatalf("vhost: backend %s frontend %s, want both Connected", w.beState, w.feState)
	}
	got := xenbus.Unknown
	if d, ok := w.devs[n]; ok {
		got = lunState(d.State)
	}
	if got != backend || w.own[n] != frontend || w.served[n] != served || w.added[n] != served {
		w.t.Fatalf("%s: backend node %d, frontend node %d, served %v, added %v; want %d, %d, %v",
			devName(n), got, w.own[n], w.served[n], w.added[n], backend, frontend, served)
	}
}

// vscsiif.h's three sequences, end to end: create a vhost with a LUN,
// add a LUN to it, remove one; from either start order.
func TestBackToBack(t *testing.T) {
	for _, backendFirst := range []bool{true, false} {
		w := newWorld(t)
		w.devs[0] = &DevNodes{Name: "dev-0", State: "1", PDev: "/img/a", VDev: "0:0:0:0"}
		if backendFirst {
			w.backend(Event{Kind: EvStart, FeatureHost: "0"})
			w.drain()
			w.frontend(Event{Kind: EvStart})
		} else {
			w.frontend(Event{Kind: EvStart})
			w.drain()
			w.backend(Event{Kind: EvStart, FeatureHost: "0"})
		}
		w.drain()
		w.want(0, lunConnected, lunConnected, true)

		w.devs[1] = &DevNodes{Name: "dev-1", State: "1", PDev: "/img/b", VDev: "0:0:1:0"}
		w.reconfigure()
		w.want(1, lunConnected, lunConnected, true)

		w.devs[1].State = "5"
		w.reconfigure()
		w.want(1, lunRemoved, lunRemoved, false)
		w.want(0, lunConnected, lunConnected, true)
		delete(w.devs, 1)

		// xl's detach: both ends close, the frontend lets its LUN go,
		// the backend forgets the vhost.
		w.backend(Event{Kind: EvOffline})
		w.drain()
		if !w.be.Removed() || w.beState != xenbus.Closed || w.feState != xenbus.Closed || w.added[0] {
			t.Fatalf("offline: backend %s (removed %v), frontend %s, dev-0 added %v",
				w.beState, w.be.Removed(), w.feState, w.added[0])
		}
	}
}
