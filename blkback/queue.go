package blkback

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/backring"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// queue serves one ring: one goroutine consumes requests, carries each out
// against the storage, and answers it, batching responses so that one
// notification covers all the responses of a pass (RING_PUSH_RESPONSES_
// AND_CHECK_NOTIFY, then RING_FINAL_CHECK_FOR_REQUESTS before sleeping).
// Everything a request needs is preallocated here, so the steady state
// allocates nothing.
type queue struct {
	index   int
	dev     *VBD
	front   xen.DomID
	abi     blkif.ABI
	ringMap xen.Mapping
	ring    *ring.Back
	ch      xen.Channel
	lim     *limits
	store   storage.Device
	log     *slog.Logger

	persistent *persistentGrants // nil unless feature-persistent was negotiated
	// cp: the vbd is in grant-copy mode (grantcopy.go): nothing of the
	// guest's is mapped but the ring. nil in map mode.
	cp *copyArea
	// indirectPages keeps the frontend's indirect pages mapped read-only
	// across requests (a frontend that negotiated feature-persistent reuses
	// them as it reuses data pages; Linux's blkback does the same). Apart
	// from the data set: those mappings are writable. Created at the first
	// indirect request, emptied when run returns.
	indirectPages *persistentGrants
	irefs         [blkif.MaxIndirectPagesPerRequest]xen.GrantRef

	req  blkif.Request
	plan plan
	// indirect: the segments of an indirect request, copied out of the
	// indirect pages once.
	indirect [maxIndirectSegments]blkif.Segment
	ipages   [blkif.MaxIndirectPagesPerRequest][]byte

	// The segments of the pass's batch (batch.go), then of the request
	// being mapped: refs[:nbuf], pages[:nbuf] and bufs[:nbuf] belong to
	// requests added to the batch; the request being mapped takes the
	// entries from nbuf on. maps[:nmaps] are every mapping those made
	// (persistent ones excepted), unmapped when the batch completes.
	refs  [maxIndirectSegments]xen.GrantRef
	pages [maxIndirectSegments][]byte // per segment: its mapped page
	bufs  [maxIndirectSegments][]byte // per segment: its bytes in the page
	maps  [maxIndirectSegments]xen.Mapping
	nmaps int
	nbuf  int
	// batch carries out the pass's reads and writes at once; inflight
	// holds what answering each needs, indexed by its batch tag.
	batch    storage.Batch
	inflight []inflight
	doneFn   func(tag uint32, err error) // q.complete, bound once
	// notifyErr: a notification made while answering at completion
	// failed (publish); drain returns it.
	notifyErr error

	// scsi executes the extension's commands; nil unless negotiated.
	scsi     SCSIExecutor
	nexus    scsi.Nexus
	extra    blkif.ExtraRequest
	extraRsp blkif.ExtraResponse
	scsiRes  scsi.Result
	scsiBuf  []byte // data buffer, allocated at the first SCSI command
	cdb      [blkif.MaxCDBLength]byte
	prReq    blkif.PRRequest
	pr       SCSIExecutor // serves OpReservation; nil when not offered
	// journal keeps every consumed request slot (nil: no journal);
	// requests before replayEnd are replayed from it (journal_linux.go).
	journal   *journal
	replayEnd uint32
	// fence judges plain reads and writes against the device's
	// reservations (nil: the device has none), negotiated or not.
	fence scsi.Fencer

	// poll: how long to keep polling the ring after a pass that found
	// work before arming the event index and sleeping (0: the default
	// window, backring.DefaultPoll; negative: never poll).
	poll time.Duration

	stats queueStats
}

// errFatal marks a ring-level protocol violation: the device is
// disconnected (only this one).
var errFatal = backring.ErrFatal

// run serves the ring until the channel closes or stop is closed, with
// the notification scheme and adaptive poll of internal/backring: after
// a pass that found work the queue polls the ring before it arms
// req_event and sleeps, so under load neither end makes an
// event-channel call.
func (q *queue) run(stop <-chan struct{}) error {
	defer q.dropIndirectPages()
	q.openBatch()
	defer q.closeBatch()
	return backring.Serve(q.ring, q.ch, q.poll, stop, q.drain)
}

// drain answers every request available in one pass, publishes the
// responses and notifies if the frontend asked. It reports how many
// requests it consumed, and waitPair when the frontend published only the
// first slot of a request pair.
func (q *queue) drain() (handled int, waitPair bool, err error) {
	n, err := backring.Unconsumed(q.ring)
	if err != nil {
		return 0, false, err
	}
	for ; n > 0; n-- {
		// Copy the request out of the slot once; from here on only the
		// copy is looked at (XSA-155).
		q.abi.DecodeRequest(q.requestSlot(0), &q.req)
		handled++
		if q.req.Operation&blkif.OpExtraFlag != 0 && q.scsi != nil {
			if n < 2 {
				// The frontend must publish both slots at once; until the
				// extra slot is visible, leave the pair alone.
				handled--
				waitPair = true
				break
			}
			q.submitBatch() // the command may touch the disk: after the pass's I/O
			q.abi.DecodeExtraRequest(q.requestSlot(1), &q.extra)
			q.consume(2)
			n--
			q.stats.scsi.Add(1)
			status := q.handleSCSI()
			q.respond(q.req.ID, q.req.Operation, status)
			q.abi.EncodeExtraResponse(q.ring.NextResponse(), &q.extraRsp)
			q.ring.Produce(1)
			continue
		}
		if q.req.Operation == blkif.OpReservation && q.pr != nil {
			q.submitBatch() // fencing changes apply after the I/O before them
			q.abi.DecodePRRequest(q.requestSlot(0), &q.prReq)
			q.consume(1)
			q.stats.pr.Add(1)
			status := q.handlePR()
			q.respond(q.prReq.ID, q.req.Operation, status)
			continue
		}
		q.consume(1)
		if status, queued := q.handle(); !queued {
			q.respond(q.req.ID, responseOperation(&q.req), status)
		}
	}
	// Every request consumed in this pass is answered before the push:
	// the journal's published count below relies on it.
	q.submitBatch()
	notify := q.ring.Push()
	if q.journal != nil {
		q.journal.setRspPublished(q.ring.ReqCons() - q.ring.Pending())
	}
	if err := q.notifyErr; err != nil {
		q.notifyErr = nil
		return handled, waitPair, err
	}
	if notify {
		if err := q.ch.Notify(); err != nil {
			return handled, waitPair, err
		}
	}
	return handled, waitPair, nil
}

// respond fills the next response slot (published at the pass's push)
// and counts an error answer.
func (q *queue) respond(id uint64, operation uint8, status int16) {
	if status != blkif.RspOkay {
		q.stats.errs.Add(1)
	}
	q.abi.EncodeResponse(q.ring.NextResponse(), id, operation, status)
	q.ring.Produce(1)
}

// requestSlot is the k-th unconsumed request's slot, read from the
// journal when there is one: a request not yet journaled is copied there
// first (the one copy of a slot a hostile frontend may rewrite), one its
// dead predecessor consumed is replayed from there (its ring slot may
// hold an unpublished response by now).
func (q *queue) requestSlot(k uint32) []byte {
	if q.journal == nil {
		return q.ring.Request(k)
	}
	i := q.ring.ReqCons() + k
	j := q.journal.slot(i)
	if int32(i-q.replayEnd) >= 0 {
		copy(j, q.ring.Request(k))
	}
	return j
}

// consume marks n requests consumed, in the journal before anything can
// answer them (an answer overwrites the ring slot).
func (q *queue) consume(n uint32) {
	q.ring.Consume(n)
	if q.journal != nil {
		if c := q.ring.ReqCons(); int32(c-q.journal.reqCons()) > 0 {
			q.journal.setReqCons(c)
		}
	}
}

// responseOperation is the operation a response carries: the request's,
// except that an indirect request is answered with its inner operation
// (read or write), as Linux's blkback does and Linux's blkfront checks
// ("response has wrong operation" and the disk is disabled otherwise).
func responseOperation(r *blkif.Request) uint8 {
	if r.Operation == blkif.OpIndirect {
		return r.IndirectOp
	}
	return r.Operation
}

// handle carries out q.req. A plain read or write joins the pass's batch
// (queued: its answer comes when the batch completes); anything else waits
// for the batch and is carried out now, and status is its answer.
func (q *queue) handle() (status int16, queued bool) {
	status, ok := q.check()
	if !ok {
		return status, false
	}
	if k := q.plan.kind; k == opRead || k == opWrite {
		return q.enqueue()
	}
	q.submitBatch() // flush and barrier order after everything before them
	if err := q.execute(); err != nil {
		return q.failed(err), false
	}
	return blkif.RspOkay, false
}

// failed logs a request the storage could not carry out and returns its
// status.
func (q *queue) failed(err error) int16 {
	q.log.Warn("request failed", "op", q.req.Operation, "id", q.req.ID, "err", err)
	if errors.Is(err, storage.ErrNotSupported) {
		return blkif.RspEOPNOTSUPP
	}
	return blkif.RspError
}

// check takes q.req through the first two steps of the request path
// (plan.go): the segments of an indirect request are fetched from its
// pages (the one step that maps anything), then the pure check runs over
// the copies, and the device's reservations fence what passed. ok false:
// status is the request's answer and nothing of it reaches the storage.
func (q *queue) check() (status int16, ok bool) {
	r := &q.req
	var segs []blkif.Segment
	if r.Operation == blkif.OpIndirect {
		var err error
		if segs, err = q.fetchIndirect(r); err != nil {
			q.log.Warn("bad request", "op", r.Operation, "id", r.ID, "err", err)
			return blkif.RspError, false
		}
	}
	p := &q.plan
	status, err := check(r, segs, q.lim, p)
	if err != nil {
		if status == blkif.RspEOPNOTSUPP {
			q.log.Debug("operation not offered", "op", r.Operation, "id", r.ID, "err", err)
		} else {
			q.log.Warn("bad request", "op", r.Operation, "id", r.ID, "err", err)
		}
		return status, false
	}
	if q.fence != nil && (p.kind != opFlush || p.nsegs > 0) {
		// Reservations bind the plain block path too: a guest fenced
		// off by another's reservation gets a conflict, not the disk.
		if q.fence.Fenced(q.nexus, p.kind != opRead) {
			q.log.Debug("reservation conflict", "op", r.Operation, "id", r.ID)
			if q.scsi != nil {
				return blkif.RspReservationConflict, false
			}
			return blkif.RspError, false
		}
	}
	q.stats.count(p)
	return blkif.RspOkay, true
}

// fetchIndirect maps the indirect pages of r (an indirect request, or the
// base of an extension pair that is one) read-only, copies its segments
// out of them once into q.indirect, and lets go of the pages before
// anything else happens: the copy is all check ever reads (XSA-155).
// nil, nil when indirectPages names no page (check refuses the request
// on its header).
func (q *queue) fetchIndirect(r *blkif.Request) ([]blkif.Segment, error) {
	npages := indirectPages(r, q.lim)
	if npages == 0 {
		return nil, nil
	}
	n := int(r.NrSegments)
	for i := 0; i < npages; i++ {
		q.irefs[i] = xen.GrantRef(r.IndirectGrefs[i])
	}
	if q.cp != nil {
		if err := q.copyIndirectIn(npages); err != nil {
			return nil, err
		}
		blkif.DecodeIndirectSegments(q.ipages[:npages], n, q.indirect[:n])
		return q.indirect[:n], nil
	}
	if q.persistent != nil {
		err := q.mapIndirectPersistent(npages)
		if err == nil {
			blkif.DecodeIndirectSegments(q.ipages[:npages], n, q.indirect[:n])
		}
		q.indirectPages.unpinAll() // the segments are copied out: done with the pages
		if err != nil {
			return nil, err
		}
		return q.indirect[:n], nil
	}
	m, err := q.dev.cfg.Domain.Mapper().Map(q.front, q.irefs[:npages], true)
	if err != nil {
		return nil, fmt.Errorf("map indirect pages: %w", err)
	}
	mem := m.Bytes()
	for i := 0; i < npages; i++ {
		q.ipages[i] = mem[i*xen.PageSize : (i+1)*xen.PageSize]
	}
	blkif.DecodeIndirectSegments(q.ipages[:npages], n, q.indirect[:n])
	_ = m.Unmap()
	return q.indirect[:n], nil
}

// indirectPagesKept bounds the indirect pages kept mapped per queue: 8
// pages for each of 32 requests in flight (1 MiB of mappings).
const indirectPagesKept = 256

// mapIndirectPersistent makes q.ipages[:npages] the pages of q.irefs, from
// the kept read-only set or by mapping (and keeping) each one.
func (q *queue) mapIndirectPersistent(npages int) error {
	if q.indirectPages == nil {
		q.indirectPages = newPersistentGrants(indirectPagesKept)
	}
	for i := 0; i < npages; i++ {
		ref := q.irefs[i]
		if page, ok := q.indirectPages.get(ref); ok {
			q.ipages[i] = page
			continue
		}
		m, err := q.dev.cfg.Domain.Mapper().Map(q.front, q.irefs[i:i+1], true)
		if err != nil {
			return fmt.Errorf("map indirect page: %w", err)
		}
		q.indirectPages.put(ref, m)
		q.ipages[i] = m.Bytes()
	}
	return nil
}

// dropIndirectPages unmaps the kept indirect pages; run calls it as it
// returns, before the device releases the rest of the queue.
func (q *queue) dropIndirectPages() {
	if q.indirectPages != nil {
		q.indirectPages.clear()
	}
}

// mapSegments maps the plan's segments into the entries from q.nbuf on:
// pages[q.nbuf+i] is segment i's page and bufs[q.nbuf+i] its bytes, from
// the persistent set or from one mapping of all the request's grants
// (recorded in q.maps, unmapped when the batch completes). In grant-copy
// mode the pages are staging pages instead (stageSegments).
func (q *queue) mapSegments() (err error) {
	p := &q.plan
	base := q.nbuf
	write := p.needsWritableGrants()
	// The persistent set pins what it hands out (get, put) until the
	// batch completes (unmapSegments), so mapping one segment never
	// evicts another that I/O may still target.
	for i := 0; i < p.nsegs; i++ {
		q.refs[base+i] = p.segs[i].ref
	}
	defer func() {
		for i := 0; i < p.nsegs; i++ {
			if err != nil {
				q.pages[base+i], q.bufs[base+i] = nil, nil
				continue
			}
			s := p.segs[i]
			q.bufs[base+i] = q.pages[base+i][s.start:s.end]
		}
	}()
	if q.cp != nil {
		return q.stageSegments()
	}
	mapper := q.dev.cfg.Domain.Mapper()
	if q.persistent != nil {
		for i := 0; i < p.nsegs; i++ {
			ref := p.segs[i].ref
			if page, ok := q.persistent.get(ref); ok {
				q.pages[base+i] = page
				continue
			}
			// Persistent grants are mapped writable (the frontend grants
			// them so); a read-only one is used once, read-only.
			m, err := mapper.Map(q.front, q.refs[base+i:base+i+1], false)
			if err != nil {
				if write {
					return err
				}
				if m, err = mapper.Map(q.front, q.refs[base+i:base+i+1], true); err != nil {
					return err
				}
				q.maps[q.nmaps] = m
				q.nmaps++
				q.pages[base+i] = m.Bytes()
				continue
			}
			q.persistent.put(ref, m)
			q.pages[base+i] = m.Bytes()
		}
		return nil
	}
	m, err := mapper.Map(q.front, q.refs[base:base+p.nsegs], !write)
	if err != nil {
		return err
	}
	q.maps[q.nmaps] = m
	q.nmaps++
	mem := m.Bytes()
	for i := 0; i < p.nsegs; i++ {
		q.pages[base+i] = mem[i*xen.PageSize : (i+1)*xen.PageSize]
	}
	return nil
}

// unmapSegments ends the batch's mappings, unpins its persistent pages
// and forgets its pages.
func (q *queue) unmapSegments() {
	if q.persistent != nil {
		q.persistent.unpinAll()
	}
	for i := 0; i < q.nmaps; i++ {
		if m := q.maps[i]; m != nil { // nil: ended as its request completed
			_ = m.Unmap()
			q.maps[i] = nil
		}
	}
	q.nmaps = 0
	n := max(q.nbuf, q.plan.nsegs)
	clear(q.pages[:n])
	clear(q.bufs[:n])
	q.nbuf = 0
}

// execute carries out a checked flush, barrier or discard, with the batch
// empty (the queue has no other request in flight).
func (q *queue) execute() error {
	p := &q.plan
	st := q.store
	switch p.kind {
	case opDiscard:
		return st.Discard(p.offset, p.length, p.secure)
	case opFlush, opBarrier:
		// Everything before is complete (the batch was submitted); flush
		// it, then write, then flush again.
		if err := st.Flush(); err != nil {
			return err
		}
		if p.nsegs == 0 {
			return nil
		}
	default:
		return fmt.Errorf("execute: unexpected %d", p.kind)
	}
	err := q.mapSegments()
	defer q.unmapSegments()
	if err != nil {
		return fmt.Errorf("map segments: %w", err)
	}
	if _, err := storage.WritevAt(st, q.bufs[:p.nsegs], p.offset); err != nil {
		return err
	}
	return st.Flush()
}
