// Package xenbus is the device handshake of Xen's split drivers: the
// XenbusState values each end publishes in its `state` node, and, as pure
// state machines, what a backend and a frontend do when the other end's
// state changes. A machine holds no store, no goroutine and no clock: the
// driver feeds it events (Step) and carries out the actions it returns, in
// order. The runner in run.go is the thin loop that does so over a xen.Store.
//
// The transitions follow blkif.h's "Startup" sequence and Linux's
// xen-blkback/xen-blkfront, including the reconnect paths:
//   - a frontend that restarts goes back to Initialising; a backend that is
//     Closed but still online answers with InitWait;
//   - a backend that restarts publishes InitWait again; a frontend that sees
//     it while Initialised or Connected tears down and reconnects, then
//     re-issues what was in flight.
package xenbus

import (
	"fmt"
	"strconv"
)

// State is a XenbusState (xen/io/xenbus.h).
type State int

// The XenbusState values. They are the wire: never renumber.
const (
	Unknown       State = 0
	Initialising  State = 1
	InitWait      State = 2
	Initialised   State = 3
	Connected     State = 4
	Closing       State = 5
	Closed        State = 6
	Reconfiguring State = 7
	Reconfigured  State = 8
)

var stateNames = [...]string{"Unknown", "Initialising", "InitWait", "Initialised", "Connected", "Closing", "Closed", "Reconfiguring", "Reconfigured"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// ParseState reads a `state` node's value. A missing or garbled node is
// Unknown: the other end is hostile and its nodes may hold anything.
func ParseState(v string) State {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n >= len(stateNames) {
		return Unknown
	}
	return State(n)
}

// Value is the decimal string written to a `state` node.
func (s State) Value() string { return strconv.Itoa(int(s)) }
