package blkfront

import (
	"context"
	"errors"
	"fmt"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/slotlife"
	"github.com/xenblk/xenblk/xen"
)

// ReadAt reads len(p) bytes at off. Both must be multiples of the disk's
// logical sector size; Device() offers unaligned access on top.
func (d *Disk) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return d.transfer(ctx, blkif.OpRead, p, off)
}

// WriteAt writes len(p) bytes at off; alignment as for ReadAt. A write
// that returns nil is on the backend's storage, durable after Flush.
func (d *Disk) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if d.Info().ReadOnly {
		return 0, fmt.Errorf("blkfront: write to a read-only disk")
	}
	return d.transfer(ctx, blkif.OpWrite, p, off)
}

// Flush makes every completed write durable: FLUSH_DISKCACHE, or an empty
// WRITE_BARRIER on a backend that only offers barriers, or nothing on a
// backend with neither (it has no volatile cache to flush).
func (d *Disk) Flush(ctx context.Context) error {
	in := d.Info()
	switch {
	case in.Flush:
		return d.control(ctx, blkif.Request{Operation: blkif.OpFlushDiskcache})
	case in.Barrier:
		return d.control(ctx, blkif.Request{Operation: blkif.OpWriteBarrier})
	}
	return nil
}

// Discard tells the backend that [off, off+n) is unused.
func (d *Disk) Discard(ctx context.Context, off, n int64, secure bool) error {
	in := d.Info()
	if !in.Discard {
		return ErrNotSupported
	}
	if secure && !in.DiscardSecure {
		return fmt.Errorf("%w: secure discard", ErrNotSupported)
	}
	if err := d.checkRange(off, n); err != nil {
		return err
	}
	r := blkif.Request{Operation: blkif.OpDiscard, Sector: uint64(off) / blkif.SectorSize, NrSectors: uint64(n) / blkif.SectorSize}
	if secure {
		r.Flag = blkif.DiscardSecure
	}
	return d.control(ctx, r)
}

func (d *Disk) checkRange(off, n int64) error {
	in := d.Info()
	ss := int64(in.SectorSize)
	if ss == 0 {
		return errors.New("blkfront: the backend has not said the disk's geometry yet")
	}
	if off < 0 || n < 0 || off%ss != 0 || n%ss != 0 {
		return fmt.Errorf("blkfront: range %d+%d not aligned to the %d-byte sector", off, n, ss)
	}
	if off > in.Size() || n > in.Size()-off {
		return fmt.Errorf("blkfront: range %d+%d beyond the disk's %d bytes", off, n, in.Size())
	}
	return nil
}

func (d *Disk) pick() *queue {
	i := d.next.Add(1)
	return d.queues[int(i)%len(d.queues)]
}

// control issues a request without data.
func (d *Disk) control(ctx context.Context, r blkif.Request) error {
	q := d.pick()
	id, err := q.acquire(ctx, 0)
	if err != nil {
		return err
	}
	s := &q.slots[id]
	r.ID = uint64(id)
	s.req = r
	kept, err := d.wait(ctx, q, id)
	if kept {
		q.releaseSlot(id)
	}
	return err
}

// wait submits slot id and waits for its response, or until ctx ends.
// kept reports whether the slot is still the caller's (to read its pages,
// then release). When ctx ends first, the request is given up and the
// slot is not the caller's any more: one never pushed on the live ring
// is freed, and one pushed is orphaned, its slot and pages reserved until
// the backend answers (the answer is dropped) or the disk closes, because
// the backend may still write them; err is then ctx's error.
func (d *Disk) wait(ctx context.Context, q *queue, id int) (kept bool, err error) {
	asleep := q.submit(id)
	s := &q.slots[id]
	if !asleep {
		q.poll(&q.ownWindow, func() bool { return len(s.done) > 0 })
	}
	// abortAll hands every request an outcome when the disk closes for
	// good.
	if done := ctx.Done(); done == nil {
		<-s.done
	} else {
		select {
		case <-s.done:
		case <-done:
			if !q.giveUp(id) {
				return false, ctx.Err()
			}
		}
	}
	return true, s.result()
}

// giveUp abandons slot id's request, whose caller's context ended: it
// reports true if the request has an outcome already (its token is
// taken: the caller has the result and the slot), otherwise frees the
// slot if the request is not on the live ring or else orphans it, and
// reports false.
func (q *queue) giveUp(id int) (finished bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := &q.slots[id]
	if s.load().HandedOut() {
		select {
		case <-s.done: // deliver sent it under mu
		default:
		}
		return true
	}
	q.to(id, slotlife.GiveUp)
	return false
}

func (d *Disk) transfer(ctx context.Context, op uint8, p []byte, off int64) (int, error) {
	if err := d.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	max := d.segsPerReq * xen.PageSize
	done := 0
	for done < len(p) {
		n := min(len(p)-done, max)
		if err := d.request(ctx, op, p[done:done+n], off+int64(done)); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// request moves one chunk (at most segsPerReq pages) through the pool.
func (d *Disk) request(ctx context.Context, op uint8, p []byte, off int64) error {
	q := d.pick()
	id, err := q.acquire(ctx, pagesFor(len(p)))
	if err != nil {
		return err
	}
	q.prepare(id, op, p, off)
	kept, err := d.wait(ctx, q, id)
	if !kept {
		return err
	}
	defer q.releaseSlot(id)
	if err != nil {
		return err
	}
	if op == blkif.OpRead {
		q.copyOut(id, p)
	}
	return nil
}

// pagesFor is how many pool pages n bytes of data take.
func pagesFor(n int) int { return (n + xen.PageSize - 1) / xen.PageSize }

// prepare builds slot id's read or write of p at off (direct segments, or
// indirect ones beyond blkif.MaxSegmentsPerRequest) over the pool pages
// acquired for it, copying a write's data in. The slot is the caller's
// (filling), so no lock is needed.
func (q *queue) prepare(id int, op uint8, p []byte, off int64) {
	if op == blkif.OpWrite {
		for i, pg := range q.slots[id].pages {
			copy(q.page(pg), p[i*xen.PageSize:])
		}
	}
	q.build(id, op, len(p), off)
}

// build fills slot id's request for n bytes at off over its pool pages
// (prepare without the data: a Batch's ReadView has no caller buffer).
func (q *queue) build(id int, op uint8, n int, off int64) {
	s := &q.slots[id]
	s.req = blkif.Request{ID: uint64(id), Sector: uint64(off) / blkif.SectorSize}
	q.fillSegments(s, op, 0, s.pages[:pagesFor(n)], n)
}

// fillSegments sets s's request's operation (op, with flag's bits) and its
// segments for n bytes over the pool pages given, in order: in the request
// when they fit, else in s's indirect pages (op becomes the indirect op).
func (q *queue) fillSegments(s *slot, op, flag uint8, pages []int, n int) {
	r := &s.req
	direct := len(pages) <= blkif.MaxSegmentsPerRequest
	r.NrSegments = uint16(len(pages))
	if direct {
		r.Operation = op | flag
	} else {
		r.Operation = blkif.OpIndirect | flag
		r.IndirectOp = op
		for k := 0; k < blkif.IndirectPages(len(pages)); k++ {
			r.IndirectGrefs[k] = uint32(s.ipages.Refs[k])
		}
	}
	for i, pg := range pages {
		k := min(n-i*xen.PageSize, xen.PageSize)
		sg := blkif.Segment{Gref: uint32(q.pool.Refs[pg]), LastSect: uint8((k - 1) / blkif.SectorSize)}
		if direct {
			r.Seg[i] = sg
		} else {
			blkif.EncodeIndirectSegment(s.iviews, i, sg)
		}
	}
}

// copyOut copies a completed read's data from slot id's pool pages to p.
func (q *queue) copyOut(id int, p []byte) {
	for i, pg := range q.slots[id].pages {
		copy(p[i*xen.PageSize:], q.page(pg))
	}
}
