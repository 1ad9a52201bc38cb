package vscsiif

import (
	"bytes"
	"testing"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/ring"
)

var abis = []blkif.ABI{blkif.X86_64, blkif.X86_32, blkif.ARM}

func fill(n int) []byte { return bytes.Repeat([]byte{0xAA}, n) }

func sampleRequest() Request {
	r := Request{RqID: 0x1234, Act: ActSCSICDB, CmdLen: 16, TimeoutPerCommand: 30,
		Channel: 1, ID: 0x0203, LUN: 0x0405, RefRqID: 0x0607, DataDirection: DirFromDevice, NrSegments: SGTableSize}
	for i := range r.Cmnd {
		r.Cmnd[i] = byte(0x80 + i)
	}
	for i := range r.Seg {
		r.Seg[i] = Segment{Gref: 0xCAFE0000 + uint32(i), Offset: uint16(512 * (i % 8)), Length: 512}
	}
	return r
}

func TestRequestRoundTripEveryABI(t *testing.T) {
	full := sampleRequest()
	indirect := Request{RqID: 7, Act: ActSCSICDB, CmdLen: 10, Cmnd: [16]byte{0x28, 0, 0, 0, 0, 1, 0, 0, 8, 0},
		DataDirection: DirFromDevice, NrSegments: SGGrant | 2, Seg: [SGTableSize]Segment{{1, 0, 4096}, {2, 8, 16}}}
	abort := Request{RqID: 9, Act: ActSCSIAbort, RefRqID: 3, DataDirection: DirNone, LUN: 2}
	for _, abi := range abis {
		for _, r := range []Request{full, indirect, abort} {
			slot := fill(SlotSize(abi))
			EncodeRequest(abi, slot, &r)
			var got Request
			DecodeRequest(abi, slot, &got)
			if got != r {
				t.Errorf("%v: round trip of %+v gave %+v", abi, r, got)
			}
		}
	}
}

// TestDecodeCopiesOnlyWhatIsClaimed: cmnd past cmd_len and seg[] past
// nr_segments reach the decoded request as zeros, whatever the slot holds.
func TestDecodeCopiesOnlyWhatIsClaimed(t *testing.T) {
	for _, abi := range abis {
		l := LayoutOf(abi)
		slot := fill(SlotSize(abi))
		slot[l.ReqCmdLen] = 6
		slot[l.ReqNrSegments] = SGGrant | 1
		var r Request
		DecodeRequest(abi, slot, &r)
		want := [16]byte{0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA}
		if r.Cmnd != want {
			t.Errorf("%v: cmnd %x", abi, r.Cmnd)
		}
		if r.Seg[0] != (Segment{0xAAAAAAAA, 0xAAAA, 0xAAAA}) || r.Seg[1] != (Segment{}) {
			t.Errorf("%v: seg %+v", abi, r.Seg[:2])
		}
		// Claims over the arrays copy the arrays, no more.
		slot[l.ReqCmdLen], slot[l.ReqNrSegments] = 255, 127
		DecodeRequest(abi, slot, &r)
		if r.CmdLen != 255 || r.SegmentCount() != 127 || r.Cmnd[15] != 0xAA || r.Seg[SGTableSize-1].Gref != 0xAAAAAAAA {
			t.Errorf("%v: over-long claims decoded as %+v", abi, r)
		}
	}
}

// TestOffsets pins vscsiif.h's layout (internal/cinterop checks it against
// the C header): rqid@0 act@2 cmd_len@3 cmnd@4 timeout@20 channel@22
// id@24 lun@26 ref_rqid@28 direction@30 nr_segments@31 seg@32, 252 bytes;
// response rqid@0 sense_len@3 sense@4 rslt@100 residual_len@104, 252 bytes.
func TestOffsets(t *testing.T) {
	r := sampleRequest()
	for _, abi := range abis {
		slot := make([]byte, SlotSize(abi))
		EncodeRequest(abi, slot, &r)
		if le.Uint16(slot[0:]) != 0x1234 || slot[2] != ActSCSICDB || slot[3] != 16 || slot[4] != 0x80 || slot[19] != 0x8f ||
			le.Uint16(slot[20:]) != 30 || le.Uint16(slot[22:]) != 1 || le.Uint16(slot[24:]) != 0x0203 || le.Uint16(slot[26:]) != 0x0405 ||
			le.Uint16(slot[28:]) != 0x0607 || slot[30] != DirFromDevice || slot[31] != SGTableSize ||
			le.Uint32(slot[32:]) != 0xCAFE0000 || le.Uint16(slot[32+8+4:]) != 512 || le.Uint32(slot[32+8*25:]) != 0xCAFE0019 {
			t.Errorf("%v: request fields not where vscsiif.h has them: % x", abi, slot)
		}
		if !bytes.Equal(slot[240:], make([]byte, 12)) {
			t.Errorf("%v: reserved words not zero", abi)
		}
		rsp := Response{RqID: 0x0102, SenseLen: 2, Sense: [96]byte{0x70, 0x05}, Rslt: Result(HostOK, 2), ResidualLen: 0x01020304}
		EncodeResponse(abi, slot, &rsp)
		if le.Uint16(slot[0:]) != 0x0102 || slot[2] != 0 || slot[3] != 2 || slot[4] != 0x70 || slot[5] != 5 ||
			le.Uint32(slot[100:]) != 2 || le.Uint32(slot[104:]) != 0x01020304 {
			t.Errorf("%v: response fields not where vscsiif.h has them: % x", abi, slot)
		}
	}
	if SlotSize(blkif.X86_64) != 252 || SlotSize(blkif.X86_32) != 252 || SlotSize(blkif.ARM) != 252 {
		t.Error("slot sizes")
	}
}

// TestRingSize: a one-page ring (the only kind vscsiif has) holds 16
// slots, as __CONST_RING_SIZE(vscsiif, 4096) computes: (4096-64)/252
// rounded down to a power of two.
func TestRingSize(t *testing.T) {
	for _, abi := range abis {
		if n := ring.SlotCount(PageSize, SlotSize(abi)); n != 16 {
			t.Errorf("%v: %d slots in a page", abi, n)
		}
	}
}

func TestEncodeResponseZeroesTheSlot(t *testing.T) {
	for _, abi := range abis {
		slot := fill(SlotSize(abi))
		rsp := Response{RqID: 5, SenseLen: 200, Rslt: Result(HostNoConnect, 0)}
		for i := range rsp.Sense {
			rsp.Sense[i] = byte(i + 1)
		}
		EncodeResponse(abi, slot, &rsp)
		want := make([]byte, SlotSize(abi))
		le.PutUint16(want, 5)
		want[3] = SenseBufferSize // a claim over the buffer is clipped
		copy(want[4:], rsp.Sense[:])
		le.PutUint32(want[100:], 1<<16)
		if !bytes.Equal(slot, want) {
			t.Errorf("%v: response slot\n% x\nwant\n% x", abi, slot, want)
		}
		var got Response
		DecodeResponse(abi, slot, &got)
		rsp.SenseLen = SenseBufferSize
		if got != rsp {
			t.Errorf("%v: decoded %+v", abi, got)
		}
		// Sense past sense_len never travels.
		rsp.SenseLen = 3
		EncodeResponse(abi, slot, &rsp)
		if slot[4+3] != 0 || slot[4+2] != 3 {
			t.Errorf("%v: sense past sense_len written: % x", abi, slot[4:12])
		}
	}
}

func TestEncodeRequestZeroesTheSlot(t *testing.T) {
	r := Request{Act: ActSCSIReset}
	for _, abi := range abis {
		slot := fill(SlotSize(abi))
		EncodeRequest(abi, slot, &r)
		want := make([]byte, SlotSize(abi))
		want[2] = ActSCSIReset
		if !bytes.Equal(slot, want) {
			t.Errorf("%v: stale bytes survive encoding: % x", abi, slot)
		}
	}
}

func TestDecodeSegments(t *testing.T) {
	page := make([]byte, PageSize)
	for i := range SGPerPage {
		EncodeSegment(page[SegmentSize*i:], Segment{Gref: uint32(i), Offset: uint16(i), Length: 4096 - uint16(i)})
	}
	out := make([]Segment, 600)
	if n := DecodeSegments(page[16:16+8*3], out); n != 3 || out[0] != (Segment{2, 2, 4094}) || out[2] != (Segment{4, 4, 4092}) {
		t.Errorf("3 segments at 16: %d %+v", n, out[:3])
	}
	if n := DecodeSegments(page, out); n != SGPerPage || out[SGPerPage-1].Gref != SGPerPage-1 {
		t.Errorf("a whole page: %d", n)
	}
	if n := DecodeSegments(page, out[:5]); n != 5 {
		t.Errorf("bounded by out: %d", n)
	}
	if n := DecodeSegments(page[:13], out); n != 1 {
		t.Errorf("a partial segment is not one: %d", n)
	}
}

func TestCodecAllocatesNothing(t *testing.T) {
	slot := make([]byte, 252)
	r := sampleRequest()
	rsp := Response{RqID: 1, SenseLen: 18}
	page := make([]byte, PageSize)
	segs := make([]Segment, SGPerPage)
	allocs := testing.AllocsPerRun(1000, func() {
		EncodeRequest(blkif.X86_64, slot, &r)
		DecodeRequest(blkif.X86_64, slot, &r)
		EncodeResponse(blkif.X86_32, slot, &rsp)
		DecodeResponse(blkif.X86_32, slot, &rsp)
		DecodeSegments(page, segs)
	})
	if allocs != 0 {
		t.Fatalf("%v allocs", allocs)
	}
}

// firstNonZero is the index of the first element of a from the claimed
// count on that is not zero, or -1.
func firstNonZero[T comparable](a []T, claimed int) int {
	var zero T
	for i := claimed; i < len(a); i++ {
		if a[i] != zero {
			return i
		}
	}
	return -1
}

func FuzzDecodeRequest(f *testing.F) {
	slot := make([]byte, 252)
	r := sampleRequest()
	EncodeRequest(blkif.X86_64, slot, &r)
	f.Add(slot, uint8(0))
	f.Add(make([]byte, 252), uint8(1))
	f.Add(bytes.Repeat([]byte{0xff}, 252), uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		abi := blkif.ABI(which % 3)
		if len(b) < SlotSize(abi) {
			return
		}
		var r Request
		DecodeRequest(abi, b, &r)
		if i := firstNonZero(r.Cmnd[:], int(r.CmdLen)); i >= 0 {
			t.Fatalf("cmnd[%d] past cmd_len %d copied", i, r.CmdLen)
		}
		if i := firstNonZero(r.Seg[:], r.SegmentCount()); i >= 0 {
			t.Fatalf("seg[%d] past nr_segments %#x copied", i, r.NrSegments)
		}
		// Re-encoding what was decoded and decoding again is stable.
		slot := make([]byte, SlotSize(abi))
		EncodeRequest(abi, slot, &r)
		var again Request
		DecodeRequest(abi, slot, &again)
		if again != r {
			t.Fatalf("unstable: %+v vs %+v", r, again)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(make([]byte, 252), uint8(0))
	f.Add(bytes.Repeat([]byte{0xff}, 252), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		abi := blkif.ABI(which % 3)
		if len(b) < SlotSize(abi) {
			return
		}
		var r Response
		DecodeResponse(abi, b, &r)
		if i := firstNonZero(r.Sense[:], int(r.SenseLen)); i >= 0 {
			t.Fatalf("sense[%d] past sense_len %d copied", i, r.SenseLen)
		}
		slot := make([]byte, SlotSize(abi))
		EncodeResponse(abi, slot, &r)
		var again Response
		DecodeResponse(abi, slot, &again)
		// Encoding clips a sense_len over the buffer; nothing else changes.
		r.SenseLen = min(r.SenseLen, SenseBufferSize)
		if again != r {
			t.Fatalf("unstable: %+v vs %+v", r, again)
		}
	})
}

func FuzzDecodeSegments(f *testing.F) {
	f.Add(make([]byte, 16), uint16(3))
	f.Add(bytes.Repeat([]byte{0xff}, 4096), uint16(600))
	f.Fuzz(func(t *testing.T, list []byte, room uint16) {
		out := make([]Segment, int(room)%(SGPerPage+1))
		n := DecodeSegments(list, out)
		if n != min(len(list)/SegmentSize, len(out)) {
			t.Fatalf("%d segments from %d bytes into %d", n, len(list), len(out))
		}
		for i := range n {
			b := make([]byte, SegmentSize)
			EncodeSegment(b, out[i])
			if !bytes.Equal(b, list[SegmentSize*i:SegmentSize*(i+1)]) {
				t.Fatalf("segment %d: % x re-encodes as % x", i, list[SegmentSize*i:SegmentSize*(i+1)], b)
			}
		}
	})
}
