// Package vscsiif is the wire format of Xen's PV SCSI protocol
// (xen/io/vscsiif.h): actions, requests, responses, their byte layouts on
// every ABI, the rslt encoding and the xenstore keys of a vhost. It is
// pure: bytes in, structs out, no I/O. As in blkif, decoding copies a
// request out of its ring slot once, into a fixed-size struct, so checks
// run on a copy the other domain cannot change (XSA-155); encoding writes
// every byte of a slot, padding included (XSA-216).
//
// The ABIs are protocols.h's, as blkif names them (blkif.ABI,
// blkif.ParseProtocol): vscsiif's structs hold no 8-byte field, so the
// three share one layout, but each keeps its table so that
// internal/cinterop checks every one.
package vscsiif

// Actions (vscsiif_request.act, VSCSIIF_ACT_SCSI_*).
const (
	// ActSCSICDB runs the CDB in cmnd on channel:id:lun.
	ActSCSICDB = 1
	// ActSCSIAbort aborts the request ref_rqid on channel:id:lun (Linux's
	// scsiback: ABORT TASK).
	ActSCSIAbort = 2
	// ActSCSIReset resets the addressed device (Linux's scsiback: LOGICAL
	// UNIT RESET).
	ActSCSIReset = 3
	// ActSCSISGPreset is deprecated: vscsiif.h keeps the value only so that
	// it is never reused. No backend of today serves it.
	ActSCSISGPreset = 4
)

// Limits and sizes.
const (
	// SGTableSize is the number of seg[] entries of a request
	// (VSCSIIF_SG_TABLESIZE).
	SGTableSize = 26
	// MaxCommandSize is the size of cmnd, the longest CDB a request
	// carries (VSCSIIF_MAX_COMMAND_SIZE).
	MaxCommandSize = 16
	// SenseBufferSize is the size of a response's sense_buffer
	// (VSCSIIF_SENSE_BUFFERSIZE).
	SenseBufferSize = 96
	// PageSize is the page a segment lies in (VSCSIIF_PAGE_SIZE).
	PageSize = 4096
	// SegmentSize is the wire size of one scsiif_request_segment.
	SegmentSize = 8
	// SGPerPage is the number of segments one granted page of segments
	// holds (VSCSIIF_SG_PER_PAGE).
	SGPerPage = PageSize / SegmentSize
	// SGGrant is the flag of nr_segments (VSCSIIF_SG_GRANT): the low 7 bits
	// then count seg[] entries that each name a granted page holding
	// segments (offset and length, in bytes, of that list), not data.
	// Usable when the backend offers feature-sg-grant.
	SGGrant = 0x80
	// MaxSGGrant is the largest value feature-sg-grant may take.
	MaxSGGrant = 65535
)

// Data directions of sc_data_direction: Linux's enum dma_data_direction,
// which scsifront copies from the command and scsiback checks against
// exactly these four values.
const (
	DirBidirectional = 0
	DirToDevice      = 1 // data-out: the guest's pages are read
	DirFromDevice    = 2 // data-in: the guest's pages are written
	DirNone          = 3
)

// Segment is one scsiif_request_segment: a granted page and the bytes of
// it, offset..offset+length, that the request uses. In an SGGrant request,
// a seg[] entry names instead the bytes of a page that hold a list of
// segments.
type Segment struct {
	Gref   uint32
	Offset uint16
	Length uint16
}

// Request is a decoded vscsiif_request. Invariants of a decoded request:
// Cmnd is zero past CmdLen, and Seg is zero past SegmentCount (both as
// the wire claims them, at most the arrays' sizes); what the claims are
// worth is the backend's check to decide.
type Request struct {
	RqID              uint16
	Act               uint8
	CmdLen            uint8
	Cmnd              [MaxCommandSize]byte
	TimeoutPerCommand uint16 // seconds, 0 = default; deprecated by vscsiif.h
	Channel, ID, LUN  uint16
	RefRqID           uint16 // ActSCSIAbort: the rqid to abort
	DataDirection     uint8  // Dir*
	NrSegments        uint8  // as on the wire: SGGrant flag and count
	Seg               [SGTableSize]Segment
}

// Indirect reports whether the request's seg[] entries name segment
// lists (SGGrant) rather than data.
func (r *Request) Indirect() bool { return r.NrSegments&SGGrant != 0 }

// SegmentCount is the number of seg[] entries the request claims, the
// SGGrant flag masked off (up to 127; only SGTableSize fit).
func (r *Request) SegmentCount() int { return int(r.NrSegments &^ SGGrant) }

// Response is a decoded vscsiif_response. Sense is zero past SenseLen
// (at most SenseBufferSize bytes of it travel).
type Response struct {
	RqID        uint16
	SenseLen    uint8
	Sense       [SenseBufferSize]byte
	Rslt        int32 // see Result
	ResidualLen uint32
}
