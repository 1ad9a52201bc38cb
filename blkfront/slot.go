package blkfront

import (
	"fmt"
	"sync/atomic"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/xen"
)

// slot is one request in flight: its id is its index in queue.slots.
// Everything it needs is allocated once, when the queue is built, and
// survives reconnects so that what was in flight can be re-issued.
type slot struct {
	// state is where the slot is in its life (slotState). It changes only
	// through queue.to, under the queue's mu; it is stored atomically so
	// that a waiter holding its done token reads the outcome (answered or
	// aborted) without the lock.
	state atomic.Uint32
	kind  slotKind
	// batch owns the request: its outcome goes on the batch's ready list.
	// nil: a goroutine waits on done. Under mu.
	batch *Batch
	done  chan struct{} // buffered(1): the outcome of a goroutine's request

	req    blkif.Request
	pages  []int        // pool page indexes holding the data, in order
	ipages *xen.Granted // indirect pages (granted read-only), nil if none offered
	iviews [][]byte     // ipages.Mem split into pages
	// kindSCSI: the extra request follows req in the ring slot after it;
	// the queue slot partner (slotExtra) is held so that ring slots never
	// outnumber queue slots.
	partner  int
	extra    blkif.ExtraRequest
	extraRsp blkif.ExtraResponse
	prReq    blkif.PRRequest // kindPR: sent instead of req
	status   int16           // the response's status (slotAnswered)
}

// slotKind is what a slot's request is on the ring.
type slotKind uint8

const (
	kindData slotKind = iota // req alone: a read, write, flush or discard
	kindSCSI                 // req flagged, and extra in the next ring slot
	kindPR                   // prReq (blkif.OpReservation)
)

// slotState is a slot's place in its life:
//
//	free → filling → submitted ⇄ issued → answered | aborted → delivered → free
//
// with orphaned for a request whose owner gave up while it was on the
// ring, and extra for the second queue slot a SCSI request holds.
// slotTable says which events move which states, and where.
type slotState uint32

const (
	slotNone slotState = iota // not a state: the table's "no such move"
	// slotFree: on the queue's free list.
	slotFree
	// slotFilling: taken; its owner builds the request, and nothing else
	// touches it. A Batch's placed requests wait here for Submit.
	slotFilling
	// slotSubmitted: complete and handed to the queue, not on a live ring
	// (the queue is disconnected); the reconnect issues it.
	slotSubmitted
	// slotIssued: on the live ring, unanswered.
	slotIssued
	// slotOrphaned: in flight, its owner gone (its context ended, or its
	// batch closed). The backend may still write its pages, so it keeps
	// them until it is answered (or the disk closes), then is freed; a
	// reconnect issues it again like any request in flight.
	slotOrphaned
	// slotAnswered: the response is recorded and handed to the owner (the
	// done token, or the batch's ready list), who has not taken it yet.
	slotAnswered
	// slotAborted: the disk closed for good before the owner took an
	// outcome; handed out as slotAnswered is (a close wins over an answer
	// not taken yet: the pool may be gone).
	slotAborted
	// slotDelivered: a Batch took the outcome off its ready list; the slot
	// is its until released (a held view keeps it here).
	slotDelivered
	// slotExtra: held as the ring slot of its partner's extra request;
	// freed with the partner.
	slotExtra

	slotStates
)

var slotStateNames = [slotStates]string{"none", "free", "filling", "submitted", "issued", "orphaned", "answered", "aborted", "delivered", "extra"}

func (s slotState) String() string { return nameOf(s, slotStateNames[:], "slotState") }

// slotEvent is what happens to a slot.
type slotEvent uint8

const (
	evTake        slotEvent = iota // acquire, take: a free slot for a new request
	evPair                         // acquirePair: a free slot held for the extra request
	evSubmit                       // the request is complete (submit, Batch.Submit)
	evPush                         // written on the live ring (push)
	evAnswer                       // its response came (collect)
	evDisconnect                   // the ring went away (disconnect)
	evGiveUp                       // its owner stops waiting (giveUp, Batch.abandon)
	evAbort                        // the disk closed for good (abortAll; submit after it)
	evTakeOutcome                  // a Batch took it off its ready list (harvest)
	evRelease                      // its owner (or its partner) frees it

	slotEvents
)

var slotEventNames = [slotEvents]string{"take", "pair", "submit", "push", "answer", "disconnect", "give-up", "abort", "take-outcome", "release"}

func (e slotEvent) String() string { return nameOf(e, slotEventNames[:], "slotEvent") }

// nameOf is v's name in names, or typ(v) for a value out of range.
func nameOf[T slotState | slotEvent](v T, names []string, typ string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, v)
}

// slotTable[state][event] is where event moves a slot in state; slotNone:
// the state does not take the event. testdata/slots.txt prints it whole.
var slotTable = [slotStates][slotEvents]slotState{
	slotFree: {evTake: slotFilling, evPair: slotExtra},
	slotFilling: {
		evSubmit: slotSubmitted,
		evGiveUp: slotFree, // a Batch abandons a placed request
		evAbort:  slotAborted,
	},
	slotSubmitted: {
		evPush:   slotIssued,
		evGiveUp: slotFree, // never on the live ring: nothing can write its pages
		evAbort:  slotAborted,
	},
	slotIssued: {
		evAnswer:     slotAnswered,
		evDisconnect: slotSubmitted,
		evGiveUp:     slotOrphaned,
		evAbort:      slotAborted,
	},
	slotOrphaned: {
		evPush:       slotOrphaned, // re-issued by a reconnect
		evAnswer:     slotFree,
		evDisconnect: slotOrphaned,
		evAbort:      slotFree,
	},
	slotAnswered: {
		evAbort:       slotAborted,
		evTakeOutcome: slotDelivered,
		evRelease:     slotFree,
	},
	slotAborted: {
		evSubmit:      slotAborted, // aborted while being filled
		evTakeOutcome: slotDelivered,
		evRelease:     slotFree,
	},
	slotDelivered: {evRelease: slotFree},
	slotExtra:     {evRelease: slotFree},
}

// on is where ev moves a slot in state s, and whether s takes ev at all.
func (s slotState) on(ev slotEvent) (slotState, bool) {
	if s >= slotStates || ev >= slotEvents {
		return slotNone, false
	}
	next := slotTable[s][ev]
	return next, next != slotNone
}

// handedOut reports whether a slot in state s has an outcome its owner was
// given (or will take): answered or aborted.
func (s slotState) handedOut() bool { return s == slotAnswered || s == slotAborted }

func (s *slot) load() slotState { return slotState(s.state.Load()) }

// to moves slot id by ev and carries out what its new state asks: a
// request that comes to an outcome (answered, aborted) is handed to its
// owner (deliver); a slot that comes back to free returns its pages, and
// a SCSI request its partner, to the queue, and wakes whoever waits for
// them. mu held. An event the slot's state does not take is a bug in this
// package (a response the backend sends for no request in flight is
// refused before it gets here): it panics.
func (q *queue) to(id int, ev slotEvent) slotState {
	s := &q.slots[id]
	from := s.load()
	next, ok := from.on(ev)
	if !ok {
		panic(fmt.Sprintf("blkfront: slot %d: %v on a %v slot", id, ev, from))
	}
	s.state.Store(uint32(next))
	switch {
	case next == slotFree:
		q.freeLocked(id)
	case next.handedOut() && !from.handedOut():
		q.deliver(id)
	}
	return next
}

// freeLocked returns slot id, just come back to free, with its pages
// and, for a SCSI request, its partner; mu held.
func (q *queue) freeLocked(id int) {
	s := &q.slots[id]
	q.freePage = append(q.freePage, s.pages...)
	s.pages = s.pages[:0]
	s.batch = nil
	q.free = append(q.free, id)
	if s.kind == kindSCSI {
		q.to(s.partner, evRelease)
	}
	s.kind = kindData
	q.cond.Broadcast()
}

// deliver hands slot id's outcome (it is answered or aborted) to whoever
// waits for it: its batch (the ready list, waking a Reap asleep for
// enough of them) or its goroutine (the done token). mu held. The ready
// list never outgrows its capacity: each outstanding slot is handed out
// once, and at most depth are outstanding.
func (q *queue) deliver(id int) {
	s := &q.slots[id]
	b := s.batch
	if b == nil {
		select {
		case s.done <- struct{}{}:
		default: // a stale token: taken in giveUp's stead
		}
		return
	}
	b.readyIDs = append(b.readyIDs, id)
	b.readyN.Store(int32(len(b.readyIDs)))
	if b.sleeping && len(b.readyIDs) >= b.wakeAt {
		b.sleeping = false
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// result is the outcome of a slot its owner took: ErrClosed if it was
// aborted, else its response's status as an error (nil for success).
func (s *slot) result() error {
	if s.load() == slotAborted {
		return ErrClosed
	}
	switch s.status {
	case blkif.RspOkay:
		return nil
	case blkif.RspEOPNOTSUPP:
		return ErrNotSupported
	case blkif.RspReservationConflict:
		// Another node holds a reservation that fences this one off.
		return fmt.Errorf("%w (operation %d)", ErrReservationConflict, s.req.Operation)
	default:
		return fmt.Errorf("%w (status %d, operation %d)", ErrIO, s.status, s.req.Operation)
	}
}
