package blkfront

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/adaptpoll"
	"github.com/xenblk/xenblk/internal/reaper"
	"github.com/xenblk/xenblk/internal/slotlife"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/xen"
)

// queue is one ring of a disk, with its pool of persistently granted data
// pages. Callers fill a slot and push it under mu; responses are taken off
// the ring (collect) by whoever holds mu and looks: the queue's reaper
// goroutine, a submitter polling for its own answer, a Batch's Reap. Each
// is handed to its slot's owner (deliver).
type queue struct {
	disk  *Disk
	index int

	mu       sync.Mutex
	cond     *sync.Cond
	ringMem  *xen.Granted
	front    *ring.Front
	ch       xen.Channel
	abi      blkif.ABI
	slots    []slot
	free     []int // free slot ids
	pool     *xen.Granted
	freePage []int
	// connected: the ring is live; requests wait while it is not.
	connected bool
	// dead: the disk closed for good (abortAll); every request has been
	// aborted, and submit aborts at once.
	dead   bool
	stop   chan struct{}
	reaped chan struct{}

	// submitting counts submitters between announcing themselves and
	// pushing; the last of a burst publishes everyone's requests (plug).
	submitting atomic.Int32
	// pollers counts submitters polling the ring for their own response.
	pollers atomic.Int32
	// ownWindow is a lone request's poll window (at most ownPollWindow).
	ownWindow adaptpoll.Window
	// batches counts the open Batches bound to this queue (NewBatch
	// binds a new one to the queue with fewest).
	batches atomic.Int32
	// reaperAsleep: the reaper armed rsp_event and sleeps (or is about
	// to) in Wait; whoever else consumes responses re-arms (collect).
	// Under mu.
	reaperAsleep bool
	// backendAsleep: the last push had to notify (the backend had armed
	// req_event to sleep), so the answer waits for a wake-up; spinning for
	// it would only hold the processor the backend needs in one process
	// (yielding spinners keep the scheduler from polling for the
	// backend's event). Under mu.
	backendAsleep bool
	// views counts a Batch's views held (reaped, not released) in pool
	// pages; while any is, the pool stays mapped even after the disk
	// closes (releasing), and the last view's release revokes it
	// (unpinView). Under mu, as are releasing and poolRevoked.
	views       int
	releasing   bool
	poolRevoked bool
}

// newQueue grants a queue's data pool and indirect pages.
func newQueue(d *Disk, index, nslots, poolPages int, indirectPages int) (*queue, error) {
	q := &queue{disk: d, index: index, slots: make([]slot, nslots)}
	q.cond = sync.NewCond(&q.mu)
	q.ownWindow.Init(ownPollWindow)
	pool, err := d.dom.Granter().Grant(d.backDom, poolPages, false)
	if err != nil {
		return nil, fmt.Errorf("grant data pool: %w", err)
	}
	q.pool = pool
	for i := poolPages - 1; i >= 0; i-- {
		q.freePage = append(q.freePage, i)
	}
	for i := nslots - 1; i >= 0; i-- {
		s := &q.slots[i]
		s.state.Store(uint32(slotlife.Free))
		s.done = make(chan struct{}, 1)
		if indirectPages > 0 {
			// Writable although the backend only reads them: Linux's
			// blkback maps every grant of a persistent-grant connection
			// writable, indirect pages included, and fails the request
			// if the grant is read-only (as Linux's blkfront grants them).
			g, err := d.dom.Granter().Grant(d.backDom, indirectPages, false)
			if err != nil {
				q.release()
				return nil, fmt.Errorf("grant indirect pages: %w", err)
			}
			s.ipages = g
			for k := 0; k < indirectPages; k++ {
				s.iviews = append(s.iviews, g.Mem[k*xen.PageSize:(k+1)*xen.PageSize])
			}
		}
		q.free = append(q.free, i)
	}
	return q, nil
}

// abortAll ends every request when the disk closes for good (Open's run
// loop, once the handshake is over): each gets ErrClosed, through its
// done token or its batch's ready list, and an orphaned one is freed. A
// waiter thus blocks on its slot's done channel alone (a select on a
// channel shared by every waiter would cost a contended lock per
// request).
func (q *queue) abortAll() {
	q.mu.Lock()
	q.dead = true
	for id := range q.slots {
		if _, ok := slotTable.On(q.slots[id].load(), slotlife.Abort); ok {
			q.to(id, slotlife.Abort)
		}
	}
	q.cond.Broadcast()
	q.mu.Unlock()
}

// release revokes everything the queue granted (on final close). The data
// pool waits for the last view a Batch holds in it: the caller may still
// read it, and a revoked pool is unmapped.
func (q *queue) release() {
	gr := q.disk.dom.Granter()
	for i := range q.slots {
		if g := q.slots[i].ipages; g != nil {
			_ = gr.Revoke(g)
		}
	}
	q.mu.Lock()
	q.releasing = true
	revoke := q.revokePoolLocked()
	q.mu.Unlock()
	if revoke {
		_ = gr.Revoke(q.pool)
	}
}

// revokePoolLocked reports whether the pool is to be revoked now (the
// disk is closing, no view is held, and nobody revoked it before), and
// marks it revoked; mu held.
func (q *queue) revokePoolLocked() bool {
	if q.pool == nil || !q.releasing || q.views > 0 || q.poolRevoked {
		return false
	}
	q.poolRevoked = true
	return true
}

// connect grants a fresh ring and event channel and returns what to
// publish. Requests in flight keep their slots and are issued again by
// start.
func (q *queue) connect(order int, abi blkif.ABI) (refs []xen.GrantRef, port xen.Port, err error) {
	d := q.disk
	rm, err := d.dom.Granter().Grant(d.backDom, 1<<order, false)
	if err != nil {
		return nil, 0, fmt.Errorf("grant ring: %w", err)
	}
	f, err := ring.InitFront(rm.Mem, abi.SlotSize())
	if err != nil {
		_ = d.dom.Granter().Revoke(rm)
		return nil, 0, err
	}
	if int(f.Size()) < len(q.slots) {
		_ = d.dom.Granter().Revoke(rm)
		return nil, 0, fmt.Errorf("ring of %d slots is smaller than the queue's %d", f.Size(), len(q.slots))
	}
	ch, err := d.dom.Events().AllocUnbound(d.backDom)
	if err != nil {
		_ = d.dom.Granter().Revoke(rm)
		return nil, 0, err
	}
	q.mu.Lock()
	q.ringMem, q.front, q.ch, q.abi = rm, f, ch, abi
	q.mu.Unlock()
	return rm.Refs, ch.Port(), nil
}

// start begins collecting responses and re-issues whatever was in flight
// when the previous connection went away.
func (q *queue) start() {
	q.mu.Lock()
	q.connected = true
	q.stop = make(chan struct{})
	q.reaped = make(chan struct{})
	for id := range q.slots {
		if st := q.slots[id].load(); st == slotlife.Submitted || st == slotlife.Orphaned {
			q.push(id)
		}
	}
	q.flushPush()
	q.cond.Broadcast()
	stop, reaped, ch := q.stop, q.reaped, q.ch
	q.mu.Unlock()
	go q.reaper(stop, reaped, ch)
}

// disconnect stops the reaper and drops the ring. Requests in flight keep
// their slots: issued ones go back to submitted, orphaned ones stay
// orphaned, and start issues both again. So while the queue is connected
// no slot is submitted (submit pushes at once), and while it is not, none
// is issued and no orphaned one is on a ring.
func (q *queue) disconnect() {
	q.mu.Lock()
	stop, reaped, ch, rm := q.stop, q.reaped, q.ch, q.ringMem
	q.connected = false
	q.stop, q.ch, q.ringMem, q.front = nil, nil, nil, nil
	for id := range q.slots {
		if _, ok := slotTable.On(q.slots[id].load(), slotlife.Disconnect); ok {
			q.to(id, slotlife.Disconnect)
		}
	}
	q.mu.Unlock()
	reaper.Stop(stop, reaped, ch)
	if rm != nil {
		// The backend may still map the ring for a moment; retry briefly,
		// then leave it (it is one page) rather than block forever.
		for i := 0; i < 50; i++ {
			if err := q.disk.dom.Granter().Revoke(rm); err == nil || !errors.Is(err, xen.ErrGrantInUse) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// reaper collects responses until stopped: the one goroutine per
// connection that sleeps on the event channel, so that a response nobody
// polls for still reaches its owner. A closed channel means the backend
// went away: the disk's runner is told, and reconnects.
//
// While requests are in flight and responses keep coming, it polls the
// ring (yielding the processor between looks) without re-arming
// rsp_event, so a backend answering meanwhile sends no notification. Only
// when nothing is in flight, or the poll window passes with nothing, does
// it arm (RING_FINAL_CHECK_FOR_RESPONSES) and sleep.
func (q *queue) reaper(stop, reaped chan struct{}, ch xen.Channel) {
	defer close(reaped)
	lastWork := time.Now()
	for {
		q.mu.Lock()
		q.reaperAsleep = false
		if q.front == nil {
			q.mu.Unlock()
			return
		}
		n, stalled := q.collect()
		if n > 0 && !stalled {
			q.mu.Unlock()
			lastWork = time.Now()
			continue
		}
		if !q.disk.cfg.NoPoll && !stalled && q.inFlight() && time.Since(lastWork) < reapPollWindow {
			q.mu.Unlock()
			if q.pollRing(stop, lastWork.Add(reapPollWindow)) {
				lastWork = time.Now()
			}
			continue
		}
		more := !stalled && q.front.FinalCheck()
		// Asleep from here until Wait returns: a submitter that consumes
		// responses meanwhile re-arms rsp_event (collect), or the event
		// armed here would go stale and nobody be woken.
		q.reaperAsleep = !more
		q.mu.Unlock()
		select {
		case <-stop:
			return
		default:
		}
		if more {
			continue
		}
		if again, lost := reaper.Sleep(ch, stop); !again {
			if lost {
				q.disk.peerLost()
			}
			return
		}
		lastWork = time.Now()
	}
}

// reapPollWindow is how long the reaper polls an unanswered ring before
// sleeping on the event channel.
const reapPollWindow = 20 * time.Microsecond

// pollRing looks at the ring until a response is there, the deadline
// passes or stop closes; it reports whether a response is there. It takes
// mu only when free: a busy mu is a submitter, which will look itself.
func (q *queue) pollRing(stop chan struct{}, deadline time.Time) bool {
	return reaper.Poll(stop, deadline, func() bool {
		if !q.mu.TryLock() {
			return false
		}
		found := q.front != nil && q.front.Unconsumed() > 0
		q.mu.Unlock()
		return found
	})
}

// inFlight reports whether requests are published and unanswered; mu held.
func (q *queue) inFlight() bool { return q.front.ReqProdPvt() != q.front.RspCons() }

// collect takes every response available off the ring and hands each to
// its request's owner (complete, then deliver); mu held, q.front set. It
// reports how many it took, and stalled when a response pair's second
// half is not published yet (the backend is waited for, not spun on).
//
// Any goroutine holding mu may collect. The reaper may be asleep on an
// rsp_event armed at the rsp_cons of its last look; consuming past it
// would leave that event behind rsp_cons, and the backend would notify
// nobody for what follows. So while the reaper sleeps, whoever consumes
// re-arms (RING_FINAL_CHECK_FOR_RESPONSES) and takes what the re-check
// finds; the reaper itself collects awake.
func (q *queue) collect() (completed int, stalled bool) {
	completed, stalled = q.collectOnce()
	if completed == 0 || stalled || !q.reaperAsleep {
		return completed, stalled
	}
	for q.front.FinalCheck() {
		n, stalled := q.collectOnce()
		if completed += n; n == 0 || stalled {
			return completed, stalled
		}
	}
	return completed, false
}

// collectOnce is one pass of collect over the responses published.
func (q *queue) collectOnce() (completed int, stalled bool) {
	var rsp blkif.Response
	for m := q.front.Unconsumed(); m > 0; m-- {
		q.abi.DecodeResponse(q.front.Response(), &rsp)
		if s := q.pairOf(&rsp); s != nil {
			if m < 2 {
				// The extra response must be published with it.
				return completed, true
			}
			q.abi.DecodeExtraResponse(q.front.ResponseAt(1), &s.extraRsp)
			q.front.Consume(2)
			m--
			q.complete(&rsp)
			completed++
			continue
		}
		q.front.Consume(1)
		q.complete(&rsp)
		completed++
	}
	return completed, false
}

// complete records a response and hands it out; mu held. A response whose
// id is not in flight is ignored (a hostile or confused backend).
func (q *queue) complete(rsp *blkif.Response) {
	if rsp.ID >= uint64(len(q.slots)) {
		q.disk.log.Warn("response with unknown id", "id", rsp.ID)
		return
	}
	s := &q.slots[rsp.ID]
	if _, ok := slotTable.On(s.load(), slotlife.Answer); !ok {
		q.disk.log.Warn("response for a request not in flight", "id", rsp.ID)
		return
	}
	s.status = rsp.Status
	q.to(int(rsp.ID), slotlife.Answer)
}

// pairOf returns the slot of a response that carries an extra response
// after it (a SCSI request in flight), or nil.
func (q *queue) pairOf(rsp *blkif.Response) *slot {
	if rsp.ID >= uint64(len(q.slots)) {
		return nil
	}
	s := &q.slots[rsp.ID]
	if _, inFlight := slotTable.On(s.load(), slotlife.Answer); inFlight && s.kind == kindSCSI {
		return s
	}
	return nil
}

// acquirePair takes two slots (the second only reserves a ring slot for
// the extra request) and npages pool pages, waiting as acquire does.
func (q *queue) acquirePair(ctx context.Context, npages int) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var w slotWait
	defer w.done()
	for len(q.free) < 2 || !q.takeable(npages) {
		if err := w.wait(ctx, q); err != nil {
			return 0, err
		}
	}
	id, partner := q.free[len(q.free)-1], q.free[len(q.free)-2]
	q.free = q.free[:len(q.free)-2]
	q.to(partner, slotlife.Pair)
	q.takeSlot(id, npages)
	s := &q.slots[id]
	s.kind, s.partner = kindSCSI, partner
	return id, nil
}

// acquire takes a free slot and npages pool pages, waiting while none
// are free until ctx ends or the disk closes. A disconnected queue hands
// out slots too: their requests wait for the reconnect (start issues
// them), bounded by the caller's context like any other wait.
func (q *queue) acquire(ctx context.Context, npages int) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var w slotWait
	defer w.done()
	for {
		if id, ok := q.take(npages); ok {
			return id, nil
		}
		if err := w.wait(ctx, q); err != nil {
			return 0, err
		}
	}
}

// slotWait is one caller's wait on q.cond for free slots. The cond knows
// nothing of contexts, so the first time the wait would block on a
// context that can end, a context.AfterFunc is registered to broadcast
// when it does; the fast path (a slot free at once, or a context that
// never ends) registers nothing and allocates nothing.
type slotWait struct {
	stop func() bool
}

// wait sleeps on q.cond once, or reports why it must not: ctx ended, or
// the disk is closed. q.mu held.
func (w *slotWait) wait(ctx context.Context, q *queue) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if q.dead || q.disk.isClosed() {
		return ErrClosed
	}
	if w.stop == nil && ctx.Done() != nil {
		// The broadcast takes mu, so it cannot slip in between the
		// checks above and Wait's unlocking of mu.
		w.stop = context.AfterFunc(ctx, func() {
			q.mu.Lock()
			q.cond.Broadcast()
			q.mu.Unlock()
		})
	}
	q.cond.Wait()
	return nil
}

// done unregisters the context's wake-up, if one was registered.
func (w *slotWait) done() {
	if w.stop != nil {
		w.stop()
	}
}

// takeable reports whether a request of npages can be placed now (given
// a free queue slot): the pool has the pages, and the ring, if there is
// one, has room (it always has: one ring slot per queue slot, and the
// ring has at least as many; checked all the same). mu held.
func (q *queue) takeable(npages int) bool {
	return len(q.freePage) >= npages && (q.front == nil || q.front.Free() >= 1)
}

// take takes a free slot and npages pool pages if the queue has them;
// mu held.
func (q *queue) take(npages int) (id int, ok bool) {
	if len(q.free) == 0 || !q.takeable(npages) {
		return 0, false
	}
	id = q.free[len(q.free)-1]
	q.free = q.free[:len(q.free)-1]
	q.takeSlot(id, npages)
	return id, true
}

// takeSlot gives slot id, just taken off the free list, to a new request
// (a data one, owned by a goroutine, until the caller says otherwise)
// with npages pool pages; mu held, the pages free.
func (q *queue) takeSlot(id, npages int) {
	q.to(id, slotlife.Take)
	s := &q.slots[id]
	select {
	case <-s.done:
		// None is expected (giveUp takes the token it leaves), but a token
		// from the slot's earlier life must not end this one.
	default:
	}
	s.pages = s.pages[:0]
	for i := 0; i < npages; i++ {
		s.pages = append(s.pages, q.freePage[len(q.freePage)-1])
		q.freePage = q.freePage[:len(q.freePage)-1]
	}
}

// releaseSlot frees slot id, whose owner took its outcome, with its pages.
func (q *queue) releaseSlot(id int) {
	q.mu.Lock()
	q.to(id, slotlife.Release)
	q.mu.Unlock()
}

// page returns pool page i.
func (q *queue) page(i int) []byte { return q.pool.Mem[i*xen.PageSize : (i+1)*xen.PageSize] }

// submit pushes slot id's request (already filled) and reports whether
// the backend was asleep at the last push. Submitters that
// arrive while others hold mu only write their request; the last of such
// a burst publishes them all with one req_prod store and at most one
// notification (blk-mq's commit_rqs): whoever brings submitting to zero
// does so under mu, after every request counted before it was written.
func (q *queue) submit(id int) (backendAsleep bool) {
	q.submitting.Add(1)
	q.mu.Lock()
	q.submitLocked(id)
	if q.submitting.Add(-1) == 0 && q.connected {
		q.flushPush()
	}
	backendAsleep = q.backendAsleep
	q.mu.Unlock()
	return backendAsleep
}

// submitLocked hands slot id's complete request to the queue: pushed on
// the live ring (published by the caller's flushPush), aborted at once if
// the disk closed for good, kept for the reconnect otherwise; a request
// aborted while it was filled stays so. It reports whether it pushed.
// mu held.
func (q *queue) submitLocked(id int) (pushed bool) {
	if q.to(id, slotlife.Submit) != slotlife.Submitted {
		return false
	}
	if q.dead {
		q.to(id, slotlife.Abort)
		return false
	}
	if q.connected {
		q.push(id)
		return true
	}
	return false
}

// poll looks at the ring, collecting what it finds on this goroutine,
// until ready reports true or w's current window passes; it reports
// whether ready did (and w adapts). A lone request polls for its own
// answer with the queue's window, a Batch's Reap for enough answers with
// its own. Only maxPollers goroutines poll at once: more would only take
// turns at mu. ready must not let its closure escape.
func (q *queue) poll(w *adaptpoll.Window, ready func() bool) (found bool) {
	if q.disk.cfg.NoPoll {
		return false
	}
	window := w.Next()
	if window <= 0 {
		return false
	}
	if q.pollers.Add(1) > maxPollers {
		q.pollers.Add(-1)
		return false
	}
	defer q.pollers.Add(-1)
	var deadline time.Time
	for i := 0; ; i++ {
		if q.mu.TryLock() {
			if q.front != nil {
				q.collect()
			}
			q.mu.Unlock()
		}
		if ready() {
			w.Hit()
			return true
		}
		if i%8 == 0 {
			now := time.Now()
			if i == 0 {
				deadline = now.Add(window)
			} else if !now.Before(deadline) {
				w.Miss()
				return false
			}
		}
		runtime.Gosched()
	}
}

const (
	ownPollWindow = 20 * time.Microsecond
	maxPollers    = 2
)

// push writes slot id's request into the ring (submitted, or orphaned and
// re-issued); mu held, the ring live and not full (one ring slot per
// queue slot, and the ring has at least as many).
func (q *queue) push(id int) {
	s := &q.slots[id]
	switch s.kind {
	case kindPR:
		q.abi.EncodePRRequest(q.front.NextRequest(), &s.prReq)
		q.front.Produce(1)
	case kindSCSI:
		// Both slots go out in the same push (docs/PROTOCOL.md).
		q.abi.EncodeRequest(q.front.NextRequest(), &s.req)
		q.abi.EncodeExtraRequest(q.front.RequestAt(1), &s.extra)
		q.front.Produce(2)
	default:
		q.abi.EncodeRequest(q.front.NextRequest(), &s.req)
		q.front.Produce(1)
	}
	q.to(id, slotlife.Push)
}

func (q *queue) flushPush() {
	q.backendAsleep = q.front.Push()
	if q.backendAsleep {
		_ = q.ch.Notify()
	}
}
