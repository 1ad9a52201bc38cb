// Package vscsiback is the PV SCSI (vscsiif) backend. Its pure core is
// the request check: a request copied out of the ring is checked against
// what the backend offered and the vhost's attached LUNs and requests in
// flight, and becomes a plan or an error response, before any grant is
// mapped or any engine runs. The answers follow Linux's xen-scsiback
// where it decides, and refuse more where the request contradicts itself.
package vscsiback

import (
	"errors"
	"fmt"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// The request path, as blkback's: three steps, and only the middle one
// does I/O.
//
//	n, total, err := segmentLists(r, l)   an SGGrant request's list pages
//	segs := fetchLists(r, n, total)       grant-copy them out once
//	check(r, segs, l, v, p)               every check, over the copies only
//
// so the other domain cannot change a segment between its check and its
// use (XSA-155), and check is a function of its arguments: the
// transcripts in testdata/requests.txt pin every answer it gives.

// maxSGGrant is the most data segments this backend accepts in one
// SGGrant request (its feature-sg-grant at most): 4 MiB in 4 KiB pages.
const maxSGGrant = 1024

// limits are what the backend advertised.
type limits struct {
	// sgGrant is the feature-sg-grant written: the most data segments of
	// an SGGrant request, vscsiif.SGTableSize..maxSGGrant; 0 when SGGrant
	// is not offered.
	sgGrant int
}

// vhost is what the check needs to know of the vhost the request came
// on; the I/O loop answers from its tables, the tests from theirs.
type vhost interface {
	// lun is the index of the LUN attached at the guest's
	// channel:id:lun, if one is.
	lun(channel, id, lun uint16) (int, bool)
	// inFlight reports whether a request rqid is being served, and on
	// which LUN. rqids are the frontend's, unique among its requests in
	// flight on the vhost.
	inFlight(rqid uint16) (lun int, ok bool)
}

// kind is what a request asks.
type kind uint8

const (
	kindCDB   kind = iota // run plan.cdb on the LUN
	kindAbort             // abort the request plan.ref on the LUN
	kindReset             // reset the LUN
)

// segment is one checked data segment: a grant and the byte range within
// its page.
type segment struct {
	ref        xen.GrantRef
	start, end uint16 // byte offsets within the page; start < end <= 4096
}

// plan is one request, checked. Owned by the queue that built it; reused.
type plan struct {
	rqid   uint16
	kind   kind
	lun    int // the vhost's index of the addressed LUN
	cdbLen int // 6..16
	cdb    [vscsiif.MaxCommandSize]byte
	dir    scsi.Direction
	ref    uint16 // kindAbort: the request to abort
	length int64  // bytes of data: the segments' total
	nsegs  int
	segs   [maxSGGrant]segment
}

func (p *plan) reset(rqid uint16) {
	p.rqid, p.kind, p.lun, p.cdbLen, p.dir, p.ref, p.length, p.nsegs = rqid, kindCDB, -1, 0, scsi.DirNone, 0, 0, 0
}

// The refusals a flood can cause (a scan of LUNs that are not attached,
// aborts of requests that finished) are preallocated: they allocate
// nothing.
var (
	errBadDirection = errors.New("sc_data_direction not one of Linux's four")
	errNotAttached  = errors.New("no LUN attached at that channel:id:lun")
	errRqIDInFlight = errors.New("rqid already in flight on this vhost")
	errUnknownTask  = errors.New("abort of a request not in flight on that LUN")
	errUnknownAct   = errors.New("unknown act")
	errBidi         = errors.New("bidirectional data: no engine serves it")
	errBadSegment   = errors.New("bad segment")
	errTooManySegs  = errors.New("too many segments")
	errNoSGGrant    = errors.New("SG_GRANT request, but feature-sg-grant is not offered")
	errBadList      = errors.New("bad SG_GRANT segment list")
	errDirection    = errors.New("data direction contradicts the request")
	errCmdLen       = errors.New("bad cmd_len")
)

var (
	rsltError       = vscsiif.Result(vscsiif.HostError, 0)
	rsltNoConnect   = vscsiif.Result(vscsiif.HostNoConnect, 0)
	rsltResetFailed = vscsiif.ResetFailed
)

// minCDB is the shortest CDB SCSI has (a 6-byte command).
const minCDB = 6

// segmentLists reads the seg[] entries of an SGGrant request: each names
// the bytes of a granted page that hold a list of segments. It returns
// how many entries (n, the pages to map) and how many data segments they
// hold (total), or the error check answers the request with. n is 0 for
// a request that is not an SGGrant SCSI_CDB (TASK_ABORT and RESET carry
// no data; their segments are ignored, as Linux's scsiback does).
func segmentLists(r *vscsiif.Request, l *limits) (n, total int, err error) {
	if r.Act != vscsiif.ActSCSICDB || !r.Indirect() {
		return 0, 0, nil
	}
	if l.sgGrant == 0 {
		return 0, 0, errNoSGGrant
	}
	n = r.SegmentCount()
	if n == 0 || n > vscsiif.SGTableSize {
		return 0, 0, fmt.Errorf("%w: %d list pages (want 1..%d)", errBadList, n, vscsiif.SGTableSize)
	}
	for i, s := range r.Seg[:n] {
		if s.Length == 0 || s.Length%vscsiif.SegmentSize != 0 || int(s.Offset)+int(s.Length) > vscsiif.PageSize {
			return 0, 0, fmt.Errorf("%w: list %d at %d+%d (want a non-empty multiple of %d within the page)",
				errBadList, i, s.Offset, s.Length, vscsiif.SegmentSize)
		}
		total += int(s.Length) / vscsiif.SegmentSize
	}
	if limit := min(l.sgGrant, maxSGGrant); total > limit {
		return 0, 0, fmt.Errorf("%w: %d listed (at most %d)", errTooManySegs, total, limit)
	}
	return n, total, nil
}

// check turns r, a request copied out of the ring, into p, and does
// nothing else: no mapping, no I/O, no logging. listed is an SGGrant
// request's data segments, copied out of the pages segmentLists named;
// it is ignored for any other request. A refused request is answered
// with rslt (never 0) and err says why; rslt is 0 exactly when err is
// nil. The checks run in Linux's scsiback's order where it has them, so
// a request both would refuse gets the same answer.
func check(r *vscsiif.Request, listed []vscsiif.Segment, l *limits, v vhost, p *plan) (rslt int32, err error) {
	p.reset(r.RqID)
	if r.DataDirection > vscsiif.DirNone {
		return rsltError, errBadDirection
	}
	if r.CmdLen > vscsiif.MaxCommandSize {
		return rsltError, fmt.Errorf("%w: %d over %d", errCmdLen, r.CmdLen, vscsiif.MaxCommandSize)
	}
	lun, ok := v.lun(r.Channel, r.ID, r.LUN)
	if !ok {
		return rsltNoConnect, errNotAttached
	}
	p.lun = lun
	if _, busy := v.inFlight(r.RqID); busy {
		return rsltError, errRqIDInFlight
	}
	switch r.Act {
	case vscsiif.ActSCSICDB:
		if err := p.cdbRequest(r, listed, l); err != nil {
			return rsltError, err
		}
		return 0, nil
	case vscsiif.ActSCSIAbort:
		if on, ok := v.inFlight(r.RefRqID); !ok || on != lun {
			return rsltResetFailed, errUnknownTask
		}
		p.kind, p.ref = kindAbort, r.RefRqID
		return 0, nil
	case vscsiif.ActSCSIReset:
		p.kind = kindReset
		return 0, nil
	}
	return rsltError, errUnknownAct
}

// cdbRequest checks a SCSI_CDB request's command, data segments and
// direction into p.
func (p *plan) cdbRequest(r *vscsiif.Request, listed []vscsiif.Segment, l *limits) error {
	if r.CmdLen < minCDB {
		return fmt.Errorf("%w: %d under %d", errCmdLen, r.CmdLen, minCDB)
	}
	p.cdbLen = int(r.CmdLen)
	p.cdb = r.Cmnd
	if r.Indirect() {
		_, total, err := segmentLists(r, l)
		if err != nil {
			return err
		}
		if len(listed) != total {
			return fmt.Errorf("%w: %d segments copied for the %d listed", errBadList, len(listed), total)
		}
		if err := p.addSegments(listed); err != nil {
			return err
		}
	} else {
		n := r.SegmentCount()
		if n > vscsiif.SGTableSize {
			return fmt.Errorf("%w: nr_segments %d over %d", errTooManySegs, n, vscsiif.SGTableSize)
		}
		if err := p.addSegments(r.Seg[:n]); err != nil {
			return err
		}
	}
	return p.direction(r.DataDirection)
}

func (p *plan) addSegments(segs []vscsiif.Segment) error {
	for i, s := range segs {
		if s.Length == 0 || int(s.Offset)+int(s.Length) > vscsiif.PageSize {
			return fmt.Errorf("%w: segment %d at %d+%d (want a non-empty range within the %d-byte page)",
				errBadSegment, i, s.Offset, s.Length, vscsiif.PageSize)
		}
		p.segs[p.nsegs] = segment{ref: xen.GrantRef(s.Gref), start: s.Offset, end: s.Offset + s.Length}
		p.nsegs++
		p.length += int64(s.Length)
	}
	return nil
}

// direction checks the request's data direction against its segments and
// its CDB (where the operation code decides the direction), and sets
// p.dir. A data-in or data-out request without segments moves nothing
// and is no contradiction; segments with DMA_NONE, or the opposite
// direction of the CDB's, are.
func (p *plan) direction(dir uint8) error {
	switch dir {
	case vscsiif.DirBidirectional:
		return errBidi
	case vscsiif.DirNone:
		if p.nsegs > 0 {
			return fmt.Errorf("%w: no data direction, yet %d bytes in segments", errDirection, p.length)
		}
		p.dir = scsi.DirNone
	case vscsiif.DirToDevice:
		p.dir = scsi.DirToDevice
	case vscsiif.DirFromDevice:
		p.dir = scsi.DirFromDevice
	}
	want, known := scsi.OpDirection(p.cdb[0])
	if !known || p.nsegs == 0 || want == p.dir {
		return nil
	}
	return fmt.Errorf("%w: %v data for operation %#02x, which moves %v", errDirection, p.dir, p.cdb[0], want)
}
