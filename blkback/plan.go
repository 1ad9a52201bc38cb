package blkback

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/xen"
)

// The pure core of the backend: a decoded request, already copied out of
// the ring, is checked against the device's geometry and negotiated limits
// and turned into a plan — what to do, where on the disk, through which
// grants. A request that fails any check gets an error response and a log
// line; nothing of it reaches the storage.
//
// The request path is three steps, and only the middle one does I/O:
//
//	n := indirectPages(r, l)        which indirect pages hold r's segments
//	segs := queue.fetchIndirect(n)  map them, copy the segments out once, unmap
//	check(r, segs, l, p)            every check, over the copies only
//
// so the other domain cannot change a segment between its check and its
// use (XSA-155), and check is a function of its arguments: the
// transcripts in testdata/requests.txt pin every answer it gives.

// sectorShift: blkif sectors are always 512 bytes, whatever the disk's
// logical block size (blkif.h, "sector-size").
const sectorShift = 9

// sectorsPerPage: a segment lies within one 4096-byte page.
const sectorsPerPage = xen.PageSize >> sectorShift

// maxIndirectSegments is the most this backend ever advertises:
// 8 indirect pages of 512 segments each.
const maxIndirectSegments = 8 * 512

// opKind is what a request asks of the storage.
type opKind uint8

const (
	opRead opKind = iota
	opWrite
	opFlush   // FLUSH_DISKCACHE: flush, then write segments if any, flush
	opBarrier // WRITE_BARRIER: flush, write, flush
	opDiscard
)

// segment is one checked data segment: a grant and the byte range within
// its page.
type segment struct {
	ref        xen.GrantRef
	start, end uint16 // byte offsets within the page; start < end <= 4096
}

// plan is one request, checked. Owned by the queue that built it; reused.
type plan struct {
	id        uint64
	operation uint8 // echoed in the response
	kind      opKind
	offset    int64 // byte offset on the disk
	length    int64 // bytes (data length for I/O, range for discard)
	secure    bool  // discard: BLKIF_DISCARD_SECURE and the backend offers it
	nsegs     int
	segs      [maxIndirectSegments]segment
}

// limits are what the backend advertised and the frontend negotiated.
type limits struct {
	sectors          atomic.Uint64 // disk size in 512-byte sectors; online resize changes it
	logicalBlock     uint32        // bytes
	readOnly         bool
	discard          bool
	secureDiscard    bool
	barrier          bool
	flush            bool
	indirectSegments int // 0 when not offered
}

var (
	errBadSegment   = errors.New("bad segment")
	errBadRange     = errors.New("sectors beyond the end of the disk")
	errReadOnly     = errors.New("write to a read-only disk")
	errTooManySegs  = errors.New("too many segments")
	errNoSegments   = errors.New("read or write without segments")
	errUnaligned    = errors.New("request not aligned to the logical block size")
	errNotSupported = errors.New("operation not offered by this backend")
	errUnknownOp    = errors.New("unknown operation")
	errIndirectOp   = errors.New("indirect operation is not read or write")
	// The operations a backend may withhold, refused with EOPNOTSUPP as
	// Linux's blkback does (preallocated: a refusal allocates nothing).
	errNoBarrier  = fmt.Errorf("%w: write-barrier (feature-barrier 0)", errNotSupported)
	errNoFlush    = fmt.Errorf("%w: flush-diskcache (feature-flush-cache 0)", errNotSupported)
	errNoDiscard  = fmt.Errorf("%w: discard (feature-discard 0)", errNotSupported)
	errNoIndirect = fmt.Errorf("%w: indirect (no feature-max-indirect-segments)", errNotSupported)
)

// check turns r, a request copied out of the ring, into p, and does
// nothing else: no mapping, no I/O, no logging. indirect is an indirect
// request's segments, copied out of the pages indirectPages named; it is
// ignored for any other request. A refused request gets status (never
// RspOkay) as its answer, and err says why; status is RspOkay exactly when
// err is nil.
func check(r *blkif.Request, indirect []blkif.Segment, l *limits, p *plan) (status int16, err error) {
	p.reset(r.ID, r.Operation)
	switch r.Operation {
	case blkif.OpRead, blkif.OpWrite:
		p.kind = opRead
		if r.Operation == blkif.OpWrite {
			p.kind = opWrite
		}
		err = p.direct(r, l)
	case blkif.OpWriteBarrier, blkif.OpFlushDiskcache:
		kind, offered, refusal := opBarrier, l.barrier, errNoBarrier
		if r.Operation == blkif.OpFlushDiskcache {
			kind, offered, refusal = opFlush, l.flush, errNoFlush
		}
		if !offered {
			return blkif.RspEOPNOTSUPP, refusal
		}
		p.kind = kind
		// Without segments, a pure ordering point: a flush.
		if r.NrSegments > 0 {
			err = p.direct(r, l)
		}
	case blkif.OpDiscard:
		if !l.discard {
			return blkif.RspEOPNOTSUPP, errNoDiscard
		}
		p.kind = opDiscard
		err = p.discard(r, l)
	case blkif.OpIndirect:
		if l.indirectSegments == 0 {
			return blkif.RspEOPNOTSUPP, errNoIndirect
		}
		if err = p.indirect(r, indirect, l); err == nil {
			err = p.checkRange(r.Sector, l)
		}
	default:
		return blkif.RspError, fmt.Errorf("%w %d", errUnknownOp, r.Operation)
	}
	if err != nil {
		return blkif.RspError, err
	}
	if l.readOnly && p.writes() {
		return blkif.RspError, errReadOnly
	}
	return blkif.RspOkay, nil
}

// writes reports whether the plan changes the disk. An empty flush does
// not (it is allowed on a read-only disk); an empty barrier counts as a
// write, as it always has here.
func (p *plan) writes() bool {
	switch p.kind {
	case opWrite, opBarrier, opDiscard:
		return true
	case opFlush:
		return p.nsegs > 0
	}
	return false
}

// direct checks and records a direct request's segments and range.
func (p *plan) direct(r *blkif.Request, l *limits) error {
	n := int(r.NrSegments)
	if n == 0 {
		return errNoSegments
	}
	if n > blkif.MaxSegmentsPerRequest {
		return fmt.Errorf("%w: %d", errTooManySegs, n)
	}
	if err := p.addSegments(r.Seg[:n]); err != nil {
		return err
	}
	return p.checkRange(r.Sector, l)
}

// indirect checks an indirect request's header and records its segments,
// segs being the copies fetched from its indirect pages. The caller checks
// the range (an extension pair has none).
func (p *plan) indirect(r *blkif.Request, segs []blkif.Segment, l *limits) error {
	n, err := indirectHeader(r, l)
	if err != nil {
		return err
	}
	p.kind = opWrite
	if r.IndirectOp == blkif.OpRead {
		p.kind = opRead
	}
	if len(segs) != n {
		// Not the frontend's doing: the caller fetched the wrong pages.
		return fmt.Errorf("%w: %d segments copied for %d", errBadSegment, len(segs), n)
	}
	return p.addSegments(segs)
}

// indirectHeader checks what an indirect request says of itself (its
// inner operation and segment count) and returns the segment count.
func indirectHeader(r *blkif.Request, l *limits) (int, error) {
	if r.IndirectOp != blkif.OpRead && r.IndirectOp != blkif.OpWrite {
		return 0, fmt.Errorf("%w: %d", errIndirectOp, r.IndirectOp)
	}
	n := int(r.NrSegments)
	if n == 0 || n > l.indirectSegments {
		return 0, fmt.Errorf("%w: %d indirect segments (limit %d)", errTooManySegs, n, l.indirectSegments)
	}
	return n, nil
}

// indirectPages is how many indirect pages hold the segments of r, an
// indirect request (or the base of an extension pair that is one): the
// pages the queue maps and copies before check. 0 when the header is one
// check refuses anyway: such a request is refused without its pages being
// mapped.
func indirectPages(r *blkif.Request, l *limits) int {
	if r.Operation&^blkif.OpExtraFlag != blkif.OpIndirect || l.indirectSegments == 0 {
		return 0
	}
	n, err := indirectHeader(r, l)
	if err != nil {
		return 0
	}
	return blkif.IndirectPages(n)
}

// discard checks and records a discard's range.
func (p *plan) discard(r *blkif.Request, l *limits) error {
	size := l.sectors.Load()
	if r.NrSectors > size || r.Sector > size-r.NrSectors {
		return fmt.Errorf("%w: discard %d+%d", errBadRange, r.Sector, r.NrSectors)
	}
	if err := l.checkAlignment(r.Sector, r.NrSectors); err != nil {
		return err
	}
	p.offset = int64(r.Sector) << sectorShift
	p.length = int64(r.NrSectors) << sectorShift
	p.secure = r.Flag&blkif.DiscardSecure != 0 && l.secureDiscard
	return nil
}

// addSegments checks and appends segs.
func (p *plan) addSegments(segs []blkif.Segment) error {
	for _, s := range segs {
		if err := p.addSegment(s.Gref, s.FirstSect, s.LastSect); err != nil {
			return err
		}
	}
	return nil
}

// addSegment checks one segment and appends it to the plan.
func (p *plan) addSegment(ref uint32, first, last uint8) error {
	if first > last || last >= sectorsPerPage {
		return fmt.Errorf("%w: first_sect %d last_sect %d", errBadSegment, first, last)
	}
	if p.nsegs >= len(p.segs) {
		return errTooManySegs
	}
	p.segs[p.nsegs] = segment{
		ref:   xen.GrantRef(ref),
		start: uint16(first) << sectorShift,
		end:   (uint16(last) + 1) << sectorShift,
	}
	p.nsegs++
	p.length += int64(last-first+1) << sectorShift
	return nil
}

// checkRange validates the plan's disk range against the limits. Called
// once all segments are in.
func (p *plan) checkRange(sector uint64, l *limits) error {
	nsect := uint64(p.length) >> sectorShift
	size := l.sectors.Load()
	if sector > size || nsect > size-sector {
		return fmt.Errorf("%w: sector %d + %d > %d", errBadRange, sector, nsect, size)
	}
	if err := l.checkAlignment(sector, nsect); err != nil {
		return err
	}
	p.offset = int64(sector) << sectorShift
	return nil
}

// checkAlignment: on a disk whose logical blocks are larger than a
// sector, a request must start and end on a block.
func (l *limits) checkAlignment(sector, nsect uint64) error {
	if l.logicalBlock > 512 {
		mask := uint64(l.logicalBlock>>sectorShift) - 1
		if sector&mask != 0 || nsect&mask != 0 {
			return fmt.Errorf("%w: sector %d + %d, block %d", errUnaligned, sector, nsect, l.logicalBlock)
		}
	}
	return nil
}

// reset prepares the plan for a new request.
func (p *plan) reset(id uint64, operation uint8) {
	p.id, p.operation = id, operation
	p.kind, p.offset, p.length, p.secure, p.nsegs = opRead, 0, 0, false, 0
}

// needsWritableGrants: the backend writes into the pages (a read from disk).
func (p *plan) needsWritableGrants() bool { return p.kind == opRead }
