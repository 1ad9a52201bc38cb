package sim

import (
	"fmt"
	"os"
	"sync"

	"github.com/xenblk/xenblk/xen"
)

// granter implements xen.Granter over a domain's memory and grant table.
// Only one process grants for a domain: it owns the frame allocator and
// the table's free refs.
type granter struct {
	mem    *memory
	grants *grantTable
}

type grantHandle struct{ frames []uint32 }

func (g *granter) Grant(remote xen.DomID, count int, readOnly bool) (*xen.Granted, error) {
	if count <= 0 {
		return nil, fmt.Errorf("sim: grant of %d pages", count)
	}
	if free := g.grants.freeRefs(); count > free {
		// Before allocating memory for pages that could not be granted.
		return nil, g.grants.fullError(count, free)
	}
	frames, err := g.mem.alloc(count)
	if err != nil {
		return nil, err
	}
	mem, err := mapFrames(g.mem.file, frames, true)
	if err != nil {
		g.mem.release(frames)
		return nil, err
	}
	refs := make([]xen.GrantRef, count)
	if err := g.grants.grant(remote, frames, readOnly, refs); err != nil {
		_ = unmapFrames(mem)
		g.mem.release(frames)
		return nil, err
	}
	return &xen.Granted{Remote: remote, ReadOnly: readOnly, Refs: refs, Mem: mem, Handle: &grantHandle{frames: frames}}, nil
}

func (g *granter) Revoke(gr *xen.Granted) error {
	h, ok := gr.Handle.(*grantHandle)
	if !ok || h == nil {
		return fmt.Errorf("sim: Revoke of a grant this domain did not make")
	}
	if err := g.grants.endAccess(gr.Refs); err != nil {
		return err
	}
	_ = unmapFrames(gr.Mem)
	g.mem.release(h.frames)
	gr.Handle, gr.Mem = nil, nil
	return nil
}

// foreign is what a mapper needs of a granting domain: the memfd its
// frames live in and a view of its grant table.
type foreign struct {
	mem    *os.File
	grants *grantTable
	window copyWindow
}

// mapper implements xen.Mapper for domain self.
type mapper struct {
	self    xen.DomID
	foreign func(xen.DomID) (*foreign, error)
}

type mapping struct {
	mem    []byte
	grants *grantTable
	refs   []xen.GrantRef // in inline when they fit
	inline [4]xen.GrantRef
	write  bool
	once   sync.Once
}

func (m *mapping) Bytes() []byte { return m.mem }

func (m *mapping) Unmap() error {
	var err error
	m.once.Do(func() {
		err = unmapFrames(m.mem)
		for _, r := range m.refs {
			m.grants.release(r, m.write)
		}
		m.mem = nil
	})
	return err
}

func (mp *mapper) Map(dom xen.DomID, refs []xen.GrantRef, readOnly bool) (xen.Mapping, error) {
	if len(refs) == 0 || len(refs) > MaxGrantFrames*EntriesPerFrame {
		return nil, fmt.Errorf("%w: map of %d refs", xen.ErrBadGrant, len(refs))
	}
	g, err := mp.foreign(dom)
	if err != nil {
		return nil, err
	}
	write := !readOnly
	// A mapping of a few pages (a ring, a request's segments) keeps its
	// frames on the stack and its refs inside the mapping: Map then
	// allocates the mapping alone.
	var framesInline [16]uint32
	frames := framesInline[:0]
	if len(refs) > len(framesInline) {
		frames = make([]uint32, 0, len(refs))
	}
	frames = frames[:len(refs)]
	for i, r := range refs {
		f, err := g.grants.acquire(mp.self, r, write)
		if err != nil {
			for _, done := range refs[:i] {
				g.grants.release(done, write)
			}
			return nil, err
		}
		frames[i] = f
	}
	mem, err := mapFrames(g.mem, frames, write)
	if err != nil {
		for _, r := range refs {
			g.grants.release(r, write)
		}
		return nil, err
	}
	m := &mapping{mem: mem, grants: g.grants, write: write}
	m.refs = append(m.inline[:0], refs...)
	return m, nil
}

// Copy performs every segment as Xen's GNTTABOP_copy does: each one's
// grant is validated and held in use (GTF_reading, and GTF_writing for a
// copy into the page) for the copy's duration only, and the bytes move
// through the domain's copy window, so nothing is mapped or unmapped per
// segment and the steady state allocates nothing.
func (mp *mapper) Copy(segs []xen.GrantCopySegment) error {
	var (
		firstErr error
		g        *foreign
		gdom     xen.DomID
		gerr     error
	)
	for i := range segs {
		s := &segs[i]
		if i == 0 || s.Dom != gdom {
			gdom = s.Dom
			g, gerr = mp.foreign(s.Dom)
		}
		s.Err = gerr
		if gerr == nil {
			s.Err = mp.copyOne(g, s)
		}
		if s.Err != nil && firstErr == nil {
			firstErr = s.Err
		}
	}
	return firstErr
}

// copyOne goes through the same validation and pinning as Map, so a copy
// can never touch a page the mapper could not map.
func (mp *mapper) copyOne(g *foreign, s *xen.GrantCopySegment) error {
	if int(s.Offset)+len(s.Local) > xen.PageSize {
		return fmt.Errorf("%w: copy of %d bytes at %d crosses the page", xen.ErrBadGrant, len(s.Local), s.Offset)
	}
	frame, err := g.grants.acquire(mp.self, s.Ref, s.ToForeign)
	if err != nil {
		return err
	}
	defer g.grants.release(s.Ref, s.ToForeign)
	page, ok := g.window.page(g.mem, frame)
	if !ok {
		return copyMapped(g, frame, s)
	}
	copyPage(page, s)
	g.window.mu.RUnlock()
	return nil
}

// copyMapped is copyOne's slow path: the frame mapped alone.
func copyMapped(g *foreign, frame uint32, s *xen.GrantCopySegment) error {
	mem, err := mapFrames(g.mem, []uint32{frame}, s.ToForeign)
	if err != nil {
		return err
	}
	copyPage(mem, s)
	return unmapFrames(mem)
}

func copyPage(page []byte, s *xen.GrantCopySegment) {
	at := page[s.Offset : int(s.Offset)+len(s.Local)]
	if s.ToForeign {
		copy(at, s.Local)
	} else {
		copy(s.Local, at)
	}
}
