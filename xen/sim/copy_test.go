package sim

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xenblk/xenblk/xen"
)

// TestGrantCopyFollowsMemoryGrowth: pages granted after the first copy
// lie beyond what the copy window had mapped; copies reach them, both
// ways, and the window keeps no grant in use.
func TestGrantCopyFollowsMemoryGrowth(t *testing.T) {
	_, d0, g := newTestHost(t)
	first, err := g.Granter().Grant(0, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	copy(first.Mem, "first")
	in := make([]byte, 5)
	if err := d0.Mapper().Copy([]xen.GrantCopySegment{{Dom: g.ID(), Ref: first.Refs[0], Local: in}}); err != nil || string(in) != "first" {
		t.Fatalf("copy of the first page: %v %q", err, in)
	}
	later, err := g.Granter().Grant(0, 64, false)
	if err != nil {
		t.Fatal(err)
	}
	segs := make([]xen.GrantCopySegment, 0, 2*len(later.Refs))
	for i, r := range later.Refs {
		segs = append(segs, xen.GrantCopySegment{Dom: g.ID(), Ref: r, Offset: uint16(i), Local: []byte{byte(i), 0xAA}, ToForeign: true})
	}
	if err := d0.Mapper().Copy(segs); err != nil {
		t.Fatalf("copy into pages granted later: %v", err)
	}
	for i := range later.Refs {
		if got := later.Mem[i*xen.PageSize+i : i*xen.PageSize+i+2]; !bytes.Equal(got, []byte{byte(i), 0xAA}) {
			t.Fatalf("page %d holds %x at %d", i, got, i)
		}
	}
	if err := g.Granter().Revoke(later); err != nil {
		t.Fatalf("revoke after copies: %v", err)
	}
	if err := g.Granter().Revoke(first); err != nil {
		t.Fatalf("revoke after copies: %v", err)
	}
	// Revoked: the window's mapping of the frames grants nothing.
	err = d0.Mapper().Copy([]xen.GrantCopySegment{{Dom: g.ID(), Ref: first.Refs[0], Local: in}})
	if !errors.Is(err, xen.ErrBadGrant) {
		t.Fatalf("copy of a revoked grant: %v", err)
	}
}

// TestGrantCopyAfterDestroy: a copy from a domain that died fails; it
// never reaches the memory the window mapped.
func TestGrantCopyAfterDestroy(t *testing.T) {
	h, d0, g := newTestHost(t)
	gr, err := g.Granter().Grant(0, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	seg := []xen.GrantCopySegment{{Dom: g.ID(), Ref: gr.Refs[0], Local: make([]byte, 8)}}
	if err := d0.Mapper().Copy(seg); err != nil {
		t.Fatal(err)
	}
	h.Destroy(g.ID())
	if err := d0.Mapper().Copy(seg); !errors.Is(err, xen.ErrNoDomain) {
		t.Fatalf("copy from a destroyed domain: %v", err)
	}
}

// TestGrantCopyAllocatesNothing: a batch of copies both ways, the
// backends' per-request data movement, allocates nothing once warm.
func TestGrantCopyAllocatesNothing(t *testing.T) {
	_, d0, g := newTestHost(t)
	gr, err := g.Granter().Grant(0, 8, false)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8*xen.PageSize)
	segs := make([]xen.GrantCopySegment, 8)
	for i := range segs {
		segs[i] = xen.GrantCopySegment{Dom: g.ID(), Ref: gr.Refs[i], Local: buf[i*xen.PageSize : (i+1)*xen.PageSize], ToForeign: i%2 == 0}
	}
	mp := d0.Mapper()
	if n := testing.AllocsPerRun(100, func() {
		if err := mp.Copy(segs); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Copy of 8 pages allocates %v times", n)
	}
}

// BenchmarkGrantCopy4K is one 4 KiB page copied into a guest's grant.
func BenchmarkGrantCopy4K(b *testing.B) {
	_, d0, g := newTestHost(b)
	gr, err := g.Granter().Grant(0, 1, false)
	if err != nil {
		b.Fatal(err)
	}
	segs := []xen.GrantCopySegment{{Dom: g.ID(), Ref: gr.Refs[0], Local: make([]byte, xen.PageSize), ToForeign: true}}
	mp := d0.Mapper()
	b.ReportAllocs()
	b.SetBytes(xen.PageSize)
	for b.Loop() {
		if err := mp.Copy(segs); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMapAllocations: mapping a page and unmapping it allocates the
// mapping alone (a backend's per-request map, where it maps).
func TestMapAllocations(t *testing.T) {
	_, d0, g := newTestHost(t)
	gr, err := g.Granter().Grant(0, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	mp := d0.Mapper()
	if n := testing.AllocsPerRun(100, func() {
		m, err := mp.Map(g.ID(), gr.Refs, false)
		if err != nil {
			t.Fatal(err)
		}
		_ = m.Unmap()
	}); n > 1 {
		t.Fatalf("Map+Unmap of one page: %v allocations, want 1 (the mapping)", n)
	}
}
