package blkfront

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/adaptpoll"
	"github.com/xenblk/xenblk/internal/slotlife"
	"github.com/xenblk/xenblk/xen"
)

// ErrBatchFull: the batch has as many requests outstanding or views held
// as its depth, or the queue's slots or pool pages are held, some by the
// batch's own requests or views; Reap (or Release views) before placing
// more.
var ErrBatchFull = errors.New("blkfront: batch full (reap or release first)")

// ErrBatchClosed: the Batch was closed.
var ErrBatchClosed = errors.New("blkfront: batch closed")

var errReentered = errors.New("blkfront: Reap or Close called from Reap's callback")

// Batch keeps many reads and writes in flight from one goroutine, as
// io_uring does: Read and Write place requests, Submit publishes every
// placed request with one push and at most one notification, and Reap
// hands back completions, polling the ring and then sleeping once for
// many completions rather than parking and waking a goroutine per
// request. ReadView places a read whose data is not copied out: the
// caller reads it in the request's granted pages and releases them
// (view.go).
//
// A Batch is bound to one queue of its Disk and is used by one goroutine
// at a time. It shares the queue's slots and pool pages with ReadAt,
// WriteAt and other batches on other goroutines: a slot taken by a batch
// carries it (slot.batch), and its response goes on the batch's ready
// list; any other slot's response wakes its goroutine as before.
//
// After a backend restart, requests in flight are re-issued on the new
// ring as the Disk's are, and complete through Reap. When the Disk
// closes, outstanding requests complete through Reap with ErrClosed.
// When Reap's context ends, the batch abandons what is still in flight:
// each is reported with the context's error, its slot is freed when the
// backend answers, and the caller's buffer is not touched again.
type Batch struct {
	d     *Disk
	q     *queue
	depth int

	// Owned by the batch's goroutine.
	reqs        []batchReq // by slot id
	placed      []int      // slots filled by Read/Write, not yet submitted
	outstanding int        // placed or in flight, not yet reaped
	taken       []int      // the ready list taken by harvest
	results     []batchResult
	// views lists the slots of view reads placed and not released (in
	// flight, or held: reaped without an error); held counts the held
	// ones, which count against depth. viewPages[id] is slot id's view,
	// its slices reused from one view to the next.
	views      []int
	held       int
	viewPages  [][][]byte
	closed     bool
	inCallback bool // Reap's fn is running (it must not reap or close)
	// window is Reap's poll window, adaptive up to batchPollWindow.
	window adaptpoll.Window

	// Under q.mu: completions arrive on whichever goroutine collects.
	readyIDs []int // answered or aborted slots, each once
	sleeping bool  // Reap sleeps on wake until readyIDs reaches wakeAt
	wakeAt   int
	wake     chan struct{} // buffered(1)
	// readyN is len(readyIDs), for polling without mu.
	readyN atomic.Int32
}

// batchReq is what the batch remembers of a placed request.
type batchReq struct {
	p    []byte // the caller's buffer (nil for a view)
	n    int    // bytes transferred
	tag  uint64
	op   uint8
	view bool // ReadView: the data stays in the slot's pool pages
	held bool // a view reaped without an error and not released
}

// batchResult is one completion, as handed to Reap's callback.
type batchResult struct {
	tag uint64
	n   int
	err error
}

// NewBatch returns a batch of up to depth outstanding requests, bound to
// the queue with the fewest batches (so one batch per queue, opened in
// turn, spreads over them). depth is at most the queue's slot count
// (SlotsPerQueue).
func (d *Disk) NewBatch(depth int) (*Batch, error) {
	if d.isClosed() {
		return nil, ErrClosed
	}
	q := d.queues[0]
	for _, c := range d.queues[1:] {
		if c.batches.Load() < q.batches.Load() {
			q = c
		}
	}
	if depth < 1 || depth > len(q.slots) {
		return nil, fmt.Errorf("blkfront: batch depth %d: want 1 to %d (the queue's slots)", depth, len(q.slots))
	}
	q.batches.Add(1)
	b := &Batch{d: d, q: q, depth: depth,
		reqs:      make([]batchReq, len(q.slots)),
		placed:    make([]int, 0, depth),
		taken:     make([]int, 0, depth),
		results:   make([]batchResult, 0, depth),
		views:     make([]int, 0, depth),
		viewPages: make([][][]byte, len(q.slots)),
		readyIDs:  make([]int, 0, depth),
		wake:      make(chan struct{}, 1)}
	b.window.Init(batchPollWindow)
	return b, nil
}

// batchPollWindow caps how long Reap polls the ring before sleeping. It
// is longer than a lone request's (ownPollWindow): a batch's answers come
// in waves, and a backend woken by Submit (tens of microseconds across
// processes here) answers a whole wave; sleeping instead costs two
// wake-ups (the queue's reaper, then Reap) per wave and keeps the two
// ends in lock-step (measured against ownPollWindow's length: see
// docs/perf-history.md).
const batchPollWindow = 100 * time.Microsecond

// SlotsPerQueue is the most requests one queue keeps in flight (the
// largest Batch depth).
func (d *Disk) SlotsPerQueue() int { return len(d.queues[0].slots) }

// MaxRequestBytes is the largest single Batch request (one ring request:
// 11 pages, or the negotiated indirect segments).
func (d *Disk) MaxRequestBytes() int { return d.segsPerReq * xen.PageSize }

// Depth is the most requests the batch keeps outstanding.
func (b *Batch) Depth() int { return b.depth }

// Outstanding is how many requests are placed or in flight, not reaped.
func (b *Batch) Outstanding() int { return b.outstanding }

// Held is how many views the batch holds (see ReadView).
func (b *Batch) Held() int { return b.held }

// Read places a read of len(p) bytes at off (aligned as for ReadAt, at
// most MaxRequestBytes); tag comes back with its completion, when p holds
// the data. p must not be touched until then.
func (b *Batch) Read(p []byte, off int64, tag uint64) error {
	return b.place(blkif.OpRead, p, len(p), off, tag, false)
}

// Write places a write of p at off, as Read; p is copied at once, so it
// may be reused as soon as Write returns. A write reaped without an error
// is on the backend's storage (durable after Flush).
func (b *Batch) Write(p []byte, off int64, tag uint64) error {
	if b.d.Info().ReadOnly {
		return fmt.Errorf("blkfront: write to a read-only disk")
	}
	return b.place(blkif.OpWrite, p, len(p), off, tag, false)
}

// place takes a slot and pages for one request of n bytes (p's, or a
// view's) and builds it. It waits for them only while the batch has
// nothing outstanding or held (then only other goroutines' requests hold
// them, and they finish on their own); otherwise the caller must reap or
// release first (ErrBatchFull).
func (b *Batch) place(op uint8, p []byte, n int, off int64, tag uint64, view bool) error {
	if b.closed {
		return ErrBatchClosed
	}
	if err := b.d.checkRange(off, int64(n)); err != nil {
		return err
	}
	if n <= 0 || n > b.d.MaxRequestBytes() {
		return fmt.Errorf("blkfront: batch request of %d bytes: want 1 to %d", n, b.d.MaxRequestBytes())
	}
	if b.outstanding+b.held >= b.depth {
		return ErrBatchFull
	}
	q := b.q
	q.mu.Lock()
	var id int
	for {
		if q.dead || b.d.isClosed() {
			q.mu.Unlock()
			return ErrClosed
		}
		var ok bool
		if id, ok = q.take(pagesFor(n)); ok {
			break
		}
		if b.outstanding > 0 || b.held > 0 {
			q.mu.Unlock()
			return ErrBatchFull
		}
		q.cond.Wait()
	}
	q.slots[id].batch = b
	q.mu.Unlock()
	if view {
		q.build(id, op, n, off)
		b.views = append(b.views, id)
	} else {
		q.prepare(id, op, p, off)
	}
	b.reqs[id] = batchReq{p: p, n: n, tag: tag, op: op, view: view}
	b.placed = append(b.placed, id)
	b.outstanding++
	return nil
}

// Submit publishes every placed request: one req_prod store for all of
// them and at most one notification. While the queue is disconnected
// they wait for the reconnect, which issues them.
func (b *Batch) Submit() error {
	if b.closed {
		return ErrBatchClosed
	}
	if len(b.placed) == 0 {
		return nil
	}
	q := b.q
	q.mu.Lock()
	pushed := false
	for _, id := range b.placed {
		if q.submitLocked(id) {
			pushed = true
		}
	}
	if pushed {
		q.flushPush()
	}
	q.mu.Unlock()
	b.placed = b.placed[:0]
	return nil
}

// Reap hands completions to fn (tag, bytes transferred, error) until at
// least min have come (fewer if fewer are outstanding; it submits what is
// placed first; a view read reaped without an error is held, see
// ReadView), in chunks of at most reapChunk: it returns after the
// chunk that reaches min, and what else is ready waits for the next call
// (placing and submitting in between keeps the backend busy). It polls the ring for a
// short adaptive window (as ReadAt does, with a longer cap:
// batchPollWindow), then sleeps until the queue's reaper has collected
// enough. It returns how many it handed over; if ctx
// ends first, every request still in flight is abandoned and reported to
// fn with ctx's error, which Reap returns. fn runs on the calling
// goroutine and may place and submit new requests, but not reap or close.
func (b *Batch) Reap(ctx context.Context, min int, fn func(tag uint64, n int, err error)) (int, error) {
	if b.closed {
		return 0, ErrBatchClosed
	}
	if b.inCallback {
		return 0, errReentered
	}
	if len(b.placed) > 0 {
		if err := b.Submit(); err != nil {
			return 0, err
		}
	}
	want := min
	if want > b.outstanding {
		want = b.outstanding
	}
	done := 0
	for {
		done += b.harvest(fn)
		if done >= want {
			return done, nil
		}
		if err := ctx.Err(); err != nil {
			return done + b.abandon(err, fn), err
		}
		need := want - done
		if b.q.poll(&b.window, func() bool { return b.readyCount() >= need }) {
			continue
		}
		b.sleep(ctx, need)
	}
}

// readyCount is the length of the ready list, for polling without mu.
func (b *Batch) readyCount() int { return int(b.readyN.Load()) }

// sleep waits until need completions are ready or ctx ends. The queue's
// reaper collects responses meanwhile (the ring's notification scheme
// wakes it), and deliver wakes this goroutine once for all of them.
func (b *Batch) sleep(ctx context.Context, need int) {
	q := b.q
	q.mu.Lock()
	if q.front != nil {
		q.collect()
	}
	if len(b.readyIDs) >= need {
		q.mu.Unlock()
		return
	}
	b.sleeping, b.wakeAt = true, need
	q.mu.Unlock()
	select {
	case <-b.wake:
	case <-ctx.Done():
	}
}

// reapChunk caps the completions one harvest takes: a caller that places
// new requests after each Reap then keeps the backend busy while it
// finishes the rest of a wave (copying a read's data out), instead of the
// two ends taking turns.
const reapChunk = 16

// harvest collects whatever responses the ring holds, takes up to
// reapChunk outcomes off the ready list, finishes each request (a read's
// data is copied out; a view's is pinned in its pages), frees the slots
// of all but the views held and then calls fn for each; it returns how
// many.
func (b *Batch) harvest(fn func(tag uint64, n int, err error)) int {
	q := b.q
	q.mu.Lock()
	if q.front != nil {
		q.collect()
	}
	b.sleeping = false
	k := min(len(b.readyIDs), reapChunk)
	b.taken = append(b.taken[:0], b.readyIDs[:k]...)
	b.readyIDs = b.readyIDs[:copy(b.readyIDs, b.readyIDs[k:])]
	b.readyN.Store(int32(len(b.readyIDs)))
	b.results = b.results[:0]
	for _, id := range b.taken {
		b.results = append(b.results, batchResult{tag: b.reqs[id].tag, err: q.slots[id].result()})
		q.to(id, slotlife.TakeOutcome)
	}
	q.mu.Unlock()
	if len(b.taken) == 0 {
		return 0
	}
	// The slots are delivered, the batch's until released below (a close
	// aborts them no more), so their pages are its to copy from without
	// the lock.
	for i, id := range b.taken {
		r, res := &b.reqs[id], &b.results[i]
		if res.err == nil {
			res.n = r.n
			if r.op == blkif.OpRead && !r.view {
				q.copyOut(id, r.p)
			}
		}
		r.p = nil // do not keep the caller's buffer reachable
	}
	q.mu.Lock()
	for i, id := range b.taken {
		if b.reqs[id].view && b.holdLocked(id, &b.results[i]) {
			continue
		}
		q.to(id, slotlife.Release)
	}
	q.mu.Unlock()
	b.outstanding -= len(b.taken)
	b.mapViews()
	// fn runs after the release (it may place requests in the freed
	// slots) and reads only results, which placing does not touch.
	b.report(fn)
	return len(b.results)
}

// abandon gives up every outstanding request without an outcome yet: one
// never pushed on the live ring is freed, one on it is orphaned (freed
// when answered). Those with an outcome meanwhile are harvested normally.
// Each abandoned request is reported to fn with err; it returns how many
// were handed to fn.
func (b *Batch) abandon(err error, fn func(tag uint64, n int, err error)) int {
	q := b.q
	b.results = b.results[:0]
	q.mu.Lock()
	for id := range q.slots {
		s := &q.slots[id]
		if _, ok := slotTable.On(s.load(), slotlife.GiveUp); !ok || s.batch != b {
			continue // not the batch's, or orphaned by an earlier abandon
		}
		b.results = append(b.results, batchResult{tag: b.reqs[id].tag, err: err})
		b.reqs[id].p = nil
		if b.reqs[id].view {
			b.dropView(id)
		}
		q.to(id, slotlife.GiveUp)
	}
	q.mu.Unlock()
	b.placed = b.placed[:0]
	b.outstanding -= len(b.results)
	// harvest reuses results: report the abandoned ones first.
	b.report(fn)
	n := len(b.results)
	// Nothing more will be delivered to the batch: empty the ready list
	// (a chunk at a time), or its slots would stay taken.
	for {
		k := b.harvest(fn)
		if k == 0 {
			return n
		}
		n += k
	}
}

// report hands results to fn. fn may place and submit requests (they do
// not touch results) but not reap or close the batch (inCallback).
func (b *Batch) report(fn func(tag uint64, n int, err error)) {
	b.inCallback = true
	defer func() { b.inCallback = false }()
	for _, r := range b.results {
		fn(r.tag, r.n, r.err)
	}
}

// Close abandons whatever the batch has outstanding (its completions are
// not reported), releases every view it holds and unbinds it from its
// queue. The Disk stays open.
func (b *Batch) Close() error {
	if b.closed {
		return nil
	}
	if b.inCallback {
		return errReentered
	}
	b.abandon(ErrBatchClosed, func(uint64, int, error) {})
	b.releaseAll()
	b.closed = true
	b.q.batches.Add(-1)
	return nil
}
