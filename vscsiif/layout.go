package vscsiif

import (
	"encoding/binary"

	"github.com/xenblk/xenblk/blkif"
)

// Layout is the byte layout of vscsiif's structs on one ABI. Offsets are
// from the start of the slot; checked against the C header by
// internal/cinterop. Every field is at most 4 bytes wide and naturally
// aligned, so x86_32 lays the structs out as x86_64 and arm do; the
// tables stay separate so that each ABI is checked, not assumed.
type Layout struct {
	RequestSize  int // sizeof(struct vscsiif_request)
	ResponseSize int // sizeof(struct vscsiif_response)
	SlotSize     int // sizeof(union vscsiif_sring_entry)

	// struct vscsiif_request.
	ReqRqID, ReqAct, ReqCmdLen, ReqCmnd, ReqTimeout         int
	ReqChannel, ReqID, ReqLUN, ReqRefRqID, ReqDataDirection int
	ReqNrSegments, ReqSeg, ReqReserved                      int

	// struct vscsiif_response (act is deprecated: written as 0).
	RspRqID, RspAct, RspSenseLen, RspSense, RspRslt, RspResidualLen, RspReserved int
}

var layout64 = Layout{
	RequestSize: 252, ResponseSize: 252, SlotSize: 252,
	ReqRqID: 0, ReqAct: 2, ReqCmdLen: 3, ReqCmnd: 4, ReqTimeout: 20,
	ReqChannel: 22, ReqID: 24, ReqLUN: 26, ReqRefRqID: 28, ReqDataDirection: 30,
	ReqNrSegments: 31, ReqSeg: 32, ReqReserved: 240,
	RspRqID: 0, RspAct: 2, RspSenseLen: 3, RspSense: 4, RspRslt: 100, RspResidualLen: 104, RspReserved: 108,
}

// layout32 is x86_32's table: the same numbers, measured separately.
var layout32 = layout64

// LayoutOf returns the ABI's layout table.
func LayoutOf(abi blkif.ABI) *Layout {
	if abi == blkif.X86_32 {
		return &layout32
	}
	return &layout64
}

// SlotSize is the size of one ring slot on the ABI.
func SlotSize(abi blkif.ABI) int { return LayoutOf(abi).SlotSize }

var le = binary.LittleEndian

// DecodeRequest copies the request in slot into r. slot must be at least
// SlotSize bytes. Every field is read exactly once; the caller checks r,
// never the slot. Of cmnd only the CmdLen bytes claimed are copied, of
// seg[] only the SegmentCount entries claimed (each at most its array):
// the rest of r is zero.
func DecodeRequest(abi blkif.ABI, slot []byte, r *Request) {
	l := LayoutOf(abi)
	_ = slot[l.SlotSize-1]
	*r = Request{
		RqID:              le.Uint16(slot[l.ReqRqID:]),
		Act:               slot[l.ReqAct],
		CmdLen:            slot[l.ReqCmdLen],
		TimeoutPerCommand: le.Uint16(slot[l.ReqTimeout:]),
		Channel:           le.Uint16(slot[l.ReqChannel:]),
		ID:                le.Uint16(slot[l.ReqID:]),
		LUN:               le.Uint16(slot[l.ReqLUN:]),
		RefRqID:           le.Uint16(slot[l.ReqRefRqID:]),
		DataDirection:     slot[l.ReqDataDirection],
		NrSegments:        slot[l.ReqNrSegments],
	}
	copy(r.Cmnd[:min(int(r.CmdLen), MaxCommandSize)], slot[l.ReqCmnd:])
	for i := range min(r.SegmentCount(), SGTableSize) {
		r.Seg[i] = DecodeSegment(slot[l.ReqSeg+SegmentSize*i:])
	}
}

// EncodeRequest writes r into slot, zeroing every byte it does not set:
// cmnd past CmdLen, seg[] past SegmentCount, the reserved words.
func EncodeRequest(abi blkif.ABI, slot []byte, r *Request) {
	l := LayoutOf(abi)
	slot = slot[:l.SlotSize]
	clear(slot)
	le.PutUint16(slot[l.ReqRqID:], r.RqID)
	slot[l.ReqAct] = r.Act
	slot[l.ReqCmdLen] = r.CmdLen
	copy(slot[l.ReqCmnd:], r.Cmnd[:min(int(r.CmdLen), MaxCommandSize)])
	le.PutUint16(slot[l.ReqTimeout:], r.TimeoutPerCommand)
	le.PutUint16(slot[l.ReqChannel:], r.Channel)
	le.PutUint16(slot[l.ReqID:], r.ID)
	le.PutUint16(slot[l.ReqLUN:], r.LUN)
	le.PutUint16(slot[l.ReqRefRqID:], r.RefRqID)
	slot[l.ReqDataDirection] = r.DataDirection
	slot[l.ReqNrSegments] = r.NrSegments
	for i := range min(r.SegmentCount(), SGTableSize) {
		EncodeSegment(slot[l.ReqSeg+SegmentSize*i:], r.Seg[i])
	}
}

// DecodeResponse copies the response in slot into r. Of sense_buffer only
// the sense_len bytes claimed (at most SenseBufferSize) are copied; the
// rest of r.Sense is zero.
func DecodeResponse(abi blkif.ABI, slot []byte, r *Response) {
	l := LayoutOf(abi)
	_ = slot[l.ResponseSize-1]
	*r = Response{
		RqID:        le.Uint16(slot[l.RspRqID:]),
		SenseLen:    slot[l.RspSenseLen],
		Rslt:        int32(le.Uint32(slot[l.RspRslt:])),
		ResidualLen: le.Uint32(slot[l.RspResidualLen:]),
	}
	copy(r.Sense[:min(int(r.SenseLen), SenseBufferSize)], slot[l.RspSense:])
}

// EncodeResponse writes r into slot and zeroes the rest of the slot,
// padding and reserved words included: the slot held a request the
// frontend wrote, and stale bytes must never travel back (XSA-216).
// A SenseLen over SenseBufferSize is written as SenseBufferSize.
func EncodeResponse(abi blkif.ABI, slot []byte, r *Response) {
	l := LayoutOf(abi)
	slot = slot[:l.SlotSize]
	clear(slot)
	n := min(int(r.SenseLen), SenseBufferSize)
	le.PutUint16(slot[l.RspRqID:], r.RqID)
	slot[l.RspSenseLen] = uint8(n)
	copy(slot[l.RspSense:], r.Sense[:n])
	le.PutUint32(slot[l.RspRslt:], uint32(r.Rslt))
	le.PutUint32(slot[l.RspResidualLen:], r.ResidualLen)
}

// DecodeSegment reads one segment from b (at least SegmentSize bytes):
// from a request's seg[], or from a granted page of segments. A segment
// is gref@0, offset@4, length@6 on every ABI.
func DecodeSegment(b []byte) Segment {
	_ = b[SegmentSize-1]
	return Segment{Gref: le.Uint32(b), Offset: le.Uint16(b[4:]), Length: le.Uint16(b[6:])}
}

// EncodeSegment writes s into b (at least SegmentSize bytes).
func EncodeSegment(b []byte, s Segment) {
	_ = b[SegmentSize-1]
	le.PutUint32(b, s.Gref)
	le.PutUint16(b[4:], s.Offset)
	le.PutUint16(b[6:], s.Length)
}

// DecodeSegments copies the segments of a list (the bytes an SGGrant
// seg[] entry names, a multiple of SegmentSize) into out, and returns how
// many it copied: len(list)/SegmentSize, at most len(out).
func DecodeSegments(list []byte, out []Segment) int {
	n := min(len(list)/SegmentSize, len(out))
	for i := range n {
		out[i] = DecodeSegment(list[SegmentSize*i:])
	}
	return n
}
