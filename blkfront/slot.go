package blkfront

import (
	"fmt"
	"sync/atomic"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/slotlife"
	"github.com/xenblk/xenblk/xen"
)

// slot is one request in flight: its id is its index in queue.slots.
// Everything it needs is allocated once, when the queue is built, and
// survives reconnects so that what was in flight can be re-issued.
type slot struct {
	// state is where the slot is in its life (slotlife.State). It changes only
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
	// the queue slot partner (slotlife.Extra) is held so that ring slots never
	// outnumber queue slots.
	partner  int
	extra    blkif.ExtraRequest
	extraRsp blkif.ExtraResponse
	prReq    blkif.PRRequest // kindPR: sent instead of req
	status   int16           // the response's status (slotlife.Answered)
}

// slotKind is what a slot's request is on the ring.
type slotKind uint8

const (
	kindData slotKind = iota // req alone: a read, write, flush or discard
	kindSCSI                 // req flagged, and extra in the next ring slot
	kindPR                   // prReq (blkif.OpReservation)
)

// slotTable is a blkfront slot's life: slotlife.Core, and more. A
// Batch's placed requests wait in filling for Submit, and its outcomes
// are delivered (taken off the ready list) before release; a SCSI request holds a second slot (pair, extra)
// for its extra ring slot; an orphan is re-issued by a reconnect like any
// request in flight, and freed by its answer or the disk's close.
// testdata/slots.txt prints it whole.
var slotTable = func() slotlife.Table {
	t := slotlife.Core()
	t[slotlife.Free][slotlife.Pair] = slotlife.Extra
	t[slotlife.Extra][slotlife.Release] = slotlife.Free
	t[slotlife.Orphaned][slotlife.Push] = slotlife.Orphaned // re-issued by a reconnect
	t[slotlife.Orphaned][slotlife.Answer] = slotlife.Free
	t[slotlife.Orphaned][slotlife.Abort] = slotlife.Free
	// A close wins over an answer not taken yet: the pool may be gone.
	t[slotlife.Answered][slotlife.Abort] = slotlife.Aborted
	t[slotlife.Answered][slotlife.TakeOutcome] = slotlife.Delivered
	t[slotlife.Aborted][slotlife.TakeOutcome] = slotlife.Delivered
	t[slotlife.Delivered][slotlife.Release] = slotlife.Free
	return t
}()

func (s *slot) load() slotlife.State { return slotlife.State(s.state.Load()) }

// to moves slot id by ev and carries out what its new state asks: a
// request that comes to an outcome (answered, aborted) is handed to its
// owner (deliver); a slot that comes back to free returns its pages, and
// a SCSI request its partner, to the queue, and wakes whoever waits for
// them. mu held. An event the slot's state does not take is a bug in this
// package (a response the backend sends for no request in flight is
// refused before it gets here): it panics.
func (q *queue) to(id int, ev slotlife.Event) slotlife.State {
	s := &q.slots[id]
	from := s.load()
	next, ok := slotTable.On(from, ev)
	if !ok {
		panic(fmt.Sprintf("blkfront: slot %d: %v on a %v slot", id, ev, from))
	}
	s.state.Store(uint32(next))
	switch {
	case next == slotlife.Free:
		q.freeLocked(id)
	case next.HandedOut() && !from.HandedOut():
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
		q.to(s.partner, slotlife.Release)
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
	if s.load() == slotlife.Aborted {
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
