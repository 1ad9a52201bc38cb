package blkif

import (
	"bytes"
	"errors"
	"testing"
)

func TestValidateSegment(t *testing.T) {
	for _, c := range []struct {
		s  Segment
		ok bool
	}{
		{Segment{FirstSect: 0, LastSect: 7}, true},
		{Segment{FirstSect: 3, LastSect: 3}, true},
		{Segment{FirstSect: 4, LastSect: 3}, false},
		{Segment{FirstSect: 0, LastSect: 8}, false},
		{Segment{FirstSect: 255, LastSect: 255}, false},
	} {
		err := ValidateSegment(c.s)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrSegmentRange)) {
			t.Errorf("%+v: %v", c.s, err)
		}
	}
}

func TestValidateSegmentCount(t *testing.T) {
	for _, c := range []struct {
		op, n       int
		maxIndirect int
		ok          bool
	}{
		{OpRead, 0, 0, false},
		{OpRead, 1, 0, true},
		{OpWrite, 11, 0, true},
		{OpWrite, 12, 0, false},
		{OpRead | OpExtraFlag, 11, 0, true},
		{OpFlushDiskcache, 0, 0, true},
		{OpWriteBarrier, 0, 0, true},
		{OpWriteBarrier, 12, 0, false},
		{OpDiscard, 0, 0, true},
		{OpIndirect, 0, 4096, false},
		{OpIndirect, 4096, 4096, true},
		{OpIndirect, 4097, 8192, false}, // the absolute ceiling wins
		{OpIndirect, 33, 32, false},
		{OpIndirect, 32, 32, true},
	} {
		r := Request{Operation: uint8(c.op), NrSegments: uint16(c.n)}
		err := r.ValidateSegmentCount(c.maxIndirect)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrSegmentCount)) {
			t.Errorf("op %d n %d max %d: %v", c.op, c.n, c.maxIndirect, err)
		}
	}
}

func TestValidateDirectSegments(t *testing.T) {
	r := Request{Operation: OpRead, NrSegments: 2}
	r.Seg[0] = Segment{FirstSect: 0, LastSect: 7}
	r.Seg[1] = Segment{FirstSect: 2, LastSect: 4}
	r.Seg[2] = Segment{FirstSect: 9, LastSect: 1} // beyond NrSegments: ignored
	n, err := r.ValidateDirectSegments()
	if err != nil || n != 11 {
		t.Fatalf("got %d, %v; want 11 sectors", n, err)
	}
	r.NrSegments = 3
	if _, err := r.ValidateDirectSegments(); !errors.Is(err, ErrSegmentRange) {
		t.Fatalf("bad third segment accepted: %v", err)
	}
}

func TestValidateSectorRange(t *testing.T) {
	const disk = 1000
	for _, c := range []struct {
		sector, count uint64
		ok            bool
	}{
		{0, 1000, true},
		{999, 1, true},
		{1000, 0, true},
		{999, 2, false},
		{1001, 0, false},
		{^uint64(0), 2, false}, // sector+count wraps
		{1, ^uint64(0), false},
	} {
		err := ValidateSectorRange(c.sector, c.count, disk)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrSectorRange)) {
			t.Errorf("%d+%d: %v", c.sector, c.count, err)
		}
	}
}

func TestValidateExtraRequest(t *testing.T) {
	good := ExtraRequest{Type: ExtraTypeSCSI, CmdLen: 10, ID: 7, DataLen: 513}
	if err := good.Validate(7, 1024); err != nil {
		t.Fatalf("good request refused: %v", err)
	}
	for name, c := range map[string]struct {
		e        ExtraRequest
		baseID   uint64
		segBytes uint64
	}{
		"id mismatch":   {good, 8, 1024},
		"cmd_len 5":     {ExtraRequest{CmdLen: 5, ID: 7}, 7, 0},
		"cmd_len 33":    {ExtraRequest{CmdLen: 33, ID: 7}, 7, 0},
		"data too long": {good, 7, 512},
		"data, no segs": {ExtraRequest{CmdLen: 6, ID: 7, DataLen: 1}, 7, 0},
	} {
		if err := c.e.Validate(c.baseID, c.segBytes); !errors.Is(err, ErrExtraRequest) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPRRequestRoundTripZeroesPadding(t *testing.T) {
	r := PRRequest{Action: PRReadKeys, Type: 1 /* SPC-4 Write Exclusive */, Flags: PRFlagAPTPL, ID: 9, Key: 1, SAKey: 2, Gref: 3}
	for _, abi := range []ABI{X86_64, X86_32, ARM} {
		slot := fill(abi.SlotSize())
		abi.EncodePRRequest(slot, &r)
		end := abi.Layout().ReqID + 28
		if !bytes.Equal(slot[end:], make([]byte, abi.SlotSize()-end)) {
			t.Errorf("%v: tail not zeroed", abi)
		}
		var got PRRequest
		abi.DecodePRRequest(slot, &got)
		if got != r {
			t.Errorf("%v: %+v", abi, got)
		}
	}
}

func TestExtraCodecsAllocateNothing(t *testing.T) {
	slot := make([]byte, 112)
	var e ExtraRequest
	var er ExtraResponse
	var pr PRRequest
	page := make([]byte, 4096)
	pages := [][]byte{page}
	var segs [SegmentsPerIndirectPage]Segment
	allocs := testing.AllocsPerRun(1000, func() {
		X86_32.EncodeExtraRequest(slot, &e)
		X86_32.DecodeExtraRequest(slot, &e)
		X86_64.EncodeExtraResponse(slot, &er)
		X86_64.DecodeExtraResponse(slot, &er)
		X86_64.EncodePRRequest(slot, &pr)
		X86_64.DecodePRRequest(slot, &pr)
		EncodeIndirectSegment(pages, 511, Segment{Gref: 1, LastSect: 7})
		DecodeIndirectSegments(pages, len(segs), segs[:])
	})
	if allocs != 0 {
		t.Fatalf("%v allocs", allocs)
	}
}

func FuzzDecodeIndirectPage(f *testing.F) {
	f.Add(make([]byte, 4096), uint16(512))
	f.Add(bytes.Repeat([]byte{0xff}, 4096), uint16(1))
	f.Fuzz(func(t *testing.T, page []byte, n uint16) {
		if len(page) < 4096 {
			return
		}
		count := int(n) % (SegmentsPerIndirectPage + 1)
		var segs [SegmentsPerIndirectPage]Segment
		DecodeIndirectSegments([][]byte{page[:4096]}, count, segs[:])
		sectors, err := ValidateSegments(segs[:count])
		if err == nil && sectors > uint64(count)*SectorsPerPage {
			t.Fatalf("%d segments cover %d sectors", count, sectors)
		}
		out := make([]byte, 4096)
		for i := 0; i < count; i++ {
			EncodeIndirectSegment([][]byte{out}, i, segs[i])
		}
		var again [SegmentsPerIndirectPage]Segment
		DecodeIndirectSegments([][]byte{out}, count, again[:])
		if again != segs {
			t.Fatal("unstable")
		}
	})
}

func FuzzDecodeExtraResponse(f *testing.F) {
	f.Add(make([]byte, 16), uint8(0))
	f.Add(bytes.Repeat([]byte{0x7f}, 12), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		abi := ABI(which % 3)
		if len(b) < abi.SlotSize() {
			return
		}
		var r ExtraResponse
		abi.DecodeExtraResponse(b, &r)
		slot := make([]byte, abi.SlotSize())
		abi.EncodeExtraResponse(slot, &r)
		if !IsExtraResponse(slot) {
			t.Fatal("encoded extra response not recognised")
		}
		var again ExtraResponse
		abi.DecodeExtraResponse(slot, &again)
		if again != r {
			t.Fatal("unstable")
		}
	})
}

func BenchmarkDecodeExtraRequest(b *testing.B) {
	slot := make([]byte, 112)
	X86_64.EncodeExtraRequest(slot, &ExtraRequest{Type: ExtraTypeSCSI, CmdLen: 10, ID: 1, DataLen: 4096})
	var r ExtraRequest
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		X86_64.DecodeExtraRequest(slot, &r)
	}
}
