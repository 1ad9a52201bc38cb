package vscsiback

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// The answers of requests that task management ends before they ran:
// host ABORT for the target of a TASK_ABORT, host RESET for the commands
// a RESET clears (Linux's midlayer retries those). Each is answered
// before the task management request itself, so the frontend gets every
// rqid back (scsifront frees a request's grants and rqid only on its
// response) and sees the command done by the time the abort succeeded.
var (
	rsltAborted = vscsiif.Result(vscsiif.HostAbort, 0)
	rsltReset   = vscsiif.Result(vscsiif.HostReset, 0)
)

// fetchLists copies the n list pages of r, an SG_GRANT request whose
// lists segmentLists accepted, out of the guest with one grant copy, and
// decodes their total segments into q.listed once: the copy is all check
// ever reads (XSA-155).
func (q *queue) fetchLists(r *vscsiif.Request, n, total int) ([]vscsiif.Segment, error) {
	q.csegs = q.csegs[:0]
	at := 0
	for _, s := range r.Seg[:n] {
		q.csegs = append(q.csegs, xen.GrantCopySegment{
			Dom: q.front, Ref: xen.GrantRef(s.Gref), Offset: s.Offset,
			Local: q.listBytes[at : at+int(s.Length)],
		})
		at += int(s.Length)
	}
	if err := q.mapper.Copy(q.csegs); err != nil {
		return nil, fmt.Errorf("copy SG_GRANT list pages: %w", err)
	}
	k := vscsiif.DecodeSegments(q.listBytes[:at], q.listed[:total])
	return q.listed[:k], nil
}

// prepare gives every command of the pass that moves data its buffer:
// the slot's own, grown to the request's length (kept across passes up
// to keepBuffer, so the steady state allocates nothing).
func (q *queue) prepare() {
	for i := range q.pend[:q.npend] {
		p := &q.pend[i]
		p.failed, p.data = false, nil
		if p.answered || p.plan.nsegs == 0 {
			continue
		}
		n := int(p.plan.length)
		if cap(p.buf) < n {
			p.buf = make([]byte, n)
		}
		p.data = p.buf[:n]
	}
}

// keepBuffer bounds the data buffer a slot keeps after its pass: a
// guest's largest requests would otherwise pin ring-size times 4 MiB.
const keepBuffer = 1 << 20

// release drops the buffers over keepBuffer and the pass's references to
// guest data.
func (q *queue) release() {
	for i := range q.pend[:q.npend] {
		p := &q.pend[i]
		p.data, p.cmd.Data = nil, nil
		if cap(p.buf) > keepBuffer {
			p.buf = nil
		}
	}
	clear(q.csegs)
	q.csegs = q.csegs[:0]
}

// copyData moves the data of the pass's commands between their buffers
// and the guest's granted pages with one grant copy: data-out into the
// buffers before any command runs (toGuest false), data-in out of them
// after all have (toGuest true; the bytes transferred only, not the
// residual). A command one of whose segments fails to copy is marked
// failed, answered with a host error: the guest granted it wrongly
// (read-only for data-in, a ref not granted to us, revoked).
func (q *queue) copyData(toGuest bool) {
	q.csegs, q.cowner = q.csegs[:0], q.cowner[:0]
	for i := range q.pend[:q.npend] {
		p := &q.pend[i]
		if p.answered || p.failed || p.data == nil || toGuest != (p.plan.dir == scsi.DirFromDevice) {
			continue
		}
		n := len(p.data)
		if toGuest {
			n -= p.res.Resid
		}
		at := 0
		for _, sg := range p.plan.segs[:p.plan.nsegs] {
			if at >= n {
				break
			}
			l := min(int(sg.end-sg.start), n-at)
			q.csegs = append(q.csegs, xen.GrantCopySegment{
				Dom: q.front, Ref: sg.ref, Offset: sg.start, Local: p.data[at : at+l], ToForeign: toGuest,
			})
			q.cowner = append(q.cowner, int32(i))
			at += l
		}
	}
	if len(q.csegs) == 0 || q.mapper.Copy(q.csegs) == nil {
		return
	}
	for k := range q.csegs {
		if err := q.csegs[k].Err; err != nil {
			if p := &q.pend[q.cowner[k]]; !p.failed {
				p.failed = true
				q.log.Warn("data grants", "rqid", p.req.RqID, "segments", p.plan.nsegs, "err", err)
			}
		}
	}
}

// nexusOf is the nexus LUN i's commands run as: its named nexus, else
// the vhost's.
func (q *queue) nexusOf(i int) scsi.Nexus {
	if n := q.table[i].Nexus; n.Initiator != "" {
		return n
	}
	return q.nexus
}

// execute runs the pending command p on its LUN's engine over its
// buffer, leaving the engine's result in p.res for answer.
func (q *queue) execute(p *pending) {
	pl := &p.plan
	p.cmd = scsi.Command{CDB: pl.cdb[:pl.cdbLen], Dir: pl.dir, Data: p.data}
	res := &p.res
	// GOOD, no sense, nothing moved, for an engine that sets nothing.
	// The sense bytes are not cleared here: every engine clears them as
	// it starts (scsi.Result.Reset), and only SenseLen bytes of them
	// travel, into a response cleared whole (respond).
	res.Status, res.SenseLen, res.Resid = scsi.StatusGood, 0, len(p.data)
	q.table[pl.lun].Engine.Execute(q.nexusOf(pl.lun), &p.cmd, res)
	if pl.cdb[0] == scsi.OpReportLuns && res.Status == scsi.StatusGood && pl.dir == scsi.DirFromDevice {
		q.reportLUNs(&p.req, p.cmd.CDB, p.data, res)
	}
	if res.Resid < 0 || res.Resid > len(p.data) {
		res.Resid = len(p.data)
	}
	if res.SenseLen < 0 || res.SenseLen > scsi.MaxSense {
		res.SenseLen = 0
	}
}

// answer responds to the executed command p: the engine's status as
// rslt's status byte with host OK, its sense (at most 96 bytes travel)
// and its residual; or a host error if its data could not be copied.
func (q *queue) answer(p *pending) {
	if p.failed {
		q.stats.answered(p.plan.dir, 0, true)
		q.respond(p.req.RqID, rsltError, 0, nil)
		return
	}
	res := &p.res
	q.stats.answered(p.plan.dir, len(p.data)-res.Resid, res.Status != scsi.StatusGood)
	sense := res.SenseBytes()
	if len(sense) > vscsiif.SenseBufferSize {
		sense = sense[:vscsiif.SenseBufferSize]
	}
	q.respond(p.req.RqID, vscsiif.Result(vscsiif.HostOK, res.Status), uint32(res.Resid), sense)
}

// reportLUNs puts the target's LUN list in the data of a REPORT LUNS
// its engine answered GOOD (the engine checked the CDB under its policy,
// but knows only its own unit): every LUN of the vhost at the request's
// channel and target, ascending, each as the guest addresses it (its
// 16-bit number in the first two bytes, which Linux's scsilun_to_int
// reads back as that number), for the selections of all logical units
// (0 and 2). Well-known LUNs (1) are none, as the engine said.
func (q *queue) reportLUNs(r *vscsiif.Request, cdb, data []byte, res *scsi.Result) {
	if sel := cdb[2]; sel != 0x00 && sel != 0x02 {
		return
	}
	var luns []uint16
	for _, l := range q.table {
		if l.Channel == r.Channel && l.Target == r.ID && l.Engine != nil {
			luns = append(luns, l.LUN)
		}
	}
	slices.Sort(luns)
	list := make([]byte, 8+8*len(luns))
	binary.BigEndian.PutUint32(list, uint32(8*len(luns)))
	for i, lun := range luns {
		binary.BigEndian.PutUint16(list[8+8*i:], lun)
	}
	alloc := int(binary.BigEndian.Uint32(cdb[6:10]))
	n := copy(data[:min(alloc, len(data))], list)
	res.Resid = len(data) - n
}

// abort answers the pending command pl.ref (check found it pending on
// the addressed LUN) as aborted, then the TASK_ABORT as RESET_SUCCESS.
func (q *queue) abort(pl *plan) {
	for i := range q.pend[:q.npend] {
		if t := &q.pend[i]; t.req.RqID == pl.ref && !t.answered {
			t.answered = true
			q.stats.ended()
			q.respond(t.req.RqID, rsltAborted, uint32(t.plan.length), nil)
			break
		}
	}
	q.respond(pl.rqid, vscsiif.ResetSuccess, 0, nil)
}

// reset is a LOGICAL UNIT RESET of the addressed LUN: its task set (the
// pass's pending commands on it) is cleared, each answered host RESET;
// the engine, if it keeps per-nexus state, resets the logical unit
// (scsi.LogicalUnitResetter: unit attention to the other nexuses, as SAM
// says); then the RESET is answered RESET_SUCCESS. Other LUNs' commands
// are untouched.
func (q *queue) reset(pl *plan) {
	for i := range q.pend[:q.npend] {
		if t := &q.pend[i]; t.plan.lun == pl.lun && !t.answered {
			t.answered = true
			q.stats.ended()
			q.respond(t.req.RqID, rsltReset, uint32(t.plan.length), nil)
		}
	}
	if r, ok := q.table[pl.lun].Engine.(scsi.LogicalUnitResetter); ok {
		r.LogicalUnitReset(q.nexusOf(pl.lun))
	}
	q.respond(pl.rqid, vscsiif.ResetSuccess, 0, nil)
}
