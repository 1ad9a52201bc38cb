package sim

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenstore"
)

// Role says which domain a connecting process becomes.
type Role struct {
	dom0 bool
	name string
}

// AsDom0 attaches the process as the control domain (one process at a
// time: it owns dom0's frame allocator and grant refs).
func AsDom0() Role { return Role{dom0: true} }

// NewGuest asks the host for a fresh guest domain called name; it lives
// as long as the connection.
func NewGuest(name string) Role { return Role{name: name} }

// remoteDomain is a domain living in this process, served by a host in
// another one. It implements xen.Domain.
type remoteDomain struct {
	c       *net.UnixConn
	mu      sync.Mutex // one request at a time on c
	id      xen.DomID
	self    *foreign
	status  []byte
	granter *granter
	mapper  *mapper
	store   xen.Store

	fmu      sync.Mutex
	foreigns map[xen.DomID]*foreign
	chans    map[*channel]bool
	closed   bool
}

// Connect attaches this process to the host listening at path.
func Connect(path string, role Role) (xen.Domain, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("sim: connect to host: %w", err)
	}
	d := &remoteDomain{c: c, foreigns: map[xen.DomID]*foreign{}, chans: map[*channel]bool{}}
	rep, fds, err := d.call(request{Op: opHello, Dom0: role.dom0, Name: role.name}, 4)
	if err != nil {
		c.Close()
		return nil, err
	}
	d.id = rep.Dom
	storeFile := os.NewFile(uintptr(fds[3]), "xenstore")
	// The host serves this connection as our domain; package xenstore's
	// client, below us in the layers, speaks its wire protocol.
	conn, err := net.FileConn(storeFile)
	if err == nil {
		d.store, err = xenstore.New(conn)
	}
	if err != nil {
		storeFile.Close()
		closeFDs(fds[:3])
		c.Close()
		return nil, fmt.Errorf("sim: attach to xenstore: %w", err)
	}
	storeFile.Close() // FileConn made its own descriptor
	memFile := os.NewFile(uintptr(fds[0]), "memfd:domain")
	statusFile := os.NewFile(uintptr(fds[2]), "memfd:event-status")
	defer statusFile.Close() // the mapping outlives the descriptor
	fail := func(err error) (xen.Domain, error) {
		memFile.Close()
		c.Close()
		return nil, err
	}
	mem, err := memoryOf(memFile)
	if err != nil {
		unix.Close(fds[1])
		return fail(err)
	}
	self, err := newForeign(memFile, fds[1])
	if err != nil {
		return fail(err)
	}
	if d.status, err = unix.Mmap(fds[2], 0, statusBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fail(fmt.Errorf("sim: map event status: %w", err))
	}
	d.self = self
	d.foreigns[d.id] = self
	d.granter = &granter{mem: mem, grants: self.grants}
	d.mapper = &mapper{self: d.id, foreign: d.foreign}
	return d, nil
}

// call sends one request and waits for its reply, which must carry
// exactly nfds descriptors when it succeeds.
func (d *remoteDomain) call(req request, nfds int) (reply, []int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := send(d.c, req); err != nil {
		return reply{}, nil, fmt.Errorf("%w: host connection: %v", xen.ErrClosed, err)
	}
	var rep reply
	fds, err := recv(d.c, &rep)
	if err != nil {
		return reply{}, nil, fmt.Errorf("%w: host connection: %v", xen.ErrClosed, err)
	}
	if err := rep.err(); err != nil {
		closeFDs(fds)
		return reply{}, nil, err
	}
	if len(fds) != nfds {
		closeFDs(fds)
		return reply{}, nil, fmt.Errorf("sim: host sent %d descriptors, want %d", len(fds), nfds)
	}
	return rep, fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// newForeign maps a grant table; it owns gtFD, and mem on success.
func newForeign(mem *os.File, gtFD int) (*foreign, error) {
	gtFile := os.NewFile(uintptr(gtFD), "memfd:grant-table")
	defer gtFile.Close() // the mapping outlives the descriptor
	gt, err := mapTable(gtFile)
	if err != nil {
		return nil, err
	}
	return &foreign{mem: mem, grants: newGrantTable(gt)}, nil
}

// foreign returns a granting domain's memory and table, asking the host
// once per domain. A domain that died after we first asked stays mappable
// here until unmapped, as its pages do on Xen.
func (d *remoteDomain) foreign(dom xen.DomID) (*foreign, error) {
	d.fmu.Lock()
	f := d.foreigns[dom]
	d.fmu.Unlock()
	if f != nil {
		return f, nil
	}
	_, fds, err := d.call(request{Op: opDomain, Dom: dom}, 2)
	if err != nil {
		return nil, err
	}
	memFile := os.NewFile(uintptr(fds[0]), "memfd:foreign")
	f, err = newForeign(memFile, fds[1])
	if err != nil {
		memFile.Close()
		return nil, err
	}
	d.fmu.Lock()
	defer d.fmu.Unlock()
	if old := d.foreigns[dom]; old != nil {
		f.mem.Close()
		_ = unmapFrames(f.grants.mem)
		return old, nil
	}
	d.foreigns[dom] = f
	return f, nil
}

func (d *remoteDomain) ID() xen.DomID        { return d.id }
func (d *remoteDomain) Granter() xen.Granter { return d.granter }
func (d *remoteDomain) Mapper() xen.Mapper   { return d.mapper }
func (d *remoteDomain) Events() xen.Events   { return d }
func (d *remoteDomain) Store() xen.Store     { return d.store }

func (d *remoteDomain) AllocUnbound(remote xen.DomID) (xen.Channel, error) {
	return d.channel(request{Op: opAlloc, Dom: remote})
}

func (d *remoteDomain) BindInterdomain(remote xen.DomID, remotePort xen.Port) (xen.Channel, error) {
	return d.channel(request{Op: opBind, Dom: remote, Port: remotePort})
}

func (d *remoteDomain) channel(req request) (xen.Channel, error) {
	rep, fds, err := d.call(req, 2)
	if err != nil {
		return nil, err
	}
	if rep.Slot >= statusSlots || (rep.Side != 1 && rep.Side != 2) {
		closeFDs(fds)
		return nil, errors.New("sim: host sent a bad channel")
	}
	in := endInfo{port: rep.Port, slot: rep.Slot, side: rep.Side, local: newDoorbell(fds[0]), peer: newDoorbell(fds[1])}
	var c *channel
	c = newChannel(in, d.status, func() {
		_, _, _ = d.call(request{Op: opClose, Port: in.port}, 0)
		in.local.Close()
		in.peer.Close()
		d.fmu.Lock()
		delete(d.chans, c)
		d.fmu.Unlock()
	})
	d.fmu.Lock()
	d.chans[c] = true
	d.fmu.Unlock()
	return c, nil
}

// Close detaches from the host, which releases the domain (for a guest:
// store area, channels, grants once unmapped).
func (d *remoteDomain) Close() error {
	d.fmu.Lock()
	if d.closed {
		d.fmu.Unlock()
		return nil
	}
	d.closed = true
	var chans []*channel
	for c := range d.chans {
		chans = append(chans, c)
	}
	for _, f := range d.foreigns {
		f.window.close()
	}
	d.fmu.Unlock()
	for _, c := range chans {
		_ = c.Close()
	}
	_ = d.store.Close()
	return d.c.Close()
}
