package vscsibus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/xenblk/xenblk/xenbus"
)

// store is the vscsi-devs of one vhost as the fuzz harness keeps it:
// the toolstack's writes come from the fuzz input, the machine's
// compare-and-set writes are applied as the runner would.
type store map[int]*DevNodes

func (s store) snapshot() []DevNodes {
	var out []DevNodes
	for n := range 4 {
		if d, ok := s[n]; ok {
			out = append(out, *d)
		}
	}
	return out
}

func (s store) cas(a Action) {
	d, ok := s[a.LUN]
	if !ok || a.From != xenbus.Unknown && lunState(d.State) != a.From {
		return
	}
	d.State = a.State.Value()
}

// toolstack applies one toolstack write chosen by x to LUN n.
func (s store) toolstack(n int, x byte) {
	v := []string{"0:0:0:0", "0:0:1:0", "1:0:0:0", "0:0", ""}[int(x>>4)%5]
	switch x % 6 {
	case 0, 1:
		s[n] = &DevNodes{Name: devName(n), State: "1", PDev: "/img", VDev: v}
	case 2:
		if d, ok := s[n]; ok {
			d.State = "5"
		}
	case 3:
		delete(s, n)
	case 4:
		s[n] = &DevNodes{Name: devName(n), State: []string{"3", "4", "6", "junk", "2"}[int(x>>4)%5], PDev: "/img", VDev: v}
	case 5:
		if d, ok := s[n]; ok {
			d.VDev = v
		}
	}
}

// backendMove reports whether a backend may move its vhost from one
// state to another: InitWait (ready for a frontend, again), Closing and
// Closed from anywhere; Connected only from InitWait (the connect pass)
// or Reconfigured (the frontend back); Reconfigured only from Connected;
// no other state is a backend's to write.
func backendMove(from, to xenbus.State) bool {
	switch to {
	case xenbus.InitWait, xenbus.Closing, xenbus.Closed:
		return from != to
	case xenbus.Connected:
		return from == xenbus.InitWait || from == xenbus.Reconfigured
	case xenbus.Reconfigured:
		return from == xenbus.Connected
	}
	return false
}

// backendLUNEdges are the LUN states a backend writes, from what it read.
var backendLUNEdges = map[[2]xenbus.State]bool{
	{lunNew, lunAttached}: true, {lunNew, lunRemoved}: true,
	{lunConnected, lunAttached}: true, {lunAttached, lunConnected}: true,
	{lunRemove, lunRemoved}: true,
}

// fuzzDrive decodes data, two bytes an event, into events for m against
// a model store and driver, and checks what every machine must keep:
// no panic, its vhost state moves only as move allows, Self is what it
// last wrote, a LUN is attached only when none is held there and
// detached only once attached, and lunState (the side's own rule) holds
// for every LUN state it writes. ActConnect is answered before any other
// event, as xenbus.Runner does; an attach is answered whenever the input
// says, ok or failed.
func fuzzDrive(t *testing.T, m machine, data []byte, move func(from, to xenbus.State) bool, lunState func(Action) bool, extra func(step int)) {
	s := store{}
	pending, held := map[int]bool{}, map[int]bool{}
	self := xenbus.Unknown
	for i := 0; i+1 < len(data); i += 2 {
		op, x := data[i], data[i+1]
		n := int(x) % 4
		var ev Event
		switch op % 9 {
		case 0:
			ev = Event{Kind: EvStart, FeatureHost: []string{"", "0", "1"}[int(x)%3]}
		case 1:
			ev = Event{Kind: EvPeerState, State: xenbus.State(x % 10)}
		case 2:
			ev = Event{Kind: EvConnectDone, Err: connectErr(x)} // stray: no connect in flight
		case 3:
			ev = Event{Kind: EvOffline}
		case 4:
			ev = Event{Kind: EvPeerLost}
		case 5:
			ev = Event{Kind: EvLUNs, Devs: s.snapshot(), SGGrant: fmt.Sprint(int(x) * 7)}
		case 6, 8:
			ev = Event{Kind: EvLUNDone, LUN: n}
			if x&0x80 != 0 {
				ev.Err = errors.New("cannot open")
			}
			if pending[n] {
				pending[n] = false
				held[n] = ev.Err == nil
			}
		case 7:
			s.toolstack(n, x)
			continue
		}
		queue := []Event{ev}
		for len(queue) > 0 {
			ev, queue = queue[0], queue[1:]
			for _, a := range m.Step(ev) {
				switch a.Kind {
				case ActConnect:
					queue = append(queue, Event{Kind: EvConnectDone, Err: connectErr(x)})
				case ActSetState:
					if !move(self, a.State) {
						t.Fatalf("event %d: vhost %s -> %s", i/2, self, a.State)
					}
					self = a.State
				case ActSetLUNState:
					if !lunState(a) {
						t.Fatalf("event %d: %s", i/2, a)
					}
					s.cas(a)
				case ActAttachLUN:
					if pending[a.LUN] || held[a.LUN] {
						t.Fatalf("event %d: %s attached while held", i/2, devName(a.LUN))
					}
					pending[a.LUN] = true
				case ActDetachLUN:
					if !held[a.LUN] {
						t.Fatalf("event %d: %s detached while not attached", i/2, devName(a.LUN))
					}
					held[a.LUN] = false
				case ActAttach, ActRefresh:
					if a.Segments < 26 || a.Segments > 1024 {
						t.Fatalf("event %d: %d segments", i/2, a.Segments)
					}
				case ActRemove:
					clear(pending)
					clear(held)
				}
			}
		}
		if self != m.Self() {
			t.Fatalf("Self() = %s, last written %s", m.Self(), self)
		}
		extra(i / 2)
	}
}

func connectErr(x byte) error {
	if x&0x40 != 0 {
		return errors.New("cannot map ring")
	}
	return nil
}

// FuzzBackend: on top of fuzzDrive's checks, a backend writes LUN states
// only along backendLUNEdges and never holds two LUNs at one
// channel:target:lun.
func FuzzBackend(f *testing.F) {
	f.Add([]byte{0, 0, 1, 3, 2, 0, 7, 0, 5, 0, 6, 0, 5, 0, 1, 4, 5, 0})
	f.Add([]byte{7, 0, 7, 0x11, 1, 3, 0, 0, 5, 0, 6, 0, 6, 1, 5, 0, 1, 7, 7, 2, 5, 0, 1, 4, 5, 0})
	f.Add([]byte{0, 1, 1, 3, 1, 2, 1, 8, 1, 9, 3, 0, 4, 0})
	f.Add([]byte("7!Z2Z020")) // started twice: the second start must not undo the refusal of feature-host=1
	f.Fuzz(func(t *testing.T, data []byte) {
		b := NewBackend()
		fuzzDrive(t, b, data, backendMove, func(a Action) bool {
			return backendLUNEdges[[2]xenbus.State{a.From, a.State}]
		}, func(step int) {
			seen := map[[3]uint16]int{}
			for m, l := range b.luns {
				k := [3]uint16{l.vdev.Channel, l.vdev.Target, l.vdev.LUN}
				if o, dup := seen[k]; dup {
					t.Fatalf("event %d: %s and %s both at %v", step, devName(o), devName(m), k)
				}
				seen[k] = m
			}
		})
	})
}

// frontendMove is backendMove's mirror: Initialising (start, again),
// Closing and Closed from anywhere; Initialised only from Initialising
// or Closed (xenbus.Machine reconnects a closed frontend straight away
// when the backend offers InitWait again);
// Connected only from Initialised or Reconfiguring; Reconfiguring only
// from Connected.
func frontendMove(from, to xenbus.State) bool {
	switch to {
	case xenbus.Initialising, xenbus.Closing, xenbus.Closed:
		return from != to
	case xenbus.Initialised:
		return from == xenbus.Initialising || from == xenbus.Closed
	case xenbus.Connected:
		return from == xenbus.Initialised || from == xenbus.Reconfiguring
	case xenbus.Reconfiguring:
		return from == xenbus.Connected
	}
	return false
}

// FuzzFrontend: on top of fuzzDrive's checks, a frontend writes only
// 4 or 6 for a LUN, and only in its own directory (From Unknown).
func FuzzFrontend(f *testing.F) {
	f.Add([]byte{0, 0, 1, 2, 1, 4, 7, 0x04, 5, 0, 6, 0, 1, 7, 5, 0, 1, 8, 5, 0})
	f.Add([]byte{0, 0, 1, 2, 7, 0x04, 7, 0x15, 1, 4, 5, 0, 4, 0, 1, 2, 1, 4, 5, 0, 1, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDrive(t, NewFrontend(1024), data, frontendMove, func(a Action) bool {
			return a.From == xenbus.Unknown && (a.State == lunConnected || a.State == lunRemoved)
		}, func(int) {})
	})
}
