// Package sim is a simulated Xen host: domains whose memory is a memfd,
// grant tables in Xen's v1 format with Xen's flag protocol, event channels
// over eventfds, and a xenstore with Xen's permissions, watches and
// transactions. It keeps the contracts of package xen so that the drivers
// cannot tell it from real Xen: a domain maps only what was granted to it,
// read-only grants map read-only, end-access fails while mapped, a dead
// domain's channels close and its xenstore area goes.
//
// Domains live in the host's process (NewHost, NewDomain) or in other
// processes (Serve on the host side, Connect on the domain's side); the
// memory, grant tables and doorbells are the same shared objects either
// way, so the semantics are the same.
package sim

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/xenblk/xenblk/xen"
)

// Host is one simulated machine.
type Host struct {
	mu      sync.Mutex
	next    xen.DomID
	domains map[xen.DomID]*Domain
	events  *eventSpace
	store   *tree
	// remoteDom0 is set while a process is attached as dom0: dom0's
	// frame allocator and grant refs then belong to that process.
	remoteDom0 bool
	// grantFrames is every domain's grant-table size in pages.
	grantFrames int
}

// HostOption configures NewHost.
type HostOption func(*Host) error

// GrantFrames sizes every domain's grant table to frames pages of v1
// entries (EntriesPerFrame each), as Xen's gnttab_max_frames does; the
// default is DefaultGrantFrames. It accepts 1 to MaxGrantFrames.
func GrantFrames(frames int) HostOption {
	return func(h *Host) error {
		if frames < 1 || frames > MaxGrantFrames {
			return fmt.Errorf("sim: grant table of %d frames; want 1 to %d", frames, MaxGrantFrames)
		}
		h.grantFrames = frames
		return nil
	}
}

// NewHost starts a host with dom0 present.
func NewHost(opts ...HostOption) (*Host, error) {
	h := &Host{next: 1, domains: map[xen.DomID]*Domain{}, store: newTree(), grantFrames: DefaultGrantFrames}
	for _, o := range opts {
		if err := o(h); err != nil {
			return nil, err
		}
	}
	ev, err := newEventSpace()
	if err != nil {
		return nil, err
	}
	h.events = ev
	if _, err := h.newDomain(0, "Domain-0"); err != nil {
		return nil, err
	}
	return h, nil
}

// GrantEntries is the size of every domain's grant table, in refs
// (reserved refs included, as Xen counts them).
func (h *Host) GrantEntries() int { return h.grantFrames * EntriesPerFrame }

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
	gtFile, err := newMemfd(fmt.Sprintf("dom%d-grant-table", id), int64(h.grantFrames)*xen.PageSize)
	if err != nil {
		return nil, err
	}
	gt, err := mapTable(gtFile)
	if err != nil {
		return nil, err
	}
	d := &Domain{host: h, id: id, name: name, mem: mem, gtFile: gtFile, grants: newGrantTable(gt)}
	d.foreign = &foreign{mem: mem.file, grants: d.grants}
	d.store = h.store.connect(id)
	d.granter = &granter{mem: mem, grants: d.grants}
	d.mapper = &mapper{self: id, foreign: h.foreign}
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

// foreign gives a mapper the memory and grant table of a live domain.
func (h *Host) foreign(id xen.DomID) (*foreign, error) {
	d, ok := h.Domain(id)
	if !ok {
		return nil, fmt.Errorf("%w: %d", xen.ErrNoDomain, id)
	}
	return d.foreign, nil
}

// Destroy releases a domain as Xen does when it dies: its event channels
// close (peers' Waits report ErrClosed), its store connection and watches
// go, /local/domain/N is removed, @releaseDomain fires. Pages others still
// map stay valid until unmapped; its grants are revoked as they are.
// Destroying dom0 only closes its channels and watches.
func (h *Host) Destroy(id xen.DomID) {
	h.mu.Lock()
	d := h.domains[id]
	if id != 0 {
		delete(h.domains, id)
	}
	h.mu.Unlock()
	if d == nil {
		return
	}
	for _, p := range h.events.portsOf(id) {
		h.events.closeEnd(id, p)
	}
	_ = d.store.Close()
	if id == 0 {
		return
	}
	_ = h.store.connect(0).Remove(fmt.Sprintf("/local/domain/%d", id))
	h.store.fireSpecial("@releaseDomain")
	// Mappings made already survive the descriptors; new ones fail. The
	// table stays mapped here: late unmaps still clear their flags in it.
	_ = d.mem.file.Close()
	_ = d.gtFile.Close()
	d.foreign.window.close()
	if d.grants.sweep() {
		go func() {
			for d.grants.sweep() {
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
}

// Channels counts the live event-channel ports of dom whose other end is
// remote's (bound, or offered to it).
func (h *Host) Channels(dom, remote xen.DomID) int { return h.events.channelsTo(dom, remote) }

// Store returns a privileged store connection (for the toolstack).
func (h *Host) Store() xen.Store { return h.store.connect(0) }

// Domain is one simulated domain as the host holds it; for a domain living
// in the host's process it implements xen.Domain.
type Domain struct {
	host   *Host
	id     xen.DomID
	name   string
	mem    *memory
	gtFile *os.File
	grants *grantTable
	// foreign is what other domains' mappers use of this one.
	foreign *foreign

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

// MappedGrants counts the entries of d's grant table that another domain
// maps (GTF_reading or GTF_writing set). On Xen a dead domain's memory
// is freed only once this reaches zero; here too, its table is swept
// until then.
func (d *Domain) MappedGrants() int { return d.grants.mapped() }

// events implements xen.Events for a domain in the host's process.
type events struct{ d *Domain }

func (e *events) channel(in endInfo) *channel {
	s, dom := e.d.host.events, e.d.id
	return newChannel(in, s.status, func() { s.unbind(dom, in.port) })
}

func (e *events) AllocUnbound(remote xen.DomID) (xen.Channel, error) {
	in, err := e.d.host.events.allocUnbound(e.d.id, remote)
	if err != nil {
		return nil, err
	}
	return e.channel(in), nil
}

func (e *events) BindInterdomain(remote xen.DomID, remotePort xen.Port) (xen.Channel, error) {
	in, err := e.d.host.events.bindInterdomain(e.d.id, remote, remotePort)
	if err != nil {
		return nil, err
	}
	return e.channel(in), nil
}
