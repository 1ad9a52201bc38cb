package sim

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/xen"
)

// ErrInUse means a live host already answers on the socket path.
var ErrInUse = errors.New("socket in use by a running host")

// Listen opens the host's socket at path. A stale socket file (nobody
// answers on it) is replaced; a socket a live process answers on is left
// alone (ErrInUse), since replacing it would cut that host off from every
// domain that attaches later; a path that is not a socket is refused.
func Listen(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"}); err == nil {
			c.Close() // a host ends a connection that never says hello
			return nil, fmt.Errorf("%s: %w", path, ErrInUse)
		}
		_ = os.Remove(path)
	}
	return net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
}

// Serve accepts domain processes on l until l is closed.
func (h *Host) Serve(l *net.UnixListener) error {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go h.ServeConn(c)
	}
}

// hostConn is the host's side of one domain process.
type hostConn struct {
	h     *Host
	c     *net.UnixConn
	dom   xen.DomID
	hello bool
	ports map[xen.Port]bool // ports this process holds
	// handOver holds descriptors made for the process alone: closed
	// once the reply carrying them is sent.
	handOver []*os.File
}

// ServeConn serves one domain process until its connection closes, then
// releases what it held: its ports, and the whole domain if it is a guest.
func (h *Host) ServeConn(c *net.UnixConn) {
	hc := &hostConn{h: h, c: c, ports: map[xen.Port]bool{}}
	defer hc.release()
	for {
		var req request
		fds, err := recv(c, &req)
		for _, fd := range fds {
			closeFD(fd) // a domain has nothing to hand the host
		}
		if err != nil {
			return
		}
		rep, out, err := hc.handle(req)
		if err != nil {
			rep = errorReply(err)
		}
		// The descriptors are sent under their files' locks, so a domain
		// destroyed meanwhile cannot make us send a reused descriptor.
		err = withFDs(out, func(fds []int) error { return send(c, rep, fds...) })
		for _, f := range hc.handOver {
			f.Close()
		}
		hc.handOver = nil
		if err != nil {
			return
		}
		if !hc.hello {
			return // the first request must be a successful hello
		}
	}
}

func (hc *hostConn) handle(req request) (reply, []*os.File, error) {
	h := hc.h
	if !hc.hello {
		if req.Op != opHello {
			return reply{}, nil, errors.New("first request must be hello")
		}
		var d *Domain
		if req.Dom0 {
			h.mu.Lock()
			busy := h.remoteDom0
			h.remoteDom0 = true
			h.mu.Unlock()
			if busy {
				return reply{}, nil, errors.New("a dom0 process is already attached")
			}
			d = h.Dom0()
		} else {
			var err error
			if d, err = h.NewDomain(req.Name); err != nil {
				return reply{}, nil, err
			}
		}
		store, err := h.storeSocket(d.id)
		if err != nil {
			if d.id != 0 {
				h.Destroy(d.id)
			}
			return reply{}, nil, err
		}
		hc.handOver = append(hc.handOver, store)
		hc.dom, hc.hello = d.id, true
		return reply{Dom: d.id}, []*os.File{d.mem.file, d.gtFile, h.events.file, store}, nil
	}
	switch req.Op {
	case opDomain:
		d, ok := h.Domain(req.Dom)
		if !ok {
			return reply{}, nil, fmt.Errorf("%w: %d", xen.ErrNoDomain, req.Dom)
		}
		return reply{Dom: d.id}, []*os.File{d.mem.file, d.gtFile}, nil
	case opAlloc, opBind:
		var in endInfo
		var err error
		if req.Op == opAlloc {
			in, err = h.events.allocUnbound(hc.dom, req.Dom)
		} else {
			in, err = h.events.bindInterdomain(hc.dom, req.Dom, req.Port)
		}
		if err != nil {
			return reply{}, nil, err
		}
		hc.ports[in.port] = true
		return reply{Port: in.port, Slot: in.slot, Side: in.side}, []*os.File{in.local.f, in.peer.f}, nil
	case opClose:
		if hc.ports[req.Port] {
			delete(hc.ports, req.Port)
			h.events.closeEnd(hc.dom, req.Port)
		}
		return reply{}, nil, nil
	}
	return reply{}, nil, fmt.Errorf("unknown request %q", req.Op)
}

// storeSocket returns one end of a socket pair whose other end is served
// as dom's xenstore connection (xenstore wire protocol).
func (h *Host) storeSocket(dom xen.DomID) (*os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sim: store socket: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "xenstore")
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, err
	}
	go h.serveXenstoreConn(c, dom)
	return os.NewFile(uintptr(fds[1]), "xenstore"), nil
}

func (hc *hostConn) release() {
	_ = hc.c.Close()
	if !hc.hello {
		return
	}
	for p := range hc.ports {
		hc.h.events.closeEnd(hc.dom, p)
	}
	if hc.dom != 0 {
		hc.h.Destroy(hc.dom)
		return
	}
	hc.h.mu.Lock()
	hc.h.remoteDom0 = false
	hc.h.mu.Unlock()
}

func closeFD(fd int) { _ = os.NewFile(uintptr(fd), "").Close() }
