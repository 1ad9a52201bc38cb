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

	"github.com/xenblk/xenblk/xen"
)

// eventfd is one port's doorbell: a non-blocking eventfd registered with
// Go's poller, so Wait parks the goroutine (no CPU) and honours deadlines.
// Notifications coalesce in the eventfd counter, so a peer that floods a
// port costs the waiter one wake-up per Wait, not one per notification.
type eventfd struct {
	f *os.File
}

func newEventfd() (*eventfd, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("sim: eventfd: %w", err)
	}
	return &eventfd{f: os.NewFile(uintptr(fd), "eventfd")}, nil
}

var one = func() []byte { b := make([]byte, 8); binary.NativeEndian.PutUint64(b, 1); return b }()

func (e *eventfd) signal() error {
	_, err := e.f.Write(one)
	if errors.Is(err, unix.EAGAIN) {
		return nil // counter saturated: already signalled
	}
	return err
}

// drain clears the counter; reports whether it was signalled.
func (e *eventfd) drain(buf []byte) (bool, error) {
	_, err := unix.Read(int(e.f.Fd()), buf)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.EAGAIN) {
		return false, nil
	}
	return false, err
}

// channel is one bound port of a domain.
type channel struct {
	dom    xen.DomID
	port   xen.Port
	local  *eventfd // our doorbell
	peer   atomic.Pointer[channel]
	closed atomic.Bool
	masked atomic.Bool
	owner  *eventSpace
	buf    [8]byte
	rbuf   [8]byte
	mu     sync.Mutex // serialises Wait
}

func (c *channel) Port() xen.Port { return c.port }

func (c *channel) Notify() error {
	if c.closed.Load() {
		return xen.ErrClosed
	}
	p := c.peer.Load()
	if p == nil {
		return nil // unbound remote: Xen drops the event
	}
	if p.closed.Load() {
		return xen.ErrClosed
	}
	return p.local.signal()
}

// Wait blocks until signalled, closed (locally or by the peer), or timeout.
func (c *channel) Wait(timeout time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if timeout > 0 {
		_ = c.local.f.SetReadDeadline(time.Now().Add(timeout))
	} else {
		_ = c.local.f.SetReadDeadline(time.Time{})
	}
	for {
		if c.closed.Load() {
			return false, xen.ErrClosed
		}
		if p := c.peer.Load(); p != nil && p.closed.Load() {
			return false, fmt.Errorf("%w: the remote end closed port %d", xen.ErrClosed, c.port)
		}
		_, err := c.local.f.Read(c.rbuf[:])
		switch {
		case err == nil:
			if c.closed.Load() {
				return false, xen.ErrClosed
			}
			if p := c.peer.Load(); p != nil && p.closed.Load() {
				return false, fmt.Errorf("%w: the remote end closed port %d", xen.ErrClosed, c.port)
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
	ok, _ := c.local.drain(c.buf[:])
	return ok && !c.masked.Load()
}

func (c *channel) Mask() { c.masked.Store(true) }

func (c *channel) Unmask() {
	c.masked.Store(false)
	_ = c.local.signal() // deliver what arrived while masked
}

// Close unbinds the port; the peer's Wait wakes and reports ErrClosed.
func (c *channel) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.owner.remove(c.dom, c.port)
	if p := c.peer.Load(); p != nil {
		_ = p.local.signal()
	}
	_ = c.local.signal()
	return nil
}

// eventSpace is the host's registry of every domain's ports.
type eventSpace struct {
	mu    sync.Mutex
	next  map[xen.DomID]xen.Port
	ports map[portKey]*channelRecord
}

type portKey struct {
	dom  xen.DomID
	port xen.Port
}

type channelRecord struct {
	ch     *channel
	remote xen.DomID // who may bind to an unbound port
	bound  bool
}

func newEventSpace() *eventSpace {
	return &eventSpace{next: map[xen.DomID]xen.Port{}, ports: map[portKey]*channelRecord{}}
}

func (s *eventSpace) remove(dom xen.DomID, port xen.Port) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ports, portKey{dom, port})
}

func (s *eventSpace) newPort(dom xen.DomID) (*channel, error) {
	efd, err := newEventfd()
	if err != nil {
		return nil, err
	}
	s.next[dom]++
	return &channel{dom: dom, port: s.next[dom], local: efd, owner: s}, nil
}

func (s *eventSpace) allocUnbound(dom, remote xen.DomID) (*channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.newPort(dom)
	if err != nil {
		return nil, err
	}
	s.ports[portKey{dom, c.port}] = &channelRecord{ch: c, remote: remote}
	return c, nil
}

func (s *eventSpace) bindInterdomain(dom, remote xen.DomID, remotePort xen.Port) (*channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.ports[portKey{remote, remotePort}]
	if r == nil || r.ch.closed.Load() {
		return nil, fmt.Errorf("%w: domain %d has no port %d", xen.ErrClosed, remote, remotePort)
	}
	if r.bound || r.remote != dom {
		return nil, fmt.Errorf("sim: port %d of domain %d is not offered to domain %d", remotePort, remote, dom)
	}
	c, err := s.newPort(dom)
	if err != nil {
		return nil, err
	}
	r.bound = true
	c.peer.Store(r.ch)
	r.ch.peer.Store(c)
	s.ports[portKey{dom, c.port}] = &channelRecord{ch: c, remote: remote, bound: true}
	return c, nil
}

// closeDomain closes every port a dead domain held.
func (s *eventSpace) closeDomain(dom xen.DomID) {
	s.mu.Lock()
	var chans []*channel
	for k, r := range s.ports {
		if k.dom == dom {
			chans = append(chans, r.ch)
		}
	}
	s.mu.Unlock()
	for _, c := range chans {
		_ = c.Close()
	}
}
