// Package ring implements Xen's shared I/O ring (xen/io/ring.h) over a
// []byte that both ends map: a 64-byte header of four free-running 32-bit
// indexes followed by a power-of-two array of fixed-size slots, each holding
// either a request or a response.
//
// Semantics follow ring.h exactly: the producer publishes req_prod/rsp_prod
// after writing the slots; the consumer reads slots after observing the
// producer index; the event indexes (req_event, rsp_event) hold off
// notifications until the other end asked for one, computed in unsigned
// 32-bit arithmetic so that indexes wrap at 2^32. The back end never trusts
// req_prod: a value that would put more requests in the ring than there are
// free slots is reported as an error (RING_REQUEST_PROD_OVERFLOW), so the
// driver can disconnect that device.
//
// Memory ordering: the shared indexes are loaded and stored with
// sync/atomic, which are sequentially consistent on every Go platform and
// therefore at least as strong as ring.h's wmb/rmb/mb, across processes as
// well as goroutines. Slot contents are ordinary memory, written before the
// publishing store and read after the observing load.
package ring

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/xenblk/xenblk/internal/shmem"
)

// Offsets of the shared header (struct *_sring in ring.h).
const (
	offReqProd  = 0
	offReqEvent = 4
	offRspProd  = 8
	offRspEvent = 12
	// HeaderSize is the header's size: four indexes and private padding.
	HeaderSize = 64
)

// ErrProdOverflow: the other end's producer index claims more requests than
// the ring can hold (RING_REQUEST_PROD_OVERFLOW), or went back behind what
// was consumed. The ring is unusable.
var ErrProdOverflow = errors.New("ring: producer index outside the ring")

// SlotCount returns the number of slots ring.h's __RING_SIZE gives a ring
// of ringBytes bytes with slots of slotSize bytes: the largest power of two
// not above (ringBytes - HeaderSize) / slotSize. It returns 0 when not even
// one slot fits.
func SlotCount(ringBytes, slotSize int) uint32 {
	if slotSize <= 0 || ringBytes <= HeaderSize {
		return 0
	}
	n := (ringBytes - HeaderSize) / slotSize
	if n <= 0 {
		return 0
	}
	p := uint32(1)
	for int(p)*2 <= n {
		p *= 2
	}
	return p
}

// shared is the view both halves have of the memory.
type shared struct {
	mem      []byte
	slotSize int
	size     uint32 // slot count, a power of two
	mask     uint32
	// The header's indexes, resolved once by internal/shmem (inside mem,
	// 4-byte aligned). The other end writes them concurrently, possibly
	// from another process: every access is atomic.
	reqProd, reqEvent, rspProd, rspEvent *atomic.Uint32
}

func newShared(mem []byte, slotSize int) (shared, error) {
	n := SlotCount(len(mem), slotSize)
	if n == 0 {
		return shared{}, fmt.Errorf("ring: %d bytes hold no slot of %d bytes", len(mem), slotSize)
	}
	s := shared{mem: mem, slotSize: slotSize, size: n, mask: n - 1}
	for _, w := range []struct {
		p   **atomic.Uint32
		off int
	}{{&s.reqProd, offReqProd}, {&s.reqEvent, offReqEvent}, {&s.rspProd, offRspProd}, {&s.rspEvent, offRspEvent}} {
		var err error
		if *w.p, err = shmem.Uint32(mem, w.off); err != nil {
			return shared{}, fmt.Errorf("ring: %w", err)
		}
	}
	return s, nil
}

// publish stores an index with a full barrier: ring.h's pattern "publish
// prod, mb(), read the other end's event index" needs the store ordered
// before the load in every build. Swap is that on every architecture (on
// amd64 a plain atomic store already is an XCHG; under the race detector
// a plain atomic store was seen to let the load pass it).
func publish(w *atomic.Uint32, v uint32) { w.Swap(v) }

// Size is the number of slots.
func (s *shared) Size() uint32 { return s.size }

// SlotSize is the size of one slot in bytes.
func (s *shared) SlotSize() int { return s.slotSize }

// slot returns the slot for free-running index i. Its length is exactly
// the slot size, so writes through it cannot spill into the next slot.
func (s *shared) slot(i uint32) []byte {
	off := HeaderSize + int(i&s.mask)*s.slotSize
	return s.mem[off : off+s.slotSize : off+s.slotSize]
}

// Front is the frontend's half: it produces requests and consumes
// responses. Owned by one goroutine (or guarded by the caller's lock).
type Front struct {
	shared
	reqProdPvt uint32 // requests written, not yet necessarily published
	rspCons    uint32 // responses consumed
}

// InitFront initialises a fresh shared ring (SHARED_RING_INIT +
// FRONT_RING_INIT): indexes zero, event indexes one, and the whole ring
// zeroed so no stale bytes are ever shared.
func InitFront(mem []byte, slotSize int) (*Front, error) {
	s, err := newShared(mem, slotSize)
	if err != nil {
		return nil, err
	}
	clear(mem)
	publish(s.reqEvent, 1)
	publish(s.rspEvent, 1)
	return &Front{shared: s}, nil
}

// AttachFront resumes a frontend on an existing ring (FRONT_RING_ATTACH):
// everything produced so far counts as published and every response up to
// rsp_prod as unconsumed.
func AttachFront(mem []byte, slotSize int, rspCons uint32) (*Front, error) {
	s, err := newShared(mem, slotSize)
	if err != nil {
		return nil, err
	}
	return &Front{shared: s, reqProdPvt: s.reqProd.Load(), rspCons: rspCons}, nil
}

// Free is the number of request slots the front may still fill
// (RING_FREE_REQUESTS): one per slot, less what is produced and not yet
// answered and consumed.
func (f *Front) Free() uint32 { return f.size - (f.reqProdPvt - f.rspCons) }

// Full reports RING_FULL.
func (f *Front) Full() bool { return f.Free() == 0 }

// NextRequest returns the slot at req_prod_pvt to fill, or nil when the
// ring is full. The request becomes visible only after Produce and Push.
func (f *Front) NextRequest() []byte {
	if f.Full() {
		return nil
	}
	return f.slot(f.reqProdPvt)
}

// RequestAt returns the slot k places after req_prod_pvt (k = 0 is
// NextRequest), for callers filling a pair of slots; nil if it is not free.
func (f *Front) RequestAt(k uint32) []byte {
	if k >= f.Free() {
		return nil
	}
	return f.slot(f.reqProdPvt + k)
}

// Produce counts n filled request slots.
func (f *Front) Produce(n uint32) { f.reqProdPvt += n }

// ReqProdPvt is the private producer index.
func (f *Front) ReqProdPvt() uint32 { return f.reqProdPvt }

// Push publishes the produced requests and reports whether the back end
// must be notified (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY).
func (f *Front) Push() (notify bool) {
	old := f.reqProd.Load()
	nw := f.reqProdPvt
	if nw == old {
		// Nothing new: no store, so the line the other end polls is not
		// taken away from it, and no notification is due either.
		return false
	}
	publish(f.reqProd, nw)
	return nw-f.reqEvent.Load() < nw-old
}

// Unconsumed is the number of published responses not yet consumed
// (RING_HAS_UNCONSUMED_RESPONSES). A hostile back end could publish an
// rsp_prod ahead of what was requested; that count is clamped to what is
// outstanding, and Overrun reports it.
func (f *Front) Unconsumed() uint32 {
	n := f.rspProd.Load() - f.rspCons
	if out := f.reqProdPvt - f.rspCons; n > out {
		return out
	}
	return n
}

// Overrun reports a back end that published more responses than there are
// requests outstanding.
func (f *Front) Overrun() bool {
	return f.rspProd.Load()-f.rspCons > f.reqProdPvt-f.rspCons
}

// Response returns the slot at rsp_cons. Copy what you need before Consume:
// the slot is reused for a request after that.
func (f *Front) Response() []byte { return f.slot(f.rspCons) }

// ResponseAt returns the slot k places after rsp_cons (k = 0 is Response).
func (f *Front) ResponseAt(k uint32) []byte { return f.slot(f.rspCons + k) }

// Consume counts n responses consumed.
func (f *Front) Consume(n uint32) { f.rspCons += n }

// RspCons is the private consumer index.
func (f *Front) RspCons() uint32 { return f.rspCons }

// FinalCheck is RING_FINAL_CHECK_FOR_RESPONSES: if nothing is pending, ask
// for a notification at the next response (rsp_event = rsp_cons + 1), then
// look again, closing the race with a back end that produced meanwhile.
func (f *Front) FinalCheck() (more bool) {
	if f.Unconsumed() > 0 {
		return true
	}
	publish(f.rspEvent, f.rspCons+1)
	return f.Unconsumed() > 0
}

// Back is the backend's half: it consumes requests and produces responses.
// Owned by one goroutine.
type Back struct {
	shared
	rspProdPvt uint32 // responses written, not yet necessarily published
	reqCons    uint32 // requests consumed
}

// AttachBack attaches to a ring the front initialised (BACK_RING_ATTACH
// with the published rsp_prod): requests after rsp_prod are unanswered and
// will be consumed again. A restarted backend thus answers what its
// predecessor left unanswered.
func AttachBack(mem []byte, slotSize int) (*Back, error) {
	s, err := newShared(mem, slotSize)
	if err != nil {
		return nil, err
	}
	p := s.rspProd.Load()
	return &Back{shared: s, rspProdPvt: p, reqCons: p}, nil
}

// Unconsumed is the number of requests published and not yet consumed
// (RING_HAS_UNCONSUMED_REQUESTS, bounded by free response slots as ring.h
// does, which is RING_REQUEST_CONS_OVERFLOW's guard). It fails with
// ErrProdOverflow when req_prod claims more requests than the ring can hold
// (RING_REQUEST_PROD_OVERFLOW) or moved back behind req_cons.
func (b *Back) Unconsumed() (uint32, error) {
	prod := b.reqProd.Load()
	// A req_prod behind req_cons was moved backwards by the front (a
	// legitimate one is never behind, nor 2^31 ahead). ring.h would count
	// the stale slots up to the ring's end as requests (only
	// RING_REQUEST_CONS_OVERFLOW stops it); we refuse the ring instead.
	// Checked first so that the reason names it even on an idle ring,
	// where it is also more than a ring ahead of rsp_prod_pvt.
	if int32(prod-b.reqCons) < 0 {
		return 0, fmt.Errorf("%w: req_prod %d went back behind req_cons %d", ErrProdOverflow, prod, b.reqCons)
	}
	if prod-b.rspProdPvt > b.size {
		return 0, fmt.Errorf("%w: req_prod %d, rsp_prod_pvt %d, %d slots", ErrProdOverflow, prod, b.rspProdPvt, b.size)
	}
	reqs := prod - b.reqCons
	rsps := b.size - (b.reqCons - b.rspProdPvt)
	if rsps < reqs {
		return rsps, nil
	}
	return reqs, nil
}

// Request returns the slot k places after req_cons (k = 0 is the next
// request). Copy it out before use: the front may rewrite it at any time.
func (b *Back) Request(k uint32) []byte { return b.slot(b.reqCons + k) }

// Consume counts n requests consumed.
func (b *Back) Consume(n uint32) { b.reqCons += n }

// ReqCons is the private consumer index.
func (b *Back) ReqCons() uint32 { return b.reqCons }

// NextResponse returns the slot at rsp_prod_pvt to fill. It is always a
// slot whose request was consumed, so the front no longer uses it.
func (b *Back) NextResponse() []byte { return b.slot(b.rspProdPvt) }

// Produce counts n filled response slots.
func (b *Back) Produce(n uint32) { b.rspProdPvt += n }

// Pending is the number of consumed requests not yet answered.
func (b *Back) Pending() uint32 { return b.reqCons - b.rspProdPvt }

// Push publishes the produced responses and reports whether the front
// must be notified (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY).
func (b *Back) Push() (notify bool) {
	old := b.rspProd.Load()
	nw := b.rspProdPvt
	if nw == old {
		return false // nothing new (see Front.Push)
	}
	publish(b.rspProd, nw)
	return nw-b.rspEvent.Load() < nw-old
}

// FinalCheck is RING_FINAL_CHECK_FOR_REQUESTS: if nothing is pending, ask
// for a notification at the next request (req_event = req_cons + 1), then
// look again.
func (b *Back) FinalCheck() (more bool, err error) {
	n, err := b.Unconsumed()
	if err != nil || n > 0 {
		return n > 0, err
	}
	publish(b.reqEvent, b.reqCons+1)
	n, err = b.Unconsumed()
	return n > 0, err
}
