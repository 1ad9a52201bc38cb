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

// fetchLists maps the n list pages of r, an SG_GRANT request whose lists
// segmentLists accepted, read-only, copies their total segments out into
// q.listed once and unmaps them before anything else happens: the copy
// is all check ever reads (XSA-155).
func (q *queue) fetchLists(r *vscsiif.Request, n, total int) ([]vscsiif.Segment, error) {
	for i := range n {
		q.lrefs[i] = xen.GrantRef(r.Seg[i].Gref)
	}
	m, err := q.mapper.Map(q.front, q.lrefs[:n], true)
	if err != nil {
		return nil, fmt.Errorf("map SG_GRANT list pages: %w", err)
	}
	mem := m.Bytes()
	k := 0
	for i, s := range r.Seg[:n] {
		page := mem[i*xen.PageSize : (i+1)*xen.PageSize]
		k += vscsiif.DecodeSegments(page[s.Offset:int(s.Offset)+int(s.Length)], q.listed[k:total])
	}
	_ = m.Unmap()
	return q.listed[:total], nil
}

// execute runs the pending command p on its LUN's engine and answers it:
// the data grants mapped for its duration (read-only for data-out, as
// scsifront grants them), the engine's status as rslt's status byte with
// host OK, its sense (at most 96 bytes travel) and its residual.
func (q *queue) execute(p *pending) {
	pl := &p.plan
	rqid := p.req.RqID
	var (
		data    []byte
		m       xen.Mapping
		bounced bool
	)
	if pl.nsegs > 0 {
		for i := range pl.nsegs {
			q.refs[i] = pl.segs[i].ref
		}
		var err error
		if m, err = q.mapper.Map(q.front, q.refs[:pl.nsegs], pl.dir != scsi.DirFromDevice); err != nil {
			q.log.Warn("data grants", "rqid", rqid, "segments", pl.nsegs, "err", err)
			q.respond(rqid, rsltError, 0, nil)
			return
		}
		data, bounced = q.dataBuffer(pl, m.Bytes())
	}
	q.cmd = scsi.Command{CDB: pl.cdb[:pl.cdbLen], Dir: pl.dir, Data: data}
	res := &q.res
	res.Reset(len(data))
	q.table[pl.lun].Engine.Execute(q.nexus, &q.cmd, res)
	if pl.cdb[0] == scsi.OpReportLuns && res.Status == scsi.StatusGood && pl.dir == scsi.DirFromDevice {
		q.reportLUNs(&p.req, data, res)
	}
	q.cmd.Data = nil // the guest's pages are unmapped below
	if res.Resid < 0 || res.Resid > len(data) {
		res.Resid = len(data)
	}
	if bounced && pl.dir == scsi.DirFromDevice {
		scatter(pl, m.Bytes(), data[:len(data)-res.Resid])
	}
	if m != nil {
		_ = m.Unmap()
	}
	if res.SenseLen < 0 || res.SenseLen > scsi.MaxSense {
		res.SenseLen = 0
	}
	sense := res.SenseBytes()
	if len(sense) > vscsiif.SenseBufferSize {
		sense = sense[:vscsiif.SenseBufferSize]
	}
	q.respond(rqid, vscsiif.Result(vscsiif.HostOK, res.Status), uint32(res.Resid), sense)
}

// reportLUNs puts the target's LUN list in the data of a REPORT LUNS
// its engine answered GOOD (the engine checked the CDB under its policy,
// but knows only its own unit): every LUN of the vhost at the request's
// channel and target, ascending, each as the guest addresses it (its
// 16-bit number in the first two bytes, which Linux's scsilun_to_int
// reads back as that number), for the selections of all logical units
// (0 and 2). Well-known LUNs (1) are none, as the engine said.
func (q *queue) reportLUNs(r *vscsiif.Request, data []byte, res *scsi.Result) {
	cdb := &q.cmd.CDB
	if sel := (*cdb)[2]; sel != 0x00 && sel != 0x02 {
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
	alloc := int(binary.BigEndian.Uint32((*cdb)[6:10]))
	n := copy(data[:min(alloc, len(data))], list)
	res.Resid = len(data) - n
}

// dataBuffer is the command's data buffer over mem, its segments' pages
// mapped in order. Segments that are one run of the mapping (each but
// the first starting at its page's start, each but the last ending at
// its page's end: what a guest's page-aligned buffer gives) are the
// buffer itself, and the engine reads or writes the guest's pages;
// otherwise the buffer is the vhost's bounce buffer, data-out gathered
// into it (bounced).
func (q *queue) dataBuffer(pl *plan, mem []byte) (data []byte, bounced bool) {
	n := pl.nsegs
	if contiguous(pl.segs[:n]) {
		return mem[pl.segs[0].start : (n-1)*xen.PageSize+int(pl.segs[n-1].end)], false
	}
	if q.bounce == nil {
		q.bounce = make([]byte, maxSGGrant*xen.PageSize)
	}
	data = q.bounce[:pl.length]
	if pl.dir == scsi.DirToDevice {
		gather(pl, mem, data)
	}
	return data, true
}

// contiguous reports whether segs, each in its own page of a mapping,
// are one run of bytes in it.
func contiguous(segs []segment) bool {
	for i, s := range segs {
		if (i > 0 && s.start != 0) || (i < len(segs)-1 && s.end != xen.PageSize) {
			return false
		}
	}
	return true
}

// gather copies the segments' bytes (segment i in page i of mem) into buf.
func gather(pl *plan, mem, buf []byte) {
	off := 0
	for i, s := range pl.segs[:pl.nsegs] {
		page := mem[i*xen.PageSize:]
		off += copy(buf[off:], page[s.start:s.end])
	}
}

// scatter copies buf into the segments (segment i in page i of mem).
func scatter(pl *plan, mem, buf []byte) {
	off := 0
	for i, s := range pl.segs[:pl.nsegs] {
		if off >= len(buf) {
			return
		}
		page := mem[i*xen.PageSize:]
		off += copy(page[s.start:s.end], buf[off:])
	}
}

// abort answers the pending command pl.ref (check found it pending on
// the addressed LUN) as aborted, then the TASK_ABORT as RESET_SUCCESS.
func (q *queue) abort(pl *plan) {
	for i := range q.pend[:q.npend] {
		if t := &q.pend[i]; t.req.RqID == pl.ref && !t.answered {
			t.answered = true
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
			q.respond(t.req.RqID, rsltReset, uint32(t.plan.length), nil)
		}
	}
	if r, ok := q.table[pl.lun].Engine.(scsi.LogicalUnitResetter); ok {
		r.LogicalUnitReset(q.nexus)
	}
	q.respond(pl.rqid, vscsiif.ResetSuccess, 0, nil)
}
