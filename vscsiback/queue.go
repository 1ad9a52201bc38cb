package vscsiback

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/backring"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// queue is a vhost's ring, served by one goroutine. A pass takes every
// request the ring holds in two rounds:
//
//  1. accept: each request is copied out of its slot once (XSA-155), its
//     SG_GRANT lists copied out of their pages, and checked (check.go). A
//     refused one is answered at once; a SCSI_CDB joins the pass's
//     pending list; a TASK_ABORT or RESET acts at once on what is pending
//     (task management overtakes the commands queued before it, as on a
//     target, so an abort reaches a command still queued).
//  2. execute: the data-out of every pending command is copied in from
//     the guest with one grant copy, each command runs on its LUN's
//     engine over its slot's buffer, the data-in of all goes back with
//     one grant copy, and each is answered in ring order.
//
// The guest's pages are never mapped: grant copy, as QEMU's qdisk does,
// since vscsiif has no persistent grants and a map and unmap per request
// would cost more than the copy. The pass then publishes its responses
// with one push and notifies if the frontend asked. Everything a request
// needs is preallocated here or kept from earlier passes, so the steady
// state allocates nothing.
type queue struct {
	v      *Vhost
	front  xen.DomID
	abi    blkif.ABI
	ring   *ring.Back
	ch     xen.Channel
	mapper xen.Mapper
	lim    limits
	nexus  scsi.Nexus
	log    *slog.Logger
	poll   time.Duration
	// helpers is the crew's size (crew.go): a pass runs at most
	// helpers+1 commands at once; 0 runs every pass serially.
	helpers int
	crew    *crew
	// crewAfter is Config.CrewAfter; pace and probe are crewTurn's
	// (crew.go), owned by the queue's goroutine.
	crewAfter time.Duration
	pace      time.Duration
	probe     uint32
	// stats are the vhost's counters: its driver's, kept across
	// connections, or the Vhost's own.
	stats *counters

	// table is the LUN table of the pass under way (plans index it).
	// pass is held for the whole of a pass, so that SetLUNs can wait
	// until no pass uses the table it replaced.
	table []LUN
	pass  sync.Mutex
	// pend[:npend] are the pass's accepted commands, in ring order;
	// pend[npend] is where the request being accepted is copied.
	pend  []pending
	npend int

	// SG_GRANT: the list pages' bytes of the request being accepted,
	// and the data segments decoded from them.
	listBytes [maxSGGrant * vscsiif.SegmentSize]byte
	listed    [maxSGGrant]vscsiif.Segment

	// The pass's grant copy: its segments and, for each, the index in
	// pend of the command it serves. Their capacity is kept.
	csegs  []xen.GrantCopySegment
	cowner []int32
	rsp    vscsiif.Response
}

// pending is one accepted request of the pass.
type pending struct {
	req  vscsiif.Request
	plan plan
	// answered: a TASK_ABORT or RESET of this pass answered it already.
	answered bool
	// failed: its data could not be copied; it is answered a host error.
	failed bool

	// buf is the slot's data buffer, kept across passes; data is the
	// command's bytes in it (nil without data). cmd and res are its
	// command and result.
	buf  []byte
	data []byte
	cmd  scsi.Command
	res  scsi.Result
}

func newQueue(v *Vhost, r *ring.Back, ch xen.Channel) *queue {
	cfg := &v.cfg
	q := &queue{
		v: v, front: cfg.Front, abi: cfg.ABI, ring: r, ch: ch, mapper: cfg.Domain.Mapper(),
		lim:   limits{sgGrant: cfg.SGGrant},
		nexus: scsi.Nexus{Dom: uint16(cfg.Front), Device: cfg.Vhost},
		log:   cfg.Log.With("vhost", cfg.Vhost, "frontend", cfg.Front),
		poll:  cfg.Poll,
		pend:  make([]pending, r.Size()), // a pass consumes at most the ring's slots
	}
	q.stats = cfg.stats
	if q.stats == nil {
		q.stats = new(counters)
	}
	q.crewAfter = cfg.CrewAfter
	if q.crewAfter == 0 {
		q.crewAfter = defaultCrewAfter
	}
	q.helpers = len(q.pend) - 1
	if cfg.Concurrency > 0 {
		q.helpers = min(cfg.Concurrency, len(q.pend)) - 1
	}
	return q
}

func (q *queue) close() {
	for i := range q.pend {
		q.pend[i].buf = nil
	}
}

// run serves the ring until the channel closes, with the notification
// scheme and adaptive poll of internal/backring.
func (q *queue) run() error {
	q.crew = startCrew(q, q.helpers)
	defer q.crew.stop()
	return backring.Serve(q.ring, q.ch, q.poll, nil, q.drain)
}

// drain is one pass: accept every request available, execute the
// accepted commands, publish the responses and notify if the frontend
// asked. It reports how many requests it consumed.
func (q *queue) drain() (handled int, waitPair bool, err error) {
	n, err := backring.Unconsumed(q.ring)
	if err != nil || n == 0 {
		return 0, false, err
	}
	q.pass.Lock()
	defer q.pass.Unlock()
	q.table = *q.v.luns.Load()
	for k := uint32(0); k < n; k++ {
		p := &q.pend[q.npend]
		vscsiif.DecodeRequest(q.abi, q.ring.Request(0), &p.req)
		q.ring.Consume(1)
		q.accept(p)
	}
	q.prepare()
	q.copyData(false)
	q.executeAll()
	q.copyData(true)
	for i := range q.pend[:q.npend] {
		if p := &q.pend[i]; !p.answered {
			q.answer(p)
		}
	}
	q.release()
	q.npend = 0
	q.table = nil
	if q.ring.Push() {
		if err := q.ch.Notify(); err != nil {
			return int(n), false, err
		}
	}
	return int(n), false, nil
}

// accept checks p.req, just copied out of the ring, and answers it, queues
// it (a SCSI_CDB) or carries it out (task management).
func (q *queue) accept(p *pending) {
	r := &p.req
	var listed []vscsiif.Segment
	n, total, err := segmentLists(r, &q.lim)
	if _, attached := q.lun(r.Channel, r.ID, r.LUN); err == nil && n > 0 && attached {
		// An error of segmentLists is check's to answer (it derives it
		// again), and so is a LUN not attached: no page is mapped for
		// either.
		if listed, err = q.fetchLists(r, n, total); err != nil {
			q.log.Warn("bad request", "rqid", r.RqID, "err", err)
			q.stats.errs.Add(1)
			q.respond(r.RqID, rsltError, 0, nil)
			return
		}
	}
	rslt, err := check(r, listed, &q.lim, q, &p.plan)
	if err != nil {
		if errors.Is(err, errNotAttached) || errors.Is(err, errUnknownTask) {
			// A guest's scan of the targets meets the first all the
			// time, an abort racing its command's answer the second:
			// not worth a warning, and a flood of either allocates
			// nothing (the log's arguments would).
			if q.log.Enabled(context.Background(), slog.LevelDebug) {
				q.log.Debug("refused", "rqid", r.RqID, "channel", r.Channel, "id", r.ID, "lun", r.LUN, "err", err)
			}
		} else {
			q.log.Warn("bad request", "rqid", r.RqID, "act", r.Act, "err", err)
		}
		q.stats.errs.Add(1)
		q.respond(r.RqID, rslt, 0, nil)
		return
	}
	q.stats.accepted(&p.plan)
	switch p.plan.kind {
	case kindCDB:
		p.answered = false
		q.npend++
	case kindAbort:
		q.abort(&p.plan)
	case kindReset:
		q.reset(&p.plan)
	}
}

// lun implements check's vhost over the pass's table.
func (q *queue) lun(channel, id, lun uint16) (int, bool) {
	for i := range q.table {
		if l := &q.table[i]; l.Channel == channel && l.Target == id && l.LUN == lun && l.Engine != nil {
			return i, true
		}
	}
	return 0, false
}

// inFlight implements check's vhost: the pass's commands not yet
// answered. (A pass answers everything it accepted before the next one
// starts, so no other request is in flight.)
func (q *queue) inFlight(rqid uint16) (int, bool) {
	for i := range q.pend[:q.npend] {
		if p := &q.pend[i]; p.req.RqID == rqid && !p.answered {
			return p.plan.lun, true
		}
	}
	return 0, false
}

// respond fills the next response slot (published at the pass's push).
// Every byte of the slot is written (vscsiif.EncodeResponse: XSA-216).
func (q *queue) respond(rqid uint16, rslt int32, resid uint32, sense []byte) {
	q.rsp = vscsiif.Response{RqID: rqid, Rslt: rslt, ResidualLen: resid}
	q.rsp.SenseLen = uint8(copy(q.rsp.Sense[:], sense))
	vscsiif.EncodeResponse(q.abi, q.ring.NextResponse(), &q.rsp)
	q.ring.Produce(1)
}
