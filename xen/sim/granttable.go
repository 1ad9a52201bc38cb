package sim

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/xenblk/xenblk/internal/shmem"
	"github.com/xenblk/xenblk/xen"
)

// Grant-table entry flags (xen/grant_table.h, grant_entry_v1.flags).
const (
	gtfPermitAccess = 1 << 0
	gtfReadonly     = 1 << 2
	gtfReading      = 1 << 3
	gtfWriting      = 1 << 4
)

// entrySize is sizeof(grant_entry_v1): flags u16 @0, domid u16 @2, frame u32 @4.
const entrySize = 8

// EntriesPerFrame is how many v1 grant entries one grant-table page holds.
const EntriesPerFrame = xen.PageSize / entrySize

// DefaultGrantFrames is the size of each domain's grant table unless the
// host is told otherwise (GrantFrames): Xen's default limit,
// gnttab_max_frames = 64 pages of v1 entries, 32768 refs.
const DefaultGrantFrames = 64

// MaxGrantFrames bounds GrantFrames: 1024 pages is half a million refs,
// far more than any frontend here asks, in a 4 MiB table.
const MaxGrantFrames = 1024

// reservedRefs are refs 0..7, which Linux keeps unused
// (GNTTAB_NR_RESERVED_ENTRIES) so that a zero ref from a sloppy peer
// never maps anything; the table never hands them out.
const reservedRefs = 8

// grantTable is one domain's table, in shared memory, with Xen's flag
// protocol: the granter writes frame and domid, then flags last; a mapper
// validates and sets GTF_reading/GTF_writing with compare-and-swap on the
// word holding flags and domid; the granter ends access with a
// compare-and-swap that fails while either is set. The bytes are the
// contract; the Go state beside them (pins, free list) is bookkeeping.
type grantTable struct {
	mem     []byte // entries * entrySize bytes, shared
	entries int    // the table's size, fixed by the host (GrantFrames)

	mu   sync.Mutex
	free []xen.GrantRef // refs not in use by the granter
	// pins counts live mappings per ref (Xen's maptrack): the in-use
	// flags stay set until the last one goes.
	pins map[xen.GrantRef]pin
}

type pin struct{ readers, writers int }

// word is the table's 32-bit word at off. The table is shared with other
// processes: every access is atomic.
func (t *grantTable) word(off int) *atomic.Uint32 { return shmem.MustUint32(t.mem, off) }

func newGrantTable(mem []byte) *grantTable {
	t := &grantTable{mem: mem, entries: len(mem) / entrySize, pins: map[xen.GrantRef]pin{}}
	for r := t.entries - 1; r >= reservedRefs; r-- {
		t.free = append(t.free, xen.GrantRef(r))
	}
	return t
}

// freeRefs is how many refs the granter may still hand out.
func (t *grantTable) freeRefs() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.free)
}

func (t *grantTable) fullError(asked, free int) error {
	return fmt.Errorf("%w: %d pages asked, %d of its %d entries free", xen.ErrGrantTableFull, asked, free, t.entries)
}

// grant fills free entries for frames, granting them to remote.
func (t *grantTable) grant(remote xen.DomID, frames []uint32, readOnly bool, refs []xen.GrantRef) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.free) < len(frames) {
		return t.fullError(len(frames), len(t.free))
	}
	flags := uint32(gtfPermitAccess)
	if readOnly {
		flags |= gtfReadonly
	}
	for i, f := range frames {
		r := t.free[len(t.free)-1]
		t.free = t.free[:len(t.free)-1]
		off := int(r) * entrySize
		t.word(off + 4).Store(f)
		// flags and domid in one store, flags being the publishing half.
		t.word(off).Store(uint32(remote)<<16 | flags)
		refs[i] = r
	}
	return nil
}

// endAccess invalidates every ref, or none: it fails with ErrGrantInUse if
// any is mapped. Each ref ends with a compare-and-swap that only succeeds
// while no GTF_reading/GTF_writing is set, so a mapper in another process
// either sees the entry before (and pins it, making us fail) or after
// (and gets ErrBadGrant); on failure the refs already ended are restored.
func (t *grantTable) endAccess(refs []xen.GrantRef) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	saved := make([]uint32, 0, len(refs))
	for _, r := range refs {
		off := int(r) * entrySize
		for {
			w := t.word(off).Load()
			if w&(gtfReading|gtfWriting) != 0 {
				for i, w := range saved {
					t.word(int(refs[i]) * entrySize).Store(w)
				}
				return fmt.Errorf("%w: ref %d", xen.ErrGrantInUse, r)
			}
			if t.word(off).CompareAndSwap(w, w&^0xFFFF) {
				saved = append(saved, w)
				break
			}
		}
	}
	t.free = append(t.free, refs...)
	return nil
}

// sweep ends every entry nobody maps, leaving mapped ones to a later
// sweep; it reports whether any entry is still granted. The host sweeps a
// dead domain's table until it is empty: its grants are revoked once
// unmapped, as on Xen.
func (t *grantTable) sweep() (left bool) {
	for off := reservedRefs * entrySize; off < len(t.mem); off += entrySize {
		for {
			w := t.word(off).Load()
			if w&gtfPermitAccess == 0 {
				break
			}
			if w&(gtfReading|gtfWriting) != 0 {
				left = true
				break
			}
			if t.word(off).CompareAndSwap(w, w&^0xFFFF) {
				break
			}
		}
	}
	return left
}

// mapped counts the entries some domain maps.
func (t *grantTable) mapped() int {
	n := 0
	for off := reservedRefs * entrySize; off < len(t.mem); off += entrySize {
		if t.word(off).Load()&(gtfReading|gtfWriting) != 0 {
			n++
		}
	}
	return n
}

// acquire validates ref for mapper and marks it in use; it returns the frame.
func (t *grantTable) acquire(mapper xen.DomID, ref xen.GrantRef, write bool) (uint32, error) {
	if ref < reservedRefs || int(ref) >= t.entries {
		return 0, fmt.Errorf("%w: ref %d out of range", xen.ErrBadGrant, ref)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	off := int(ref) * entrySize
	for {
		w := t.word(off).Load()
		flags, dom := w&0xFFFF, xen.DomID(w>>16)
		if flags&3 != gtfPermitAccess || dom != mapper {
			return 0, fmt.Errorf("%w: ref %d not granted to domain %d", xen.ErrBadGrant, ref, mapper)
		}
		if write && flags&gtfReadonly != 0 {
			return 0, fmt.Errorf("%w: ref %d is read-only", xen.ErrBadGrant, ref)
		}
		nw := w | gtfReading
		if write {
			nw |= gtfWriting
		}
		if t.word(off).CompareAndSwap(w, nw) {
			break
		}
	}
	// pins holds values, so a ref's first pin allocates nothing.
	p := t.pins[ref]
	p.readers++
	if write {
		p.writers++
	}
	t.pins[ref] = p
	return t.word(off + 4).Load(), nil
}

// release undoes one acquire.
func (t *grantTable) release(ref xen.GrantRef, write bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pins[ref]
	if !ok {
		return
	}
	p.readers--
	if write {
		p.writers--
	}
	off := int(ref) * entrySize
	for {
		w := t.word(off).Load()
		nw := w
		if p.writers == 0 {
			nw &^= gtfWriting
		}
		if p.readers == 0 {
			nw &^= gtfReading
		}
		if t.word(off).CompareAndSwap(w, nw) {
			break
		}
	}
	if p.readers == 0 {
		delete(t.pins, ref)
	} else {
		t.pins[ref] = p
	}
}
