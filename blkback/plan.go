package blkback

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/xenblk/xenblk/xen"
)

// The pure core of the backend: a decoded request, already copied out of
// the ring, is checked against the device's geometry and negotiated limits
// and turned into a plan — what to do, where on the disk, through which
// grants. A request that fails any check gets an error response and a log
// line; nothing of it reaches the storage.

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
)

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
	if l.logicalBlock > 512 {
		mask := uint64(l.logicalBlock>>sectorShift) - 1
		if sector&mask != 0 || nsect&mask != 0 {
			return fmt.Errorf("%w: sector %d + %d, block %d", errUnaligned, sector, nsect, l.logicalBlock)
		}
	}
	p.offset = int64(sector) << sectorShift
	return nil
}

// reset prepares the plan for a new request.
func (p *plan) reset(id uint64, operation uint8) {
	p.id, p.operation = id, operation
	p.kind, p.offset, p.length, p.secure, p.nsegs = opRead, 0, 0, false, 0
}

// needsWritableGrants: the backend writes into the pages (a read from disk).
func (p *plan) needsWritableGrants() bool { return p.kind == opRead }
