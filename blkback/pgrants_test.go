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
	p := newPersistentGrants(3)
	for ref := xen.GrantRef(1); ref <= 3; ref++ {
		p.put(ref, &fakeMapping{mem: []byte{byte(ref)}, unmapped: &unmapped}, nil)
	}
	if _, ok := p.get(1); !ok { // 1 becomes most recent; 2 is now the oldest
		t.Fatal("ref 1 missing")
	}
	p.put(4, &fakeMapping{mem: []byte{4}, unmapped: &unmapped}, nil)
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
	// A ref the current request still uses is never evicted.
	p.put(5, &fakeMapping{mem: []byte{5}, unmapped: &unmapped}, func(r xen.GrantRef) bool { return r == 1 })
	if _, ok := p.get(1); !ok {
		t.Error("in-use ref 1 was evicted")
	}
	p.clear()
	if p.len() != 0 || unmapped != 5 {
		t.Errorf("after clear len=%d unmapped=%d, want 0 and 5", p.len(), unmapped)
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
		p.put(xen.GrantRef(i), maps[i], nil)
	}
	ref := xen.GrantRef(8)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := p.get(ref); !ok {
			p.put(ref, maps[ref%64], nil)
		}
		ref++
	})
	if allocs != 0 {
		t.Errorf("%v allocations per lookup+insert in steady state, want 0", allocs)
	}
}
