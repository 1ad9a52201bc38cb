//go:build cinterop

package layout

import (
	"fmt"
	"testing"

	"github.com/xenblk/xenblk/blkif"
)

// check is one size, offset or constant: its C expression and what a Go
// layout table L (blkif's, vscsiif's) for an ABI says it is.
type check[L any] struct {
	name string
	c    string
	want func(l *L) int
}

// matchCgo compares the fields cgo measured with the checks, for each
// ABI's table (named for the messages).
func matchCgo[L any](t *testing.T, got []Field, checks []check[L], tables map[string]*L) {
	t.Helper()
	if len(got) != len(checks) {
		t.Fatalf("%d cgo fields for %d checks", len(got), len(checks))
	}
	for abi, l := range tables {
		for i, c := range checks {
			if got[i].Name != c.name {
				t.Fatalf("field %d: cgo %s, check %s", i, got[i].Name, c.name)
			}
			if want := c.want(l); got[i].C != want {
				t.Errorf("%v %s: C says %d, Go's table %d", abi, c.name, got[i].C, want)
			}
		}
	}
}

// matchM32 compiles the checks with gcc -m32 after the includes and
// compares them with the x86_32 table l.
func matchM32[L any](t *testing.T, includes []string, checks []check[L], l *L) {
	t.Helper()
	exprs := make([]string, len(checks))
	for i, c := range checks {
		exprs[i] = c.c
	}
	vals := probeM32(t, includes, exprs)
	for i, c := range checks {
		if want := c.want(l); vals[i] != want {
			t.Errorf("x86_32 %s: gcc -m32 says %d, Go's table %d", c.name, vals[i], want)
		}
	}
}

func off(s, f string) string { return fmt.Sprintf("offsetof(struct %s, %s)", s, f) }
func size(s string) string   { return fmt.Sprintf("sizeof(%s)", s) }

var checks = []check[blkif.Layout]{
	{"sizeof(blkif_request)", size("struct blkif_request"), func(l *blkif.Layout) int { return l.RequestSize }},
	{"blkif_request.id", off("blkif_request", "id"), func(l *blkif.Layout) int { return l.ReqID }},
	{"blkif_request.sector_number", off("blkif_request", "sector_number"), func(l *blkif.Layout) int { return l.ReqSector }},
	{"blkif_request.seg", off("blkif_request", "seg"), func(l *blkif.Layout) int { return l.ReqSeg }},
	{"sizeof(blkif_request_segment)", size("struct blkif_request_segment"), func(*blkif.Layout) int { return blkif.SegmentSize }},
	{"sizeof(blkif_request_discard)", size("struct blkif_request_discard"), func(l *blkif.Layout) int { return l.DiscardSize }},
	{"blkif_request_discard.id", off("blkif_request_discard", "id"), func(l *blkif.Layout) int { return l.DiscardID }},
	{"blkif_request_discard.sector_number", off("blkif_request_discard", "sector_number"), func(l *blkif.Layout) int { return l.DiscardSector }},
	{"blkif_request_discard.nr_sectors", off("blkif_request_discard", "nr_sectors"), func(l *blkif.Layout) int { return l.DiscardNrSectors }},
	{"sizeof(blkif_request_indirect)", size("struct blkif_request_indirect"), func(l *blkif.Layout) int { return l.IndirectSize }},
	{"blkif_request_indirect.nr_segments", off("blkif_request_indirect", "nr_segments"), func(l *blkif.Layout) int { return l.IndirectNrSegments }},
	{"blkif_request_indirect.id", off("blkif_request_indirect", "id"), func(l *blkif.Layout) int { return l.IndirectID }},
	{"blkif_request_indirect.sector_number", off("blkif_request_indirect", "sector_number"), func(l *blkif.Layout) int { return l.IndirectSector }},
	{"blkif_request_indirect.handle", off("blkif_request_indirect", "handle"), func(l *blkif.Layout) int { return l.IndirectHandle }},
	{"blkif_request_indirect.indirect_grefs", off("blkif_request_indirect", "indirect_grefs"), func(l *blkif.Layout) int { return l.IndirectGrefs }},
	{"sizeof(blkif_response)", size("struct blkif_response"), func(l *blkif.Layout) int { return l.ResponseSize }},
	{"blkif_response.id", off("blkif_response", "id"), func(l *blkif.Layout) int { return l.RspID }},
	{"blkif_response.operation", off("blkif_response", "operation"), func(l *blkif.Layout) int { return l.RspOperation }},
	{"blkif_response.status", off("blkif_response", "status"), func(l *blkif.Layout) int { return l.RspStatus }},
	{"sizeof(blkif_sring_entry)", size("union blkif_sring_entry"), func(l *blkif.Layout) int { return l.SlotSize }},
	// The extension: id where every request has it, then gref and length.
	{"blkif_request_extra.id", off("blkif_request_extra", "id"), func(l *blkif.Layout) int { return l.ReqID }},
	{"blkif_request_extra.cmd_gref", off("blkif_request_extra", "cmd_gref"), func(l *blkif.Layout) int { return l.ReqID + 8 }},
	{"blkif_request_extra.data_len", off("blkif_request_extra", "data_len"), func(l *blkif.Layout) int { return l.ReqID + 12 }},
	{"sizeof(blkif_response_extra)", size("struct blkif_response_extra"), func(*blkif.Layout) int { return 12 }},
	{"blkif_response_extra.operation", off("blkif_response_extra", "operation"), func(l *blkif.Layout) int { return l.RspOperation }},
	{"blkif_response_extra.status", off("blkif_response_extra", "status"), func(l *blkif.Layout) int { return l.RspStatus }},
	{"blkif_request_reservation.id", off("blkif_request_reservation", "id"), func(l *blkif.Layout) int { return l.ReqID }},
	{"blkif_request_reservation.key", off("blkif_request_reservation", "key"), func(l *blkif.Layout) int { return l.ReqID + 8 }},
	{"blkif_request_reservation.sa_key", off("blkif_request_reservation", "sa_key"), func(l *blkif.Layout) int { return l.ReqID + 16 }},
	{"blkif_request_reservation.gref", off("blkif_request_reservation", "gref"), func(l *blkif.Layout) int { return l.ReqID + 24 }},
}

func TestX86_64MatchesTheCompiler(t *testing.T) {
	matchCgo(t, Native64(), checks, map[string]*blkif.Layout{"x86_64": blkif.X86_64.Layout(), "arm": blkif.ARM.Layout()})
}

// TestX86_32MatchesGCC compiles the checks' expressions with gcc -m32.
func TestX86_32MatchesGCC(t *testing.T) {
	l := blkif.X86_32.Layout()
	matchM32(t, []string{"<stddef.h>", "<stdint.h>", "<xen/xen.h>", "<xen/io/blkif.h>", `"extension.h"`}, checks, l)
	// The values the issue pins, as a cross-check of the probe itself.
	if l.RequestSize != 108 || l.ReqID != 4 || l.ReqSector != 12 || l.ReqSeg != 20 || l.ResponseSize != 12 {
		t.Errorf("x86_32 table drifted: %+v", *l)
	}
}

// TestBytesAgreeWithC encodes with Go and reads with the C structs, and
// the reverse, on the native ABI.
func TestBytesAgreeWithC(t *testing.T) {
	abi := blkif.X86_64
	slot := make([]byte, abi.SlotSize())
	r := blkif.Request{Operation: blkif.OpWrite, NrSegments: 11, ID: 0xfedcba9876543210, Sector: 0x123456789}
	for i := range r.Seg {
		r.Seg[i] = blkif.Segment{Gref: uint32(1000 + i), FirstSect: uint8(i % 8), LastSect: 7}
	}
	abi.EncodeRequest(slot, &r)
	if ReqID(slot) != r.ID || ReqSector(slot) != r.Sector || ReqNrSegments(slot) != 11 {
		t.Fatalf("C reads id %x sector %x nseg %d", ReqID(slot), ReqSector(slot), ReqNrSegments(slot))
	}
	for i, s := range r.Seg {
		if ReqGref(slot, i) != s.Gref || ReqFirst(slot, i) != s.FirstSect || ReqLast(slot, i) != s.LastSect {
			t.Fatalf("segment %d differs in C", i)
		}
	}
	d := blkif.Request{Operation: blkif.OpDiscard, ID: 5, Sector: 7, NrSectors: 1 << 40}
	abi.EncodeRequest(slot, &d)
	if DiscardNr(slot) != d.NrSectors {
		t.Fatal("discard nr_sectors differs in C")
	}
	ind := blkif.Request{Operation: blkif.OpIndirect, IndirectOp: blkif.OpRead, NrSegments: 4096, ID: 9, IndirectGrefs: [8]uint32{1, 2, 3, 4, 5, 6, 7, 8}}
	abi.EncodeRequest(slot, &ind)
	if IndNrSegments(slot) != 4096 || IndID(slot) != 9 || IndGref(slot, 7) != 8 {
		t.Fatal("indirect request differs in C")
	}
	ex := blkif.ExtraRequest{Type: blkif.ExtraTypeSCSI, CmdLen: 10, ID: 77, CmdGref: 0xabcdef, DataLen: 4097}
	abi.EncodeExtraRequest(slot, &ex)
	if ExtraID(slot) != 77 || ExtraGref(slot) != 0xabcdef || ExtraDataLen(slot) != 4097 {
		t.Fatal("extra request differs in C")
	}
	clear(slot)
	EncodeResponse(slot, 0x1122334455667788, blkif.OpFlushDiskcache, blkif.RspEOPNOTSUPP)
	var rsp blkif.Response
	abi.DecodeResponse(slot, &rsp)
	if rsp != (blkif.Response{ID: 0x1122334455667788, Operation: blkif.OpFlushDiskcache, Status: blkif.RspEOPNOTSUPP}) {
		t.Fatalf("Go decodes the C response as %+v", rsp)
	}
}
