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
//
// Pins: every entry got or put since the last unpinAll is pinned — its
// page may be the target of I/O still in flight — and is never evicted.
// Pinned entries are exactly those touched since the last unpinAll, and
// touching moves an entry to the front, so they form a prefix of the LRU
// list: if the least recently used entry is pinned, all are, and put
// evicts nothing (the set grows past its capacity by at most what one
// batch of I/O holds, and shrinks back as later puts evict). Every
// operation is O(1).
type persistentGrants struct {
	capacity int
	byRef    map[xen.GrantRef]*pgEntry
	// head.next is the most recently used entry, head.prev the least.
	head pgEntry
	free *pgEntry
	n    int
	gen  uint64 // entries with pin == gen are pinned
}

type pgEntry struct {
	ref        xen.GrantRef
	mapping    xen.Mapping
	pin        uint64
	prev, next *pgEntry
}

func newPersistentGrants(capacity int) *persistentGrants {
	p := &persistentGrants{capacity: capacity, byRef: make(map[xen.GrantRef]*pgEntry, capacity), gen: 1}
	p.head.prev, p.head.next = &p.head, &p.head
	return p
}

// get returns the page mapped for ref, marks it recently used and pins it.
func (p *persistentGrants) get(ref xen.GrantRef) ([]byte, bool) {
	e, ok := p.byRef[ref]
	if !ok {
		return nil, false
	}
	p.unlink(e)
	p.pushFront(e)
	e.pin = p.gen
	return e.mapping.Bytes(), true
}

// unpinAll ends every pin: the I/O on the pages touched so far is done.
func (p *persistentGrants) unpinAll() { p.gen++ }

// put records a new persistent mapping, pinned, evicting (unmapping) least
// recently used unpinned ones while the set is full. The caller has
// checked that ref is not present.
func (p *persistentGrants) put(ref xen.GrantRef, m xen.Mapping) {
	for p.n >= p.capacity {
		victim := p.head.prev
		if victim == &p.head || victim.pin == p.gen {
			break // all pinned (a prefix): nothing may go now
		}
		p.evict(victim)
	}
	e := p.free
	if e != nil {
		p.free = e.next
	} else {
		e = &pgEntry{}
	}
	e.ref, e.mapping, e.pin = ref, m, p.gen
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
