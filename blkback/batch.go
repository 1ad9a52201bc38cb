package blkback

import (
	"errors"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/storage"
)

// A queue carries out the plain reads and writes of one pass over its ring
// as one storage.Batch: each is checked and its grants mapped as it is
// consumed, added to the batch, and submitted when the pass has consumed
// what the ring holds. On a file the batch is one io_uring submission, so
// a pass of 128 reads is one system call and the reads overlap in the
// kernel instead of queueing behind one goroutine's preads. Requests in a
// batch may complete in any order, as requests in flight on any disk may;
// a flush, a barrier, a discard, a SCSI or reservation request is carried
// out only after the batch before it has completed (submitBatch), so the
// ordering blkif promises for those holds.
//
// When a batched request is answered depends on the mode:
//   - map mode without a journal: as it completes (answerNow), its own
//     mappings ended first (a frontend may end its grants' access as soon
//     as it sees the answer) and the answer published at once, so a fast
//     request does not wait for a slow one that shares its batch;
//   - grant-copy mode: after the whole batch, in batch order, each read
//     after the one grant copy that carries the batch's reads out;
//   - with a journal: after the whole batch, in batch order: a restart
//     replays the requests consumed after the last published answer, so
//     the answered ones must be a prefix of the consumed ones.

// inflight is what answering a batched request needs.
type inflight struct {
	id     uint64
	op     uint8 // the operation its response carries
	status int16 // its answer, once the batch has completed
	// In grant-copy mode: a read's segment entries, copied out to the
	// guest before it is answered (copyReadsOut).
	read         bool
	first, nsegs int32
	// maps0, maps1: the entries of q.maps this request made (map mode),
	// ended before it is answered at completion.
	maps0, maps1 int32
	answered     bool
}

// openBatch makes the queue's batch: as many operations as the ring has
// slots, as many buffers as one request may have segments.
func (q *queue) openBatch() {
	ops := int(q.ring.Size())
	q.batch = storage.NewBatch(q.store, ops, len(q.bufs))
	q.inflight = make([]inflight, 0, ops)
	q.doneFn = q.complete
}

func (q *queue) closeBatch() {
	q.submitBatch()
	if q.batch != nil {
		_ = q.batch.Close()
	}
}

// enqueue maps the checked read or write in q.plan and adds it to the
// batch, submitting the batch first if it has no room. queued false: it
// failed here and status is its answer.
func (q *queue) enqueue() (status int16, queued bool) {
	p := &q.plan
	if q.nbuf+p.nsegs > len(q.bufs) || len(q.inflight) == cap(q.inflight) ||
		q.cp != nil && !q.cp.fits(q.nbuf+p.nsegs) {
		q.submitBatch()
	}
	maps0 := q.nmaps
	if err := q.mapSegments(); err != nil {
		q.log.Warn("request failed", "op", q.req.Operation, "id", q.req.ID, "err", err)
		return blkif.RspError, false
	}
	base := q.nbuf
	err := q.batch.Add(p.kind == opWrite, q.bufs[base:base+p.nsegs], p.offset, uint32(len(q.inflight)))
	if errors.Is(err, storage.ErrBatchFull) {
		// The storage's own limit (it may split large requests): the
		// pages are mapped already, so they go with the batch's.
		q.nbuf += p.nsegs
		q.submitBatch()
		maps0 = q.nmaps // 0: the batch's mappings ended with it
		if err = q.mapSegments(); err == nil {
			err = q.batch.Add(p.kind == opWrite, q.bufs[:p.nsegs], p.offset, 0)
		}
	}
	if err != nil {
		// Its mappings (q.maps) are released with the batch's.
		return q.failed(err), false
	}
	q.inflight = append(q.inflight, inflight{id: q.req.ID, op: responseOperation(&q.req), status: blkif.RspError,
		read: p.kind == opRead, first: int32(q.nbuf), nsegs: int32(p.nsegs), maps0: int32(maps0), maps1: int32(q.nmaps)})
	q.nbuf += p.nsegs
	return 0, true
}

// submitBatch carries out the batch, answers each of its requests not
// answered as it completed, and releases the batch's mappings. A no-op
// when empty.
func (q *queue) submitBatch() {
	if len(q.inflight) > 0 {
		if err := q.batch.Submit(q.doneFn); err != nil {
			q.log.Warn("batch submission failed", "requests", len(q.inflight), "err", err)
		}
		if q.cp != nil {
			q.copyReadsOut()
		}
		for k := range q.inflight {
			if f := &q.inflight[k]; !f.answered {
				q.respond(f.id, f.op, f.status)
			}
		}
		q.inflight = q.inflight[:0]
	}
	if q.nmaps > 0 || q.nbuf > 0 {
		q.unmapSegments()
	}
}

// answerNow reports whether a batched request is answered as it
// completes (map mode without a journal; see above).
func (q *queue) answerNow() bool { return q.cp == nil && q.journal == nil }

// complete records the outcome of the batched request tag (the batch's
// done callback, called as each request completes). When answerNow, it
// ends the request's own mappings, answers it and publishes the answer;
// otherwise submitBatch answers it.
func (q *queue) complete(tag uint32, err error) {
	if int(tag) >= len(q.inflight) {
		q.log.Error("batch completed an unknown request", "tag", tag)
		return
	}
	f := &q.inflight[tag]
	status := int16(blkif.RspOkay)
	if err != nil {
		q.log.Warn("request failed", "op", f.op, "id", f.id, "err", err)
		status = blkif.RspError
		if errors.Is(err, storage.ErrNotSupported) {
			status = blkif.RspEOPNOTSUPP
		}
	}
	f.status = status
	if !q.answerNow() || f.answered {
		return
	}
	for i := f.maps0; i < f.maps1; i++ {
		if m := q.maps[i]; m != nil {
			_ = m.Unmap()
			q.maps[i] = nil
		}
	}
	f.answered = true
	q.respond(f.id, f.op, f.status)
	q.publish()
}

// publish pushes the responses produced so far and notifies the frontend
// if it asked. A failed notification is kept for drain to return: the
// channel is gone, and the ring with it.
func (q *queue) publish() {
	if q.ring.Push() {
		if err := q.ch.Notify(); err != nil && q.notifyErr == nil {
			q.notifyErr = err
		}
	}
}
