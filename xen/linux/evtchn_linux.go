package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/xen"
)

// Evtchn binds event channels through /dev/xen/evtchn. It implements
// xen.Events.
type Evtchn struct{}

// AllocUnbound implements xen.Events.
func (Evtchn) AllocUnbound(remote xen.DomID) (xen.Channel, error) {
	var req [SizeofEvtchnBindUnboundPort]byte
	binary.NativeEndian.PutUint32(req[:], uint32(remote))
	return bind(IoctlEvtchnBindUnboundPort, req[:], fmt.Sprintf("allocate a port for domain %d", remote))
}

// BindInterdomain implements xen.Events.
func (Evtchn) BindInterdomain(remote xen.DomID, remotePort xen.Port) (xen.Channel, error) {
	var req [SizeofEvtchnBindInterdomain]byte
	binary.NativeEndian.PutUint32(req[0:], uint32(remote))
	binary.NativeEndian.PutUint32(req[4:], uint32(remotePort))
	return bind(IoctlEvtchnBindInterdomain, req[:], fmt.Sprintf("bind to port %d of domain %d", remotePort, remote))
}

// bind opens a file of its own for one port, so that its reads return
// only that port and closing the file unbinds it.
func bind(ioc uint, req []byte, what string) (xen.Channel, error) {
	fd, err := unix.Open(DevEvtchn, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("xen: open %s: %w (is the xen_evtchn module loaded?)", DevEvtchn, err)
	}
	port, err := ioctl(fd, ioc, req)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("xen: evtchn %s: %w", what, err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("xen: eventfd: %w", err)
	}
	return &channel{fd: fd, wake: wake, port: xen.Port(port)}, nil
}

// channel is one bound port. The kernel masks the port each time it fires
// and queues it for read; we record it as pending and write it back to
// unmask it (at once, or on Unmask while the channel is masked), so any
// number of notifications between two Waits coalesce into one.
//
// Wait sleeps in ppoll on the port's file and on wake, an eventfd that
// Close and Unmask signal so a sleeping Wait notices them. use is held
// shared while a descriptor is in use and exclusively by Close, so a
// descriptor number is never used after it is closed (and perhaps reused).
type channel struct {
	fd, wake int
	port     xen.Port

	use sync.RWMutex

	mu      sync.Mutex
	closed  bool
	masked  bool
	pending bool
	held    bool // the kernel has the port masked until we write it back
}

func (c *channel) Port() xen.Port { return c.port }

func (c *channel) Notify() error {
	c.use.RLock()
	defer c.use.RUnlock()
	if c.isClosed() {
		return xen.ErrClosed
	}
	var req [SizeofEvtchnNotify]byte
	binary.NativeEndian.PutUint32(req[:], uint32(c.port))
	if _, err := ioctl(c.fd, IoctlEvtchnNotify, req[:]); err != nil {
		return fmt.Errorf("xen: notify port %d: %w", c.port, err)
	}
	return nil
}

func (c *channel) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// collect reads the ports the kernel has queued (never blocking) and
// records them. Called with use held shared; once Close has begun it
// touches nothing: the descriptor is about to close, or has closed and
// its number may name another file by now.
func (c *channel) collect() {
	if c.isClosed() {
		return
	}
	var buf [4 * 8]byte
	for {
		n, err := unix.Read(c.fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if n < 4 || err != nil {
			return
		}
		c.mu.Lock()
		c.pending = true
		c.held = true
		if !c.masked {
			c.reenableLocked()
		}
		c.mu.Unlock()
	}
}

// reenableLocked writes the port back so the kernel unmasks it.
func (c *channel) reenableLocked() {
	if !c.held {
		return
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(c.port))
	for {
		if _, err := unix.Write(c.fd, b[:]); err != unix.EINTR {
			break
		}
	}
	c.held = false
}

// take consumes a pending notification unless masked.
func (c *channel) take() (signalled, closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false, true
	}
	if c.pending && !c.masked {
		c.pending = false
		return true, false
	}
	return false, false
}

func (c *channel) Wait(timeout time.Duration) (bool, error) {
	c.use.RLock()
	defer c.use.RUnlock()
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		c.collect()
		if ok, closed := c.take(); closed {
			return false, xen.ErrClosed
		} else if ok {
			return true, nil
		}
		var ts *unix.Timespec
		if timeout > 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return false, nil
			}
			t := unix.NsecToTimespec(left.Nanoseconds())
			ts = &t
		}
		fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}, {Fd: int32(c.wake), Events: unix.POLLIN}}
		if _, err := unix.Ppoll(fds, ts, nil); err != nil && !errors.Is(err, unix.EINTR) {
			return false, fmt.Errorf("xen: wait on port %d: %w", c.port, err)
		}
		if fds[1].Revents != 0 {
			var b [8]byte
			_, _ = unix.Read(c.wake, b[:])
		}
	}
}

func (c *channel) Pending() bool {
	c.use.RLock()
	defer c.use.RUnlock()
	c.collect()
	ok, _ := c.take()
	return ok
}

func (c *channel) Mask() {
	c.mu.Lock()
	c.masked = true
	c.mu.Unlock()
}

func (c *channel) Unmask() {
	c.use.RLock()
	defer c.use.RUnlock()
	c.mu.Lock()
	c.masked = false
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.reenableLocked()
	wake := c.pending
	c.mu.Unlock()
	if wake {
		c.signalWake()
	}
}

func (c *channel) signalWake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(c.wake, one[:])
}

// Close unbinds the port (closing its file does) and wakes a Wait.
func (c *channel) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.signalWake()
	c.use.Lock()
	defer c.use.Unlock()
	err := unix.Close(c.fd)
	unix.Close(c.wake)
	return err
}
