package blkfront

import (
	"errors"
	"fmt"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/slotlife"
	"github.com/xenblk/xenblk/xen"
)

// ErrNoView: View or Release of a tag under which the batch holds no view
// (never reaped, reaped with an error, or released already).
var ErrNoView = errors.New("blkfront: no view held under this tag")

// ReadView places a read of n bytes at off (aligned as for ReadAt, at most
// MaxRequestBytes) whose data is not copied out: once Reap has reported
// tag without an error, View(tag) returns the bytes where the backend put
// them, in the request's granted pool pages. The contract:
//
//   - The batch holds a view from its Reap until Release(tag) or Close.
//     While held, its slot and pages serve no other request, and it
//     counts against the batch's depth (hold at most depth - 1 views to
//     keep a request in flight).
//   - A view reaped with an error is not held (there is nothing to
//     release).
//   - tag must differ from every other view read of the batch placed and
//     not released; ReadView refuses a duplicate.
//   - The slices must not be used after Release or Close: the pages then
//     carry other requests' data. If the Disk closes first, the views stay
//     readable until released (the pool is revoked at the last release).
//   - The pages stay granted to the backend (persistent grants), so a
//     hostile backend can rewrite them while they are read: copy whatever
//     must not change before validating it.
func (b *Batch) ReadView(off int64, n int, tag uint64) error {
	if b.closed {
		return ErrBatchClosed
	}
	if _, ok := b.findView(tag, false); ok {
		return fmt.Errorf("blkfront: a view read with tag %d is already placed or held", tag)
	}
	return b.place(blkif.OpRead, nil, n, off, tag, true)
}

// View returns the held view reaped with tag: its bytes in order, one
// slice per page (the last one shorter if the read was), valid until
// Release(tag). It may be called from Reap's callback.
func (b *Batch) View(tag uint64) ([][]byte, error) {
	if b.closed {
		return nil, ErrBatchClosed
	}
	i, ok := b.findView(tag, true)
	if !ok {
		return nil, ErrNoView
	}
	return b.viewPages[b.views[i]], nil
}

// Release gives the held view reaped with tag back: its slot and pages
// serve other requests from now on. Views may be released in any order,
// also from Reap's callback.
func (b *Batch) Release(tag uint64) error {
	if b.closed {
		return ErrBatchClosed
	}
	i, ok := b.findView(tag, true)
	if !ok {
		return ErrNoView
	}
	b.releaseView(i)
	return nil
}

// findView returns the index in b.views of the view read with tag (only
// a held one if held is set).
func (b *Batch) findView(tag uint64, held bool) (int, bool) {
	for i, id := range b.views {
		if r := &b.reqs[id]; r.tag == tag && (r.held || !held) {
			return i, true
		}
	}
	return 0, false
}

// dropView forgets slot id's view read (abandoned, or failed).
func (b *Batch) dropView(id int) {
	for i, v := range b.views {
		if v == id {
			b.views[i] = b.views[len(b.views)-1]
			b.views = b.views[:len(b.views)-1]
			return
		}
	}
}

// holdLocked keeps a reaped view read's slot for its view, or reports
// false when the slot is to be freed: the read failed (res says how), or
// the disk closed and its pool is already revoked (res becomes ErrClosed).
// A held view pins the pool (q.views); q.mu held.
func (b *Batch) holdLocked(id int, res *batchResult) bool {
	q := b.q
	if res.err == nil && q.poolRevoked {
		*res = batchResult{tag: res.tag, err: ErrClosed}
	}
	if res.err != nil {
		b.dropView(id)
		return false
	}
	q.views++
	b.reqs[id].held = true
	b.held++
	return true
}

// mapViews builds the page slices of the views harvest just held (their
// pool is pinned, so no lock is needed). Each slice is capped at its page
// so an append to it cannot spill into the next page.
func (b *Batch) mapViews() {
	q := b.q
	for _, id := range b.taken {
		r := &b.reqs[id]
		if !r.held {
			continue
		}
		pages := q.slots[id].pages
		pv := b.viewPages[id][:0]
		if cap(pv) < len(pages) {
			pv = make([][]byte, 0, max(len(pages), pagesFor(b.d.MaxRequestBytes())))
		}
		left := r.n
		for _, pg := range pages {
			k := min(left, xen.PageSize)
			pv = append(pv, q.page(pg)[:k:k])
			left -= k
		}
		b.viewPages[id] = pv
	}
}

// releaseView frees the slot of the held view b.views[i] and unpins the
// pool, revoking it if the disk closed meanwhile and this was the last
// view.
func (b *Batch) releaseView(i int) {
	id := b.views[i]
	b.views[i] = b.views[len(b.views)-1]
	b.views = b.views[:len(b.views)-1]
	b.reqs[id].held = false
	b.held--
	b.viewPages[id] = b.viewPages[id][:0]
	q := b.q
	q.mu.Lock()
	q.to(id, slotlife.Release)
	q.views--
	revoke := q.revokePoolLocked()
	q.mu.Unlock()
	if revoke {
		_ = q.disk.dom.Granter().Revoke(q.pool)
	}
}

// releaseAll releases every held view (Close, after abandoning the
// rest: only held views are left in b.views then).
func (b *Batch) releaseAll() {
	for len(b.views) > 0 {
		if !b.reqs[b.views[0]].held {
			b.dropView(b.views[0]) // not expected: abandon dropped these
			continue
		}
		b.releaseView(0)
	}
}
