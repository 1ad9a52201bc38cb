package vscsifront

import (
	"fmt"

	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsiif"
)

// slot is one command's place in the vhost: its index is the rqid of its
// requests on the ring, and one ring slot is its own, so that the ring
// can never overflow. Everything it needs is allocated when the vhost
// is built.
type slot struct {
	state slotState
	done  chan struct{} // buffered(1): the outcome is there for the owner
	addr  vscsibus.VDev // the LUN addressed
	req   vscsiif.Request
	rsp   vscsiif.Response
	pages []int // pool pages holding the data, in order
	// dataLen is the command's data length, in pages.
	dataLen int
	// gen counts the slot's lives, so that an abort queued for one life
	// never reaches the next.
	gen uint32
	// Orphaned only: answered, the command's response came; abortOut, its
	// TASK_ABORT is on the ring. The slot is free once the first holds
	// and the second does not: the backend may still write the pages
	// until it answered the command, and an abort answered after the
	// slot's rqid was reused would name the wrong command.
	answered, abortOut bool
}

// slotState is a slot's place in its life:
//
//	free → filling → submitted ⇄ issued → answered | aborted → free
//
// with orphaned for a command whose owner gave up while it was on the
// ring. slotTable says which events move which states, and where.
type slotState uint8

const (
	slotNone slotState = iota // not a state: the table's "no such move"
	// slotFree: on the free list.
	slotFree
	// slotFilling: taken; its owner builds the request.
	slotFilling
	// slotSubmitted: complete, not on a live ring (disconnected); Attach
	// issues it.
	slotSubmitted
	// slotIssued: on the live ring, unanswered.
	slotIssued
	// slotOrphaned: on the ring, its owner gone (context ended): it keeps
	// its pages until the backend answered it (see slot.answered).
	slotOrphaned
	// slotAnswered: the response is in rsp, the owner not done with it.
	slotAnswered
	// slotAborted: the vhost was removed before an answer came.
	slotAborted

	slotStates
)

var slotStateNames = [slotStates]string{"none", "free", "filling", "submitted", "issued", "orphaned", "answered", "aborted"}

func (s slotState) String() string {
	if s < slotStates {
		return slotStateNames[s]
	}
	return fmt.Sprintf("slotState(%d)", uint8(s))
}

// slotEvent is what happens to a slot.
type slotEvent uint8

const (
	evTake       slotEvent = iota // a new command takes a free slot
	evSubmit                      // the command is complete
	evPush                        // written on the live ring
	evAnswer                      // its response came
	evDisconnect                  // the ring went away
	evGiveUp                      // its owner stops waiting
	evAbort                       // the vhost is removed
	evRelease                     // the owner is done with the outcome, or an orphan's wait is over

	slotEvents
)

var slotEventNames = [slotEvents]string{"take", "submit", "push", "answer", "disconnect", "give-up", "abort", "release"}

func (e slotEvent) String() string {
	if e < slotEvents {
		return slotEventNames[e]
	}
	return fmt.Sprintf("slotEvent(%d)", uint8(e))
}

// slotTable[state][event] is where event moves a slot in state; slotNone:
// the state does not take the event.
var slotTable = [slotStates][slotEvents]slotState{
	slotFree:    {evTake: slotFilling},
	slotFilling: {evSubmit: slotSubmitted, evGiveUp: slotFree, evAbort: slotAborted},
	slotSubmitted: {
		evPush:   slotIssued,
		evGiveUp: slotFree, // never on a live ring: nothing writes its pages
		evAbort:  slotAborted,
	},
	slotIssued: {
		evAnswer:     slotAnswered,
		evDisconnect: slotSubmitted,
		evGiveUp:     slotOrphaned,
		evAbort:      slotAborted,
	},
	slotOrphaned: {
		evAnswer:     slotOrphaned, // recorded in answered; freed by evRelease
		evDisconnect: slotOrphaned,
		evAbort:      slotOrphaned,
		evRelease:    slotFree,
	},
	// An answered slot keeps its outcome through a removal: its owner
	// may be reading it without the lock.
	slotAnswered: {evRelease: slotFree},
	slotAborted:  {evSubmit: slotAborted, evRelease: slotFree},
}

func (s slotState) on(ev slotEvent) (slotState, bool) {
	if s >= slotStates || ev >= slotEvents {
		return slotNone, false
	}
	next := slotTable[s][ev]
	return next, next != slotNone
}

// owned reports whether a slot in state s belongs to a caller, who may
// be touching its pages: the pool stays granted while any does.
func (s slotState) owned() bool { return s != slotFree && s != slotOrphaned && s != slotNone }
