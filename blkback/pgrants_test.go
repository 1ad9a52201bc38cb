package blkback

import (
	"testing"

	"github.com/xenblk/xenblk/xen"
)

type fakeMapping struct {
	mem      []byte
	unmapped *int
}

func (f *fakeMapping) Bytes() []byte { return f.mem }
func (f *fakeMapping) Unmap() error  { *f.unmapped++; return nil }

func TestPersistentGrantsEvictLeastRecentlyUsed(t *testing.T) {
	unmapped := 0
	mapping := func(ref xen.GrantRef) *fakeMapping { return &fakeMapping{mem: []byte{byte(ref)}, unmapped: &unmapped} }
	p := newPersistentGrants(3)
	for ref := xen.GrantRef(1); ref <= 3; ref++ {
		p.put(ref, mapping(ref))
	}
	p.unpinAll()                // their I/O is done
	if _, ok := p.get(1); !ok { // 1 becomes most recent; 2 is now the oldest
		t.Fatal("ref 1 missing")
	}
	p.put(4, mapping(4))
	if _, ok := p.get(2); ok {
		t.Error("ref 2 should have been evicted (least recently used)")
	}
	if unmapped != 1 || p.len() != 3 {
		t.Errorf("unmapped=%d len=%d, want 1 and 3", unmapped, p.len())
	}
	for _, ref := range []xen.GrantRef{1, 3, 4} {
		if b, ok := p.get(ref); !ok || b[0] != byte(ref) {
			t.Errorf("ref %d: %v %v", ref, b, ok)
		}
	}
	p.clear()
	if p.len() != 0 || unmapped != 4 {
		t.Errorf("after clear len=%d unmapped=%d, want 0 and 4", p.len(), unmapped)
	}
}

// Pages handed out since the last unpinAll may be targets of I/O in
// flight: a full set grows rather than unmap one, and shrinks back to its
// capacity, least recently used first, once they are unpinned.
func TestPersistentGrantsNeverEvictPinnedPages(t *testing.T) {
	unmapped := 0
	p := newPersistentGrants(2)
	for ref := xen.GrantRef(1); ref <= 5; ref++ {
		p.put(ref, &fakeMapping{mem: []byte{byte(ref)}, unmapped: &unmapped})
	}
	if unmapped != 0 || p.len() != 5 {
		t.Fatalf("while pinned: unmapped=%d len=%d, want 0 and 5", unmapped, p.len())
	}
	p.unpinAll()
	if _, ok := p.get(1); !ok { // pinned again, and the most recent
		t.Fatal("ref 1 missing")
	}
	p.put(6, &fakeMapping{mem: []byte{6}, unmapped: &unmapped})
	// 2..5 were unpinned and least recent: evicted down to capacity; 1
	// and 6 are pinned and stay.
	if unmapped != 4 || p.len() != 2 {
		t.Errorf("after the batch: unmapped=%d len=%d, want 4 and 2", unmapped, p.len())
	}
	for _, ref := range []xen.GrantRef{1, 6} {
		if _, ok := p.get(ref); !ok {
			t.Errorf("pinned ref %d was evicted", ref)
		}
	}
}

func TestPersistentGrantsSteadyStateAllocatesNothing(t *testing.T) {
	unmapped := 0
	p := newPersistentGrants(8)
	maps := make([]*fakeMapping, 64)
	for i := range maps {
		maps[i] = &fakeMapping{mem: []byte{0}, unmapped: &unmapped}
	}
	for i := 0; i < 8; i++ {
		p.put(xen.GrantRef(i), maps[i])
	}
	ref := xen.GrantRef(8)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := p.get(ref); !ok {
			p.put(ref, maps[ref%64])
		}
		p.unpinAll() // the request's I/O is done
		ref++
	})
	if allocs != 0 {
		t.Errorf("%v allocations per lookup+insert in steady state, want 0", allocs)
	}
}
