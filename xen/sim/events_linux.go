package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/shmem"
	"github.com/xenblk/xenblk/xen"
)

// An event channel is a pair of eventfds (one doorbell per end) and one
// status word in the host's shared status memory. Each end holds both
// eventfds: Notify writes the peer's directly, with no host hop, so
// channels work the same in one process or across processes (the host
// passes the eventfds with SCM_RIGHTS). Notifications coalesce in the
// eventfd counter: a peer flooding a port costs the waiter one wake-up
// per Wait, never a queue, so it cannot starve anyone.
//
// The status word holds one "closed" bit per end. An end that closes (or
// whose domain dies: the host closes for it) sets its bit and signals both
// doorbells, so a Wait on either end wakes and reports ErrClosed. Notify
// towards a closed peer returns ErrClosed.
//
// Xen drops events sent to an unbound port; here both doorbells exist from
// AllocUnbound on, so an event sent before the bind shows up as one
// pending event at the binder. Drivers treat events as hints anyway.

// statusSlots is the number of channel pairs the host can have live.
const statusSlots = 1 << 16

const statusBytes = statusSlots * 4

// statusWord is slot's word in the status memory.
func statusWord(mem []byte, slot uint32) *atomic.Uint32 {
	return shmem.MustUint32(mem, int(slot)*4)
}

// doorbell is a non-blocking eventfd. Blocking reads go through Go's
// poller (f), so Wait parks the goroutine and honours deadlines without
// burning CPU; signals and polls use the raw descriptor (fd), because
// os.File.Fd would switch the descriptor to blocking mode.
type doorbell struct {
	f  *os.File
	fd int
}

func newDoorbell(fd int) *doorbell {
	return &doorbell{f: os.NewFile(uintptr(fd), "eventfd"), fd: fd}
}

func newEventfd() (*doorbell, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("sim: eventfd: %w", err)
	}
	return newDoorbell(fd), nil
}

func (d *doorbell) Close() error { return d.f.Close() }

var one = func() []byte { b := make([]byte, 8); binary.NativeEndian.PutUint64(b, 1); return b }()

// signal bumps an eventfd counter. A raw write: it never blocks (the
// counter saturating means "already signalled") and allocates nothing.
func signal(d *doorbell) {
	for {
		_, err := unix.Write(d.fd, one)
		if err != unix.EINTR {
			return
		}
	}
}

// channel is one bound port; it implements xen.Channel.
type channel struct {
	port   xen.Port
	local  *doorbell      // ours
	peer   *doorbell      // the other end's
	status *atomic.Uint32 // closed bits, shared
	side   uint32         // our closed bit: 1 or 2
	masked atomic.Bool
	// closed is our own close, checked before touching the descriptors or
	// the status slot, which the host may recycle once both ends are gone.
	closed atomic.Bool
	// unbind tells the owner (host registry or host connection) that this
	// end is gone; called once.
	unbind func()
	once   sync.Once
	mu     sync.Mutex // serialises Wait; Close takes it before closing descriptors
	rbuf   [8]byte
	pbuf   [8]byte // Pending's: one poller per channel, like Wait
	// deadline says a read deadline is set on local (under mu).
	deadline bool
}

func (c *channel) Port() xen.Port { return c.port }

func (c *channel) peerSide() uint32 { return 3 &^ c.side }

func (c *channel) Notify() error {
	if err := c.closedErr(); err != nil {
		return err
	}
	signal(c.peer)
	return nil
}

func (c *channel) closedErr() error {
	if c.closed.Load() {
		return xen.ErrClosed
	}
	s := c.status.Load()
	if s&c.side != 0 {
		return xen.ErrClosed
	}
	if s&c.peerSide() != 0 {
		return fmt.Errorf("%w: the remote end of port %d closed", xen.ErrClosed, c.port)
	}
	return nil
}

// Wait blocks until signalled, closed (locally or by the peer), or timeout.
func (c *channel) Wait(timeout time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if timeout > 0 {
		_ = c.local.f.SetReadDeadline(time.Now().Add(timeout))
		c.deadline = true
	} else if c.deadline {
		_ = c.local.f.SetReadDeadline(time.Time{})
		c.deadline = false
	}
	for {
		if err := c.closedErr(); err != nil {
			return false, err
		}
		_, err := c.local.f.Read(c.rbuf[:])
		switch {
		case err == nil:
			if err := c.closedErr(); err != nil {
				return false, err
			}
			if c.masked.Load() {
				continue
			}
			return true, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return false, nil
		case errors.Is(err, os.ErrClosed):
			return false, xen.ErrClosed
		default:
			return false, err
		}
	}
}

func (c *channel) Pending() bool {
	if c.closed.Load() {
		return false
	}
	_, err := unix.Read(c.local.fd, c.pbuf[:])
	return err == nil && !c.masked.Load()
}

func (c *channel) Mask() { c.masked.Store(true) }

func (c *channel) Unmask() {
	c.masked.Store(false)
	if c.closed.Load() {
		return
	}
	signal(c.local) // deliver what arrived while masked
}

// Close unbinds the port; the peer's Wait wakes and reports ErrClosed.
func (c *channel) Close() error {
	c.once.Do(func() {
		c.status.Or(c.side)
		signal(c.peer)
		signal(c.local)
		c.closed.Store(true)
		// A Wait in progress has been woken; let it leave before the
		// descriptors it polls can be closed and reused.
		c.mu.Lock()
		c.mu.Unlock()
		if c.unbind != nil {
			c.unbind()
		}
	})
	return nil
}

// eventSpace is the host's registry of channel pairs: who offered which
// port to whom, each pair's doorbells and status slot. It lives in the host
// process; remote domains reach it through their host connection.
type eventSpace struct {
	status []byte // statusBytes of shared memory, all zero when a slot is free
	file   *os.File

	mu    sync.Mutex
	next  map[xen.DomID]xen.Port
	ports map[portKey]*pairEnd
	free  []uint32 // free status slots
}

type portKey struct {
	dom  xen.DomID
	port xen.Port
}

// pair is one channel: two ends, two doorbells, one status slot.
type pair struct {
	slot  uint32
	efd   [2]*doorbell
	ends  [2]*pairEnd
	bound bool
	gone  int // ends unbound so far; the slot is freed at 2
}

// pairEnd is one end as the registry sees it.
type pairEnd struct {
	p      *pair
	i      int // 0: allocating end, 1: binding end
	dom    xen.DomID
	port   xen.Port
	remote xen.DomID
	gone   bool
}

func newEventSpace() (*eventSpace, error) {
	f, err := newMemfd("event-status", statusBytes)
	if err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, statusBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sim: map event status: %w", err)
	}
	s := &eventSpace{status: mem, file: f, next: map[xen.DomID]xen.Port{}, ports: map[portKey]*pairEnd{}}
	for i := statusSlots - 1; i >= 0; i-- {
		s.free = append(s.free, uint32(i))
	}
	return s, nil
}

// endInfo is what a domain needs to build its channel for an end.
type endInfo struct {
	port  xen.Port
	slot  uint32
	side  uint32
	local *doorbell
	peer  *doorbell
}

func (e *pairEnd) info() endInfo {
	return endInfo{port: e.port, slot: e.p.slot, side: uint32(1 << e.i), local: e.p.efd[e.i], peer: e.p.efd[1-e.i]}
}

func (s *eventSpace) allocUnbound(dom, remote xen.DomID) (endInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.free) == 0 {
		return endInfo{}, fmt.Errorf("sim: out of event channels (%d live)", statusSlots)
	}
	var efd [2]*doorbell
	for i := range efd {
		f, err := newEventfd()
		if err != nil {
			if i == 1 {
				efd[0].Close()
			}
			return endInfo{}, err
		}
		efd[i] = f
	}
	slot := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	statusWord(s.status, slot).Store(0)
	p := &pair{slot: slot, efd: efd}
	s.next[dom]++
	e := &pairEnd{p: p, i: 0, dom: dom, port: s.next[dom], remote: remote}
	p.ends[0] = e
	s.ports[portKey{dom, e.port}] = e
	return e.info(), nil
}

func (s *eventSpace) bindInterdomain(dom, remote xen.DomID, remotePort xen.Port) (endInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.ports[portKey{remote, remotePort}]
	if r == nil || r.gone {
		return endInfo{}, fmt.Errorf("%w: domain %d has no port %d", xen.ErrClosed, remote, remotePort)
	}
	if r.i != 0 || r.p.bound || r.remote != dom {
		return endInfo{}, fmt.Errorf("sim: port %d of domain %d is not offered to domain %d", remotePort, remote, dom)
	}
	r.p.bound = true
	s.next[dom]++
	e := &pairEnd{p: r.p, i: 1, dom: dom, port: s.next[dom], remote: remote}
	r.p.ends[1] = e
	s.ports[portKey{dom, e.port}] = e
	return e.info(), nil
}

// unbind forgets an end whose closed bit is already set; the pair's
// doorbells and slot are released once both ends (or the one end of a
// never-bound port) are gone.
func (s *eventSpace) unbind(dom xen.DomID, port xen.Port) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.ports[portKey{dom, port}]
	if e == nil || e.gone {
		return
	}
	e.gone = true
	delete(s.ports, portKey{dom, port})
	p := e.p
	p.gone++
	p.bound = true // nobody may bind to a pair with a closed end
	if p.gone == 2 || p.ends[1] == nil {
		p.efd[0].Close()
		p.efd[1].Close()
		statusWord(s.status, p.slot).Store(0)
		s.free = append(s.free, p.slot)
	}
}

// closeEnd closes an end on behalf of its owner (a dead domain or a dropped
// connection): sets its closed bit, wakes both ends, forgets it.
func (s *eventSpace) closeEnd(dom xen.DomID, port xen.Port) {
	s.mu.Lock()
	e := s.ports[portKey{dom, port}]
	if e != nil && !e.gone {
		statusWord(s.status, e.p.slot).Or(uint32(1 << e.i))
		signal(e.p.efd[0])
		signal(e.p.efd[1])
	}
	s.mu.Unlock()
	s.unbind(dom, port)
}

// portsOf lists the live ports of dom.
func (s *eventSpace) portsOf(dom xen.DomID) []xen.Port {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []xen.Port
	for k := range s.ports {
		if k.dom == dom {
			out = append(out, k.port)
		}
	}
	return out
}

// channelsTo counts the live ports of dom whose remote is remote.
func (s *eventSpace) channelsTo(dom, remote xen.DomID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, e := range s.ports {
		if k.dom == dom && e.remote == remote {
			n++
		}
	}
	return n
}

// newChannel builds a domain's end from its info; status is that domain's
// mapping of the host's status memory.
func newChannel(in endInfo, status []byte, unbind func()) *channel {
	return &channel{port: in.port, local: in.local, peer: in.peer, status: statusWord(status, in.slot), side: in.side, unbind: unbind}
}
