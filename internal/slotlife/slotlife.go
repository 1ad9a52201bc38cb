// Package slotlife is the life of a frontend's request slot as an
// explicit state machine: the states a slot goes through, the events
// that move it, and a Table of which event moves which state where.
// blkfront and vscsifront each draw their own Table on these states and
// events (they differ where their protocols do) and move their slots only
// through it, so that a move the lifecycle does not draw cannot happen
// silently.
package slotlife

import (
	"fmt"
	"strings"
)

// State is a slot's place in its life:
//
//	free → filling → submitted ⇄ issued → answered | aborted → free
//
// with orphaned for a request whose owner gave up while it was on the
// ring; blkfront adds delivered (a Batch took the outcome) and extra
// (the second slot a SCSI request holds).
type State uint8

const (
	None State = iota // not a state: a Table's "no such move"
	// Free: on the free list.
	Free
	// Filling: taken; its owner builds the request, and nothing else
	// touches it.
	Filling
	// Submitted: complete, not on a live ring (disconnected); the
	// reconnect issues it.
	Submitted
	// Issued: on the live ring, unanswered.
	Issued
	// Orphaned: on the ring, its owner gone. The backend may still write
	// its pages, so it keeps them until it is answered.
	Orphaned
	// Answered: the response is recorded and handed to the owner, who is
	// not done with it.
	Answered
	// Aborted: the device went for good before an outcome was taken.
	Aborted
	// Delivered: a batch took the outcome; the slot is its until released.
	Delivered
	// Extra: held as the ring slot of its partner's extra request; freed
	// with the partner.
	Extra

	States
)

var stateNames = [States]string{"none", "free", "filling", "submitted", "issued", "orphaned", "answered", "aborted", "delivered", "extra"}

func (s State) String() string { return nameOf(s, stateNames[:], "slotState") }

// HandedOut reports whether a slot in state s has an outcome its owner
// was given (or will take): answered or aborted.
func (s State) HandedOut() bool { return s == Answered || s == Aborted }

// Event is what happens to a slot.
type Event uint8

const (
	Take        Event = iota // a new request takes a free slot
	Pair                     // a free slot held for a request's extra ring slot
	Submit                   // the request is complete
	Push                     // written on the live ring
	Answer                   // its response came
	Disconnect               // the ring went away
	GiveUp                   // its owner stops waiting
	Abort                    // the device went for good
	TakeOutcome              // a batch took the outcome off its ready list
	Release                  // its owner is done with it (or an orphan's wait is over)

	Events
)

var eventNames = [Events]string{"take", "pair", "submit", "push", "answer", "disconnect", "give-up", "abort", "take-outcome", "release"}

func (e Event) String() string { return nameOf(e, eventNames[:], "slotEvent") }

// nameOf is v's name in names, or typ(v) for a value out of range.
func nameOf[T State | Event](v T, names []string, typ string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, v)
}

// Table[state][event] is where event moves a slot in state; None: the
// state does not take the event.
type Table [States][Events]State

// On is where ev moves a slot in state s, and whether s takes ev at all.
// None and values out of range take nothing.
func (t *Table) On(s State, ev Event) (State, bool) {
	if s >= States || ev >= Events {
		return None, false
	}
	next := t[s][ev]
	return next, next != None
}

// Core is the life every frontend's slot has: taken, filled,
// submitted, issued on a live ring (back to submitted when the ring goes),
// answered or aborted, released; given up before it is on a ring it is
// free at once, and on the ring it is orphaned. A frontend adds to it
// what its own requests do (a batch's delivery, an orphan's end).
func Core() Table {
	return Table{
		Free:    {Take: Filling},
		Filling: {Submit: Submitted, GiveUp: Free, Abort: Aborted},
		Submitted: {
			Push:   Issued,
			GiveUp: Free, // never on a live ring: nothing can write its pages
			Abort:  Aborted,
		},
		Issued:   {Answer: Answered, Disconnect: Submitted, GiveUp: Orphaned, Abort: Aborted},
		Orphaned: {Disconnect: Orphaned},
		Answered: {Release: Free},
		Aborted: {
			Submit:  Aborted, // aborted while being filled
			Release: Free,
		},
	}
}

// Moves counts the moves t draws.
func (t *Table) Moves() int {
	n := 0
	for s := range t {
		for _, next := range t[s] {
			if next != None {
				n++
			}
		}
	}
	return n
}

// String prints t a line a state that takes any event, in order: the
// state, then event->next for each event it takes.
func (t *Table) String() string {
	var out strings.Builder
	for s := Free; s < States; s++ {
		line := ""
		for ev := Event(0); ev < Events; ev++ {
			if next, ok := t.On(s, ev); ok {
				line += fmt.Sprintf(" %s->%s", ev, next)
			}
		}
		if line != "" {
			fmt.Fprintf(&out, "%s:%s\n", s, line)
		}
	}
	return out.String()
}

// ParseEvent is the event named name (as String prints it).
func ParseEvent(name string) (Event, bool) {
	for ev := Event(0); ev < Events; ev++ {
		if eventNames[ev] == name {
			return ev, true
		}
	}
	return 0, false
}

// ParseState is the state named name (as String prints it).
func ParseState(name string) (State, bool) {
	for s := State(0); s < States; s++ {
		if stateNames[s] == name {
			return s, true
		}
	}
	return 0, false
}

// Check reports a move t draws from None or to a value that is not a
// state: a table that draws one is wrong.
func (t *Table) Check() error {
	for s := range t {
		for ev, next := range t[s] {
			if next != None && (State(s) == None || next >= States) {
				return fmt.Errorf("%v on %v moves to %v", Event(ev), State(s), next)
			}
		}
	}
	return nil
}
