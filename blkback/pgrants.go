package blkback

import (
	"github.com/xenblk/xenblk/xen"
)

// persistentGrants is the bounded set of a queue's persistently mapped
// grants (feature-persistent): a frontend that negotiated it reuses the same
// grant references for data, so the backend maps each once, keeps it, and
// unmaps it only when the set is full (least recently used first) or the
// device disconnects. Linux's blkback bounds the set the same way
// (max_persistent_grants) so a frontend cannot make the backend map
// unbounded memory.
//
// Owned by one queue goroutine: no locking. Lookups and insertions
// allocate nothing once the set has reached its capacity (entries are
// recycled through a free list).
type persistentGrants struct {
	capacity int
	byRef    map[xen.GrantRef]*pgEntry
	// head.next is the most recently used entry, head.prev the least.
	head pgEntry
	free *pgEntry
	n    int
}

type pgEntry struct {
	ref        xen.GrantRef
	mapping    xen.Mapping
	prev, next *pgEntry
}

func newPersistentGrants(capacity int) *persistentGrants {
	p := &persistentGrants{capacity: capacity, byRef: make(map[xen.GrantRef]*pgEntry, capacity)}
	p.head.prev, p.head.next = &p.head, &p.head
	return p
}

// get returns the page mapped for ref and marks it recently used.
func (p *persistentGrants) get(ref xen.GrantRef) ([]byte, bool) {
	e, ok := p.byRef[ref]
	if !ok {
		return nil, false
	}
	p.unlink(e)
	p.pushFront(e)
	return e.mapping.Bytes(), true
}

// put records a new persistent mapping, evicting (unmapping) the least
// recently used one if the set is full. inUse reports refs that the
// current request still needs; they are never evicted. The caller has
// checked that ref is not present.
func (p *persistentGrants) put(ref xen.GrantRef, m xen.Mapping, inUse func(xen.GrantRef) bool) {
	if p.n >= p.capacity {
		for victim := p.head.prev; victim != &p.head; victim = victim.prev {
			if inUse != nil && inUse(victim.ref) {
				continue
			}
			p.evict(victim)
			break
		}
	}
	e := p.free
	if e != nil {
		p.free = e.next
	} else {
		e = &pgEntry{}
	}
	e.ref, e.mapping = ref, m
	p.byRef[ref] = e
	p.pushFront(e)
	p.n++
}

// full reports whether a new mapping would need an eviction.
func (p *persistentGrants) full() bool { return p.n >= p.capacity }

func (p *persistentGrants) evict(e *pgEntry) {
	p.unlink(e)
	delete(p.byRef, e.ref)
	_ = e.mapping.Unmap()
	e.mapping = nil
	e.next = p.free
	p.free = e
	p.n--
}

// clear unmaps everything (on disconnect).
func (p *persistentGrants) clear() {
	for p.head.next != &p.head {
		p.evict(p.head.next)
	}
}

func (p *persistentGrants) len() int { return p.n }

func (p *persistentGrants) unlink(e *pgEntry) {
	e.prev.next = e.next
	e.next.prev = e.prev
}

func (p *persistentGrants) pushFront(e *pgEntry) {
	e.prev = &p.head
	e.next = p.head.next
	p.head.next.prev = e
	p.head.next = e
}
