// Package blkif is the wire format of Xen's block protocol (xen/io/blkif.h):
// operations, requests, responses and their byte layouts on every ABI.
// It is pure: bytes in, structs out, no I/O. Decoding copies a request out
// of its ring slot once, into a fixed-size struct, so validation works on a
// copy the other domain cannot change (XSA-155); encoding writes every byte
// of a slot, padding included (XSA-216).
package blkif

// Operations (blkif.h BLKIF_OP_*).
const (
	OpRead           = 0
	OpWrite          = 1
	OpWriteBarrier   = 2
	OpFlushDiskcache = 3
	OpReserved1      = 4
	OpDiscard        = 5
	OpIndirect       = 6
)

// Response status codes (BLKIF_RSP_*).
const (
	RspOkay       int16 = 0
	RspError      int16 = -1
	RspEOPNOTSUPP int16 = -2
)

// Limits.
const (
	// MaxSegmentsPerRequest fits a direct request in a 112-byte slot.
	MaxSegmentsPerRequest = 11
	// MaxIndirectPagesPerRequest bounds indirect_grefs.
	MaxIndirectPagesPerRequest = 8
	// SegmentsPerIndirectPage: a 4096-byte page of 8-byte segments.
	SegmentsPerIndirectPage = 512
	// MaxIndirectSegments is the absolute ceiling of feature-max-indirect-segments.
	MaxIndirectSegments = MaxIndirectPagesPerRequest * SegmentsPerIndirectPage
	// SectorSize: blkif sector numbers are always in 512-byte units.
	SectorSize = 512
	// SegmentSize is the wire size of one blkif_request_segment.
	SegmentSize = 8
	// DiscardSecure is the flag of a discard request (BLKIF_DISCARD_SECURE).
	DiscardSecure = 1
)

// vdisk info bits (the backend's `info` node).
const (
	VdiskCDROM     = 1 << 0
	VdiskRemovable = 1 << 1
	VdiskReadOnly  = 1 << 2
)

// Segment is one blkif_request_segment: a granted page and the sectors of
// it the request uses, first_sect..last_sect inclusive.
type Segment struct {
	Gref      uint32
	FirstSect uint8
	LastSect  uint8
}

// Request is a decoded request of any kind. Which fields mean something
// depends on Operation:
//   - Read/Write/WriteBarrier/FlushDiskcache: NrSegments, Handle, Sector, Seg.
//   - Discard: Flag (DiscardSecure), Handle, Sector, NrSectors.
//   - Indirect: IndirectOp, NrSegments (up to MaxIndirectSegments), Handle,
//     Sector, IndirectGrefs (ceil(NrSegments/512) of them).
type Request struct {
	Operation     uint8
	NrSegments    uint16
	Handle        uint16
	ID            uint64
	Sector        uint64
	Seg           [MaxSegmentsPerRequest]Segment
	Flag          uint8
	NrSectors     uint64
	IndirectOp    uint8
	IndirectGrefs [MaxIndirectPagesPerRequest]uint32
}

// Response is a blkif_response.
type Response struct {
	ID        uint64
	Operation uint8
	Status    int16
}

// IndirectPages is the number of indirect pages nsegs segments take.
func IndirectPages(nsegs int) int {
	return (nsegs + SegmentsPerIndirectPage - 1) / SegmentsPerIndirectPage
}
