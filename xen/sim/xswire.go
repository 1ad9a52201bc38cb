package sim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/xenblk/xenblk/xen"
)

// A minimal server of Xen's xenstore wire protocol (xen/io/xs_wire.h) over
// the host's tree, so that Xen's C tools (xenstore-ls, xenstore-read,
// xenstore-write, xenstore-rm, xenstore-watch) can look at a simulated
// host through XENSTORED_PATH. Connections on that socket are privileged
// (dom0), as on xenstored's; a domain process gets its own connection, as
// that domain, with its hello. Transactions are refused with ENOSYS: the C
// tools above do not need them, and the full server (package
// xenstore/xenstored) replaces this one when it lands.

// Message types used here (enum xsd_sockmsg_type).
const (
	xsDirectory     = 1
	xsRead          = 2
	xsGetPerms      = 3
	xsWatch         = 4
	xsUnwatch       = 5
	xsGetDomainPath = 10
	xsWrite         = 11
	xsMkdir         = 12
	xsRm            = 13
	xsSetPerms      = 14
	xsWatchEvent    = 15
	xsError         = 16
)

// xsHeaderSize is sizeof(struct xsd_sockmsg); xsPayloadMax is
// XENSTORE_PAYLOAD_MAX.
const (
	xsHeaderSize = 16
	xsPayloadMax = 4096
)

type xsHeader struct {
	typ, reqID, txID, length uint32
}

// parseXSHeader decodes a header; a payload longer than the protocol
// allows is an error (the connection is then dropped).
func parseXSHeader(b []byte) (xsHeader, error) {
	if len(b) < xsHeaderSize {
		return xsHeader{}, errors.New("xenstore: short header")
	}
	h := xsHeader{
		typ:    binary.LittleEndian.Uint32(b[0:]),
		reqID:  binary.LittleEndian.Uint32(b[4:]),
		txID:   binary.LittleEndian.Uint32(b[8:]),
		length: binary.LittleEndian.Uint32(b[12:]),
	}
	if h.length > xsPayloadMax {
		return xsHeader{}, fmt.Errorf("xenstore: payload of %d bytes", h.length)
	}
	return h, nil
}

// splitArgs splits a payload into its nul-terminated strings; the last
// one may lack its terminator (a WRITE's value).
func splitArgs(p []byte) []string {
	if len(p) == 0 {
		return nil
	}
	p = bytes.TrimSuffix(p, []byte{0})
	return strings.Split(string(p), "\x00")
}

// ServeXenstore serves the xenstore wire protocol on l until it closes.
func (h *Host) ServeXenstore(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go h.serveXenstoreConn(c, 0)
	}
}

type xsConn struct {
	rw      io.ReadWriteCloser
	store   *storeConn
	wmu     sync.Mutex
	watches map[[2]string]xen.Watch
}

// serveXenstoreConn serves one connection as domain dom, with that
// domain's permissions and relative paths.
func (h *Host) serveXenstoreConn(rw io.ReadWriteCloser, dom xen.DomID) {
	c := &xsConn{rw: rw, store: h.store.connect(dom), watches: map[[2]string]xen.Watch{}}
	defer func() {
		_ = rw.Close()
		_ = c.store.Close()
	}()
	var hdr [xsHeaderSize]byte
	payload := make([]byte, xsPayloadMax)
	for {
		if _, err := io.ReadFull(rw, hdr[:]); err != nil {
			return
		}
		m, err := parseXSHeader(hdr[:])
		if err != nil {
			return
		}
		if _, err := io.ReadFull(rw, payload[:m.length]); err != nil {
			return
		}
		typ, out := c.handle(m, payload[:m.length])
		if err := c.send(typ, m.reqID, m.txID, out); err != nil {
			return
		}
	}
}

func (c *xsConn) send(typ, reqID, txID uint32, payload []byte) error {
	buf := make([]byte, xsHeaderSize+len(payload))
	binary.LittleEndian.PutUint32(buf[0:], typ)
	binary.LittleEndian.PutUint32(buf[4:], reqID)
	binary.LittleEndian.PutUint32(buf[8:], txID)
	binary.LittleEndian.PutUint32(buf[12:], uint32(len(payload)))
	copy(buf[xsHeaderSize:], payload)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.rw.Write(buf)
	return err
}

var xsOK = []byte("OK\x00")

func xsErr(name string) (uint32, []byte) { return xsError, []byte(name + "\x00") }

func xsErrOf(err error) (uint32, []byte) {
	switch {
	case errors.Is(err, xen.ErrNotFound):
		return xsErr("ENOENT")
	case errors.Is(err, xen.ErrPermission):
		return xsErr("EACCES")
	}
	return xsErr("EINVAL")
}

func (c *xsConn) handle(m xsHeader, payload []byte) (uint32, []byte) {
	if m.txID != 0 {
		return xsErr("ENOSYS")
	}
	args := splitArgs(payload)
	need := func(n int) bool { return len(args) >= n }
	s := c.store
	switch m.typ {
	case xsDirectory:
		if !need(1) {
			break
		}
		kids, err := s.Directory(args[0])
		if err != nil {
			return xsErrOf(err)
		}
		var b []byte
		for _, k := range kids {
			b = append(append(b, k...), 0)
		}
		return m.typ, b
	case xsRead:
		if !need(1) {
			break
		}
		v, err := s.Read(args[0])
		if err != nil {
			return xsErrOf(err)
		}
		return m.typ, []byte(v)
	case xsGetPerms:
		if !need(1) {
			break
		}
		perms, err := s.GetPerms(args[0])
		if err != nil {
			return xsErrOf(err)
		}
		var b []byte
		for _, p := range perms {
			b = append(append(b, permString(p)...), 0)
		}
		return m.typ, b
	case xsWrite:
		i := bytes.IndexByte(payload, 0)
		if i < 0 {
			break
		}
		if err := s.Write(string(payload[:i]), string(payload[i+1:])); err != nil {
			return xsErrOf(err)
		}
		return m.typ, xsOK
	case xsMkdir, xsRm:
		if !need(1) {
			break
		}
		op := s.Mkdir
		if m.typ == xsRm {
			op = s.Remove
		}
		if err := op(args[0]); err != nil {
			return xsErrOf(err)
		}
		return m.typ, xsOK
	case xsSetPerms:
		if !need(2) {
			break
		}
		var perms []xen.Perm
		for _, a := range args[1:] {
			p, ok := parsePerm(a)
			if !ok {
				return xsErr("EINVAL")
			}
			perms = append(perms, p)
		}
		if err := s.SetPerms(args[0], perms); err != nil {
			return xsErrOf(err)
		}
		return m.typ, xsOK
	case xsGetDomainPath:
		if !need(1) {
			break
		}
		id, err := strconv.ParseUint(args[0], 10, 16)
		if err != nil {
			break
		}
		p, _ := s.DomainPath(xen.DomID(id))
		return m.typ, append([]byte(p), 0)
	case xsWatch:
		if !need(2) {
			break
		}
		key := [2]string{args[0], args[1]}
		if _, dup := c.watches[key]; dup {
			return xsErr("EEXIST")
		}
		w, err := s.Watch(args[0], args[1])
		if err != nil {
			return xsErrOf(err)
		}
		c.watches[key] = w
		go func() {
			for ev := range w.Events() {
				_ = c.send(xsWatchEvent, 0, 0, []byte(ev.Path+"\x00"+ev.Token+"\x00"))
			}
		}()
		return m.typ, xsOK
	case xsUnwatch:
		if !need(2) {
			break
		}
		key := [2]string{args[0], args[1]}
		w := c.watches[key]
		if w == nil {
			return xsErr("ENOENT")
		}
		delete(c.watches, key)
		_ = w.Close()
		return m.typ, xsOK
	default:
		return xsErr("ENOSYS")
	}
	return xsErr("EINVAL")
}

func permString(p xen.Perm) string {
	c := "n"
	switch {
	case p.Read && p.Write:
		c = "b"
	case p.Read:
		c = "r"
	case p.Write:
		c = "w"
	}
	return c + strconv.Itoa(int(p.Dom))
}

func parsePerm(s string) (xen.Perm, bool) {
	if len(s) < 2 {
		return xen.Perm{}, false
	}
	id, err := strconv.ParseUint(s[1:], 10, 16)
	if err != nil {
		return xen.Perm{}, false
	}
	p := xen.Perm{Dom: xen.DomID(id)}
	switch s[0] {
	case 'n':
	case 'r':
		p.Read = true
	case 'w':
		p.Write = true
	case 'b':
		p.Read, p.Write = true, true
	default:
		return xen.Perm{}, false
	}
	return p, true
}
