package blkback

import (
	"fmt"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/xen"
)

// Grant-copy mode (a vbd's grant-copy=1, or Config.GrantCopy): the queue
// never maps a page of the guest's but its ring. Data moves between the
// guest's granted pages and the queue's own staging pages with grant copy
// (GNTTABOP_copy), as QEMU's qdisk and tapdisk move it:
//
//   - a write's segments are copied in, with one copy per request, as the
//     request joins the batch (the storage reads the staging pages);
//   - a read's segments are copied out after the batch has completed, with
//     one copy for every read of the batch, before any of them is
//     answered; a segment the guest no longer grants writable fails its
//     request alone;
//   - an indirect request's pages, the SCSI extension's command page and a
//     reservation's data page are copied too.
//
// A grant is held by the hypervisor only while its bytes move, so the
// guest may revoke it at any time: the copy fails and the request gets an
// error. Nothing stays mapped, so feature-persistent is not offered.

// Staging bounds, in pages. The staging area starts at stagingMinPages and
// doubles, while a batch needs more, up to stagingMaxPages (a batch that
// would need more is submitted first). One request larger than that still
// gets its pages: the area is bounded by the largest request the vbd
// advertised (MaxIndirectSegments).
const (
	stagingMinPages = 32
	stagingMaxPages = 1024
)

// copyArea is a queue's staging memory and its grant-copy operations.
// Owned by the queue's goroutine. Growing it allocates; a queue whose
// batches have reached their size allocates nothing more.
type copyArea struct {
	front   xen.DomID
	mapper  xen.Mapper
	staging []byte
	// segs[i] is the grant copy of the batch's segment entry i (the
	// queue's refs, pages and bufs at i): Local is its bytes in staging.
	segs   []xen.GrantCopySegment
	ipages [blkif.MaxIndirectPagesPerRequest * xen.PageSize]byte
	isegs  [blkif.MaxIndirectPagesPerRequest]xen.GrantCopySegment
	one    [1]xen.GrantCopySegment
}

func newCopyArea(front xen.DomID, mapper xen.Mapper) *copyArea {
	return &copyArea{front: front, mapper: mapper, segs: make([]xen.GrantCopySegment, maxIndirectSegments)}
}

func (c *copyArea) pages() int { return len(c.staging) / xen.PageSize }

// fits reports whether n staging pages can back one batch, growing the
// area up to stagingMaxPages if it must. false: submit the batch first.
func (c *copyArea) fits(n int) bool {
	if n <= c.pages() {
		return true
	}
	if n > stagingMaxPages {
		return false
	}
	c.grow(n)
	return true
}

// grow makes the area at least n pages. Pages already handed out stay
// valid: the old area lives on while a slice of the batch points into it.
func (c *copyArea) grow(n int) {
	if n <= c.pages() {
		return
	}
	size := max(c.pages()*2, stagingMinPages, n)
	if size > stagingMaxPages {
		size = max(stagingMaxPages, n)
	}
	c.staging = make([]byte, size*xen.PageSize)
}

func (c *copyArea) page(i int) []byte { return c.staging[i*xen.PageSize : (i+1)*xen.PageSize] }

// stageSegments backs the plan's segments with staging pages, entries from
// q.nbuf on, and copies a write's data in from the guest (one copy for
// the request). The pages are recorded in q.pages; mapSegments derives
// q.bufs from them.
func (q *queue) stageSegments() error {
	c, p, base := q.cp, &q.plan, q.nbuf
	c.grow(base + p.nsegs)
	toGuest := p.needsWritableGrants()
	for i := 0; i < p.nsegs; i++ {
		s := p.segs[i]
		page := c.page(base + i)
		q.pages[base+i] = page
		c.segs[base+i] = xen.GrantCopySegment{Dom: c.front, Ref: s.ref, Offset: s.start, Local: page[s.start:s.end], ToForeign: toGuest}
	}
	if toGuest {
		return nil // copied out once the storage has filled the pages
	}
	if err := c.mapper.Copy(c.segs[base : base+p.nsegs]); err != nil {
		return fmt.Errorf("grant copy from the guest: %w", err)
	}
	return nil
}

// copyReadsOut copies the batch's successful reads out to the guest with
// one grant copy, and fails the reads one of whose segments did not copy.
// Called after the batch completed and before any of it is answered.
func (q *queue) copyReadsOut() {
	c := q.cp
	// Compact the segments to copy to the front of c.segs: each read's
	// entries move down (never up), in batch order, so no entry is
	// overwritten before it has moved.
	w := int32(0)
	for k := range q.inflight {
		f := &q.inflight[k]
		if !f.read || f.status != blkif.RspOkay {
			continue
		}
		n := copy(c.segs[w:], c.segs[f.first:f.first+f.nsegs])
		f.first = w
		w += int32(n)
	}
	if w == 0 || c.mapper.Copy(c.segs[:w]) == nil {
		return
	}
	for k := range q.inflight {
		f := &q.inflight[k]
		if !f.read || f.status != blkif.RspOkay {
			continue
		}
		for _, s := range c.segs[f.first : f.first+f.nsegs] {
			if s.Err != nil {
				q.log.Warn("request failed", "op", f.op, "id", f.id, "err", fmt.Errorf("grant copy to the guest: %w", s.Err))
				f.status = blkif.RspError
				break
			}
		}
	}
}

// copyDataIn copies the first n bytes of the staged segments (entries
// from 0: the SCSI extension's data-in, which runs outside the batch) out
// to the guest; the guest's bytes past n are left as they were.
func (q *queue) copyDataIn(n int) error {
	segs := q.cp.segs[:q.plan.nsegs]
	k := 0
	for ; k < len(segs) && n > 0; k++ {
		l := min(len(segs[k].Local), n)
		segs[k].Local = segs[k].Local[:l]
		n -= l
	}
	if k == 0 {
		return nil
	}
	if err := q.cp.mapper.Copy(segs[:k]); err != nil {
		return fmt.Errorf("grant copy to the guest: %w", err)
	}
	return nil
}

// copyIndirectIn copies the indirect pages q.irefs[:npages] into the
// area's own pages and makes q.ipages those.
func (q *queue) copyIndirectIn(npages int) error {
	c := q.cp
	for i := 0; i < npages; i++ {
		page := c.ipages[i*xen.PageSize : (i+1)*xen.PageSize]
		c.isegs[i] = xen.GrantCopySegment{Dom: c.front, Ref: q.irefs[i], Local: page}
		q.ipages[i] = page
	}
	if err := c.mapper.Copy(c.isegs[:npages]); err != nil {
		return fmt.Errorf("grant copy of indirect pages: %w", err)
	}
	return nil
}

// copyPage moves local to (toGuest) or from the guest's page ref at
// offset, with one grant copy.
func (q *queue) copyPage(ref xen.GrantRef, offset int, local []byte, toGuest bool) error {
	c := q.cp
	if offset+len(local) > xen.PageSize {
		return fmt.Errorf("grant copy of %d bytes at %d crosses the page", len(local), offset)
	}
	c.one[0] = xen.GrantCopySegment{Dom: c.front, Ref: ref, Offset: uint16(offset), Local: local, ToForeign: toGuest}
	return c.mapper.Copy(c.one[:])
}
