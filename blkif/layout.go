package blkif

import (
	"encoding/binary"
	"fmt"
)

// ABI is one of the three layouts blkif.h's structs take, chosen by the
// frontend's `protocol` node. x86_64 and arm share a layout (uint64_t is
// 8-aligned on both); x86_32 aligns uint64_t to 4, which moves `id` and
// everything after it.
type ABI uint8

const (
	X86_64 ABI = iota
	X86_32
	ARM
)

// Protocol names written in the frontend's `protocol` node (XEN_IO_PROTO_ABI_*).
const (
	ProtocolX86_32 = "x86_32-abi"
	ProtocolX86_64 = "x86_64-abi"
	ProtocolARM    = "arm-abi"
)

// Native is the ABI an absent `protocol` node means: the backend's own.
// xenblk runs on 64-bit x86 and arm, which share one layout.
const Native = X86_64

// ParseProtocol maps a `protocol` value to an ABI; "" means Native.
func ParseProtocol(s string) (ABI, error) {
	switch s {
	case "":
		return Native, nil
	case ProtocolX86_64:
		return X86_64, nil
	case ProtocolX86_32:
		return X86_32, nil
	case ProtocolARM:
		return ARM, nil
	}
	return 0, fmt.Errorf("blkif: unknown protocol %q (want %s, %s or %s)", s, ProtocolX86_64, ProtocolX86_32, ProtocolARM)
}

func (a ABI) String() string {
	switch a {
	case X86_64:
		return ProtocolX86_64
	case X86_32:
		return ProtocolX86_32
	case ARM:
		return ProtocolARM
	}
	return fmt.Sprintf("ABI(%d)", uint8(a))
}

// Layout is the byte layout of every blkif struct on one ABI. Offsets
// are from the start of the slot; checked against the C headers by
// internal/cinterop.
type Layout struct {
	RequestSize  int // sizeof(struct blkif_request)
	ResponseSize int // sizeof(struct blkif_response)
	SlotSize     int // sizeof(union blkif_sring_entry)

	// struct blkif_request: operation@0, nr_segments@1, handle@2.
	ReqID, ReqSector, ReqSeg int

	// struct blkif_request_discard: operation@0, flag@1, handle@2.
	DiscardSize                                int
	DiscardID, DiscardSector, DiscardNrSectors int

	// struct blkif_request_indirect: operation@0, indirect_op@1.
	IndirectSize                                                                  int
	IndirectNrSegments, IndirectID, IndirectSector, IndirectHandle, IndirectGrefs int

	// struct blkif_response.
	RspID, RspOperation, RspStatus int
}

var layout64 = Layout{
	RequestSize: 112, ResponseSize: 16, SlotSize: 112,
	ReqID: 8, ReqSector: 16, ReqSeg: 24,
	DiscardSize: 32, DiscardID: 8, DiscardSector: 16, DiscardNrSectors: 24,
	IndirectSize: 64, IndirectNrSegments: 2, IndirectID: 8, IndirectSector: 16, IndirectHandle: 24, IndirectGrefs: 28,
	RspID: 0, RspOperation: 8, RspStatus: 10,
}

var layout32 = Layout{
	RequestSize: 108, ResponseSize: 12, SlotSize: 108,
	ReqID: 4, ReqSector: 12, ReqSeg: 20,
	DiscardSize: 28, DiscardID: 4, DiscardSector: 12, DiscardNrSectors: 20,
	IndirectSize: 64, IndirectNrSegments: 2, IndirectID: 4, IndirectSector: 12, IndirectHandle: 20, IndirectGrefs: 24,
	RspID: 0, RspOperation: 8, RspStatus: 10,
}

// Layout returns the ABI's layout table.
func (a ABI) Layout() *Layout {
	if a == X86_32 {
		return &layout32
	}
	return &layout64
}

// SlotSize is the size of one ring slot on this ABI.
func (a ABI) SlotSize() int { return a.Layout().SlotSize }

var le = binary.LittleEndian

// DecodeRequest copies the request in slot into r. slot must be at least
// SlotSize bytes. Every field is read exactly once; the caller validates r,
// never the slot. Fields that the operation does not use are zeroed.
func (a ABI) DecodeRequest(slot []byte, r *Request) {
	l := a.Layout()
	_ = slot[l.SlotSize-1]
	*r = Request{Operation: slot[0]}
	// The extension's flag does not change the layout of what it flags.
	switch r.Operation &^ OpExtraFlag {
	case OpDiscard:
		r.Flag = slot[1]
		r.Handle = le.Uint16(slot[2:])
		r.ID = le.Uint64(slot[l.DiscardID:])
		r.Sector = le.Uint64(slot[l.DiscardSector:])
		r.NrSectors = le.Uint64(slot[l.DiscardNrSectors:])
	case OpIndirect:
		r.IndirectOp = slot[1]
		r.NrSegments = le.Uint16(slot[l.IndirectNrSegments:])
		r.ID = le.Uint64(slot[l.IndirectID:])
		r.Sector = le.Uint64(slot[l.IndirectSector:])
		r.Handle = le.Uint16(slot[l.IndirectHandle:])
		for i := range r.IndirectGrefs {
			r.IndirectGrefs[i] = le.Uint32(slot[l.IndirectGrefs+4*i:])
		}
	default:
		r.NrSegments = uint16(slot[1])
		r.Handle = le.Uint16(slot[2:])
		r.ID = le.Uint64(slot[l.ReqID:])
		r.Sector = le.Uint64(slot[l.ReqSector:])
		// Only the segments the request claims (at most the slot's): the
		// rest stay zero. A count over MaxSegmentsPerRequest is the
		// validator's to refuse.
		for i := range min(int(r.NrSegments), len(r.Seg)) {
			decodeSegment(slot[l.ReqSeg+SegmentSize*i:], &r.Seg[i])
		}
	}
}

// EncodeRequest writes r into slot, zeroing every byte it does not set.
func (a ABI) EncodeRequest(slot []byte, r *Request) {
	l := a.Layout()
	slot = slot[:l.SlotSize]
	clear(slot)
	slot[0] = r.Operation
	switch r.Operation &^ OpExtraFlag {
	case OpDiscard:
		slot[1] = r.Flag
		le.PutUint16(slot[2:], r.Handle)
		le.PutUint64(slot[l.DiscardID:], r.ID)
		le.PutUint64(slot[l.DiscardSector:], r.Sector)
		le.PutUint64(slot[l.DiscardNrSectors:], r.NrSectors)
	case OpIndirect:
		slot[1] = r.IndirectOp
		le.PutUint16(slot[l.IndirectNrSegments:], r.NrSegments)
		le.PutUint64(slot[l.IndirectID:], r.ID)
		le.PutUint64(slot[l.IndirectSector:], r.Sector)
		le.PutUint16(slot[l.IndirectHandle:], r.Handle)
		for i, g := range r.IndirectGrefs {
			le.PutUint32(slot[l.IndirectGrefs+4*i:], g)
		}
	default:
		slot[1] = uint8(r.NrSegments)
		le.PutUint16(slot[2:], r.Handle)
		le.PutUint64(slot[l.ReqID:], r.ID)
		le.PutUint64(slot[l.ReqSector:], r.Sector)
		// Segments past NrSegments are not part of the request: the slot
		// was cleared, so they travel as zeros.
		for i := range min(int(r.NrSegments), len(r.Seg)) {
			encodeSegment(slot[l.ReqSeg+SegmentSize*i:], r.Seg[i])
		}
	}
}

// DecodeResponse copies the response in slot into r.
func (a ABI) DecodeResponse(slot []byte, r *Response) {
	l := a.Layout()
	_ = slot[l.ResponseSize-1]
	r.ID = le.Uint64(slot[l.RspID:])
	r.Operation = slot[l.RspOperation]
	r.Status = int16(le.Uint16(slot[l.RspStatus:]))
}

// EncodeResponse writes a response into slot and zeroes the rest of the
// slot, padding included: the slot held a request the frontend wrote, and
// stale bytes must never travel back (XSA-216).
func (a ABI) EncodeResponse(slot []byte, id uint64, operation uint8, status int16) {
	l := a.Layout()
	slot = slot[:l.SlotSize]
	clear(slot)
	le.PutUint64(slot[l.RspID:], id)
	slot[l.RspOperation] = operation
	le.PutUint16(slot[l.RspStatus:], uint16(status))
}

func decodeSegment(b []byte, s *Segment) {
	s.Gref = le.Uint32(b)
	s.FirstSect = b[4]
	s.LastSect = b[5]
}

func encodeSegment(b []byte, s Segment) {
	le.PutUint32(b, s.Gref)
	b[4] = s.FirstSect
	b[5] = s.LastSect
	b[6], b[7] = 0, 0
}

// DecodeIndirectSegments copies n segments out of indirect pages (each
// SegmentsPerIndirectPage segments). Segments are the same 8 bytes on
// every ABI.
func DecodeIndirectSegments(pages [][]byte, n int, out []Segment) {
	for i := 0; i < n; i++ {
		p := pages[i/SegmentsPerIndirectPage]
		decodeSegment(p[(i%SegmentsPerIndirectPage)*SegmentSize:], &out[i])
	}
}

// EncodeIndirectSegment writes segment i into its indirect page.
func EncodeIndirectSegment(pages [][]byte, i int, s Segment) {
	p := pages[i/SegmentsPerIndirectPage]
	encodeSegment(p[(i%SegmentsPerIndirectPage)*SegmentSize:], s)
}
