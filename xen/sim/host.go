// Package sim is a simulated Xen host: domains whose memory is a memfd,
// grant tables in Xen's v1 format with Xen's flag protocol, event channels
// over eventfds, and a xenstore with Xen's permissions, watches and
// transactions. It keeps the contracts of package xen so that the drivers
// cannot tell it from real Xen: a domain maps only what was granted to it,
// read-only grants map read-only, end-access fails while mapped, a dead
// domain's channels close and its xenstore area goes.
package sim

import (
	"fmt"
	"sync"

	"github.com/xenblk/xenblk/xen"
)

// Host is one simulated machine. All its domains live in this process;
// memory is nevertheless memfd-backed and mapped with mmap, exactly as a
// cross-process mapper would map it.
type Host struct {
	mu      sync.Mutex
	next    xen.DomID
	domains map[xen.DomID]*Domain
	events  *eventSpace
	store   *tree
}

// NewHost starts a host with dom0 present.
func NewHost() (*Host, error) {
	h := &Host{next: 1, domains: map[xen.DomID]*Domain{}, events: newEventSpace(), store: newTree()}
	if _, err := h.newDomain(0, "Domain-0"); err != nil {
		return nil, err
	}
	return h, nil
}

// Dom0 returns the control domain.
func (h *Host) Dom0() *Domain {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.domains[0]
}

// NewDomain creates a guest with a fresh id, its /local/domain/N area
// (owned by it), and fires @introduceDomain.
func (h *Host) NewDomain(name string) (*Domain, error) {
	h.mu.Lock()
	id := h.next
	h.next++
	h.mu.Unlock()
	return h.newDomain(id, name)
}

func (h *Host) newDomain(id xen.DomID, name string) (*Domain, error) {
	mem, err := newMemory(fmt.Sprintf("dom%d", id))
	if err != nil {
		return nil, err
	}
	gtMem, err := newMemory(fmt.Sprintf("dom%d-grant-table", id))
	if err != nil {
		return nil, err
	}
	frames, err := gtMem.alloc(grantTableEntries * entrySize / xen.PageSize)
	if err != nil {
		return nil, err
	}
	gt, err := mapFrames(int(gtMem.file.Fd()), frames, true)
	if err != nil {
		return nil, err
	}
	d := &Domain{host: h, id: id, name: name, mem: mem, gtMem: gtMem, grants: newGrantTable(gt)}
	d.store = h.store.connect(id)
	d.mapper = &mapper{d: d}
	d.granter = &granter{d: d}
	d.evs = &events{d: d}
	h.mu.Lock()
	h.domains[id] = d
	h.mu.Unlock()

	home := fmt.Sprintf("/local/domain/%d", id)
	admin := h.store.connect(0)
	if err := admin.Transaction(func(tx xen.Tx) error {
		if err := tx.Mkdir(home); err != nil {
			return err
		}
		if err := tx.SetPerms(home, []xen.Perm{{Dom: id}}); err != nil {
			return err
		}
		if err := tx.Write(home+"/name", name); err != nil {
			return err
		}
		if err := tx.Write(home+"/domid", fmt.Sprint(id)); err != nil {
			return err
		}
		// The guest may create its own device and data areas.
		for _, dir := range []string{"device", "data", "backend"} {
			if err := tx.Mkdir(home + "/" + dir); err != nil {
				return err
			}
			if err := tx.SetPerms(home+"/"+dir, []xen.Perm{{Dom: id}}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	h.store.fireSpecial("@introduceDomain")
	return d, nil
}

// Domain returns a live domain by id.
func (h *Host) Domain(id xen.DomID) (*Domain, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.domains[id]
	return d, ok
}

// Destroy releases a domain as Xen does when it dies: its event channels
// close (peers' Waits report ErrClosed), its store connection and watches
// go, /local/domain/N is removed, @releaseDomain fires. Pages others still
// map stay valid until unmapped.
func (h *Host) Destroy(id xen.DomID) {
	h.mu.Lock()
	d := h.domains[id]
	delete(h.domains, id)
	h.mu.Unlock()
	if d == nil {
		return
	}
	h.events.closeDomain(id)
	_ = d.store.Close()
	_ = h.store.connect(0).Remove(fmt.Sprintf("/local/domain/%d", id))
	h.store.fireSpecial("@releaseDomain")
}

// Store returns a privileged store connection (for the toolstack).
func (h *Host) Store() xen.Store { return h.store.connect(0) }

// Domain is one simulated domain; it implements xen.Domain.
type Domain struct {
	host   *Host
	id     xen.DomID
	name   string
	mem    *memory
	gtMem  *memory
	grants *grantTable

	store   *storeConn
	mapper  *mapper
	granter *granter
	evs     *events
}

func (d *Domain) ID() xen.DomID        { return d.id }
func (d *Domain) Granter() xen.Granter { return d.granter }
func (d *Domain) Mapper() xen.Mapper   { return d.mapper }
func (d *Domain) Events() xen.Events   { return d.evs }
func (d *Domain) Store() xen.Store     { return d.store }
func (d *Domain) Close() error         { d.host.Destroy(d.id); return nil }

// granter implements xen.Granter for a domain.
type granter struct{ d *Domain }

type grantHandle struct{ frames []uint32 }

func (g *granter) Grant(remote xen.DomID, count int, readOnly bool) (*xen.Granted, error) {
	if count <= 0 {
		return nil, fmt.Errorf("sim: grant of %d pages", count)
	}
	frames, err := g.d.mem.alloc(count)
	if err != nil {
		return nil, err
	}
	mem, err := mapFrames(int(g.d.mem.file.Fd()), frames, true)
	if err != nil {
		g.d.mem.release(frames)
		return nil, err
	}
	refs := make([]xen.GrantRef, count)
	if err := g.d.grants.grant(remote, frames, readOnly, refs); err != nil {
		_ = unmapFrames(mem)
		g.d.mem.release(frames)
		return nil, err
	}
	return &xen.Granted{Remote: remote, ReadOnly: readOnly, Refs: refs, Mem: mem, Handle: &grantHandle{frames: frames}}, nil
}

func (g *granter) Revoke(gr *xen.Granted) error {
	h, ok := gr.Handle.(*grantHandle)
	if !ok || h == nil {
		return fmt.Errorf("sim: Revoke of a grant this domain did not make")
	}
	if err := g.d.grants.endAccess(gr.Refs); err != nil {
		return err
	}
	_ = unmapFrames(gr.Mem)
	g.d.mem.release(h.frames)
	gr.Handle, gr.Mem = nil, nil
	return nil
}

// mapper implements xen.Mapper for a domain.
type mapper struct{ d *Domain }

type mapping struct {
	mem     []byte
	granter *Domain
	refs    []xen.GrantRef
	write   bool
	once    sync.Once
}

func (m *mapping) Bytes() []byte { return m.mem }

func (m *mapping) Unmap() error {
	var err error
	m.once.Do(func() {
		err = unmapFrames(m.mem)
		for _, r := range m.refs {
			m.granter.grants.release(r, m.write)
		}
		m.mem = nil
	})
	return err
}

func (mp *mapper) granterOf(dom xen.DomID) (*Domain, error) {
	g, ok := mp.d.host.Domain(dom)
	if !ok {
		return nil, fmt.Errorf("%w: %d", xen.ErrNoDomain, dom)
	}
	return g, nil
}

func (mp *mapper) Map(dom xen.DomID, refs []xen.GrantRef, readOnly bool) (xen.Mapping, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("sim: map of no refs")
	}
	g, err := mp.granterOf(dom)
	if err != nil {
		return nil, err
	}
	write := !readOnly
	frames := make([]uint32, len(refs))
	for i, r := range refs {
		f, err := g.grants.acquire(mp.d.id, r, write)
		if err != nil {
			for _, done := range refs[:i] {
				g.grants.release(done, write)
			}
			return nil, err
		}
		frames[i] = f
	}
	mem, err := mapFrames(int(g.mem.file.Fd()), frames, write)
	if err != nil {
		for _, r := range refs {
			g.grants.release(r, write)
		}
		return nil, err
	}
	return &mapping{mem: mem, granter: g, refs: append([]xen.GrantRef(nil), refs...), write: write}, nil
}

func (mp *mapper) Copy(segs []xen.GrantCopySegment) error {
	var firstErr error
	for i := range segs {
		s := &segs[i]
		s.Err = mp.copyOne(s)
		if s.Err != nil && firstErr == nil {
			firstErr = s.Err
		}
	}
	return firstErr
}

func (mp *mapper) copyOne(s *xen.GrantCopySegment) error {
	if int(s.Offset)+len(s.Local) > xen.PageSize {
		return fmt.Errorf("%w: copy of %d bytes at %d crosses the page", xen.ErrBadGrant, len(s.Local), s.Offset)
	}
	m, err := mp.Map(s.Dom, []xen.GrantRef{s.Ref}, !s.ToForeign)
	if err != nil {
		return err
	}
	defer m.Unmap()
	page := m.Bytes()[s.Offset : int(s.Offset)+len(s.Local)]
	if s.ToForeign {
		copy(page, s.Local)
	} else {
		copy(s.Local, page)
	}
	return nil
}

// events implements xen.Events for a domain.
type events struct{ d *Domain }

func (e *events) AllocUnbound(remote xen.DomID) (xen.Channel, error) {
	return e.d.host.events.allocUnbound(e.d.id, remote)
}

func (e *events) BindInterdomain(remote xen.DomID, remotePort xen.Port) (xen.Channel, error) {
	return e.d.host.events.bindInterdomain(e.d.id, remote, remotePort)
}
