package sim

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenstore/wire"
)

// A server of Xen's xenstore wire protocol (xen/io/xs_wire.h) over the
// host's tree, for Xen's C tools (through XENSTORED_PATH) and for domain
// processes (package xenstore's client).
//
// Invariants:
//   - a connection is served as one domain, with that domain's
//     permissions, relative paths and quotas; dom0 is exempt from quotas;
//   - requests on a connection are answered one at a time, in order, so a
//     connection never has more than one request outstanding on the host
//     and a flood of requests costs the host nothing but that connection's
//     socket buffer (the outstanding-request quota is 1, by construction);
//   - a bad header (payload above XENSTORE_PAYLOAD_MAX) or a short read
//     hangs up that connection only; a malformed request gets EINVAL;
//   - watch events reach the socket through each watch's own queue, so a
//     client that never reads cannot stall the tree or other connections.

// ServeXenstore serves the wire protocol on l as dom0 (xenstored's
// privileged socket) until l closes.
func (h *Host) ServeXenstore(l net.Listener) error { return h.ServeXenstoreAs(l, 0) }

// ServeXenstoreAs serves every connection accepted on l as domain dom,
// as if it came through that guest's ring: for tests and tools that
// exercise a guest's view of the store.
func (h *Host) ServeXenstoreAs(l net.Listener, dom xen.DomID) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go h.serveXenstoreConn(c, dom)
	}
}

// xsOps is what both a connection and one of its transactions can do.
type xsOps interface {
	xen.Tx
	GetPerms(path string) ([]xen.Perm, error)
}

type xsConn struct {
	h     *Host
	dom   xen.DomID
	rw    io.ReadWriteCloser
	store *storeConn
	wmu   sync.Mutex // one whole message at a time on the socket

	watches map[[2]string]xen.Watch
	txs     map[uint32]*storeTx
	nextTx  uint32
	// afterReply, if set by a handler, runs once its reply is sent.
	afterReply func()
}

// serveXenstoreConn serves one connection as domain dom.
func (h *Host) serveXenstoreConn(rw io.ReadWriteCloser, dom xen.DomID) {
	c := &xsConn{h: h, dom: dom, rw: rw, store: h.store.connect(dom), watches: map[[2]string]xen.Watch{}, txs: map[uint32]*storeTx{}}
	defer func() {
		_ = rw.Close()
		_ = c.store.Close() // drops the watches; open transactions die with c
	}()
	var hdr [wire.HeaderSize]byte
	payload := make([]byte, wire.PayloadMax)
	for {
		if _, err := io.ReadFull(rw, hdr[:]); err != nil {
			return
		}
		m, err := wire.ParseHeader(hdr[:])
		if err != nil {
			return
		}
		if _, err := io.ReadFull(rw, payload[:m.Len]); err != nil {
			return
		}
		typ, out := c.handle(m, payload[:m.Len])
		if err := c.send(wire.Header{Type: typ, ReqID: m.ReqID, TxID: m.TxID}, out); err != nil {
			return
		}
		if f := c.afterReply; f != nil {
			c.afterReply = nil
			f()
		}
	}
}

func (c *xsConn) send(h wire.Header, payload []byte) error {
	buf := wire.AppendMessage(make([]byte, 0, wire.HeaderSize+len(payload)), h, payload)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.rw.Write(buf)
	return err
}

var xsOK = []byte("OK\x00")

func xsErr(name string) (wire.Type, []byte) { return wire.Error, []byte(name + "\x00") }

func xsErrOf(err error) (wire.Type, []byte) { return xsErr(wire.Name(err)) }

func (c *xsConn) handle(m wire.Header, payload []byte) (wire.Type, []byte) {
	args := wire.SplitStrings(payload)
	var ops xsOps = c.store
	if m.TxID != 0 {
		tx := c.txs[m.TxID]
		if tx == nil {
			return xsErr(wire.ENOENT)
		}
		ops = tx
	}
	switch m.Type {
	case wire.Read:
		if len(args) != 1 {
			break
		}
		v, err := ops.Read(args[0])
		if err != nil {
			return xsErrOf(err)
		}
		return m.Type, []byte(v)
	case wire.Write:
		i := indexNul(payload)
		if i < 0 {
			break
		}
		if err := ops.Write(string(payload[:i]), string(payload[i+1:])); err != nil {
			return xsErrOf(err)
		}
		return m.Type, xsOK
	case wire.Mkdir, wire.Rm:
		if len(args) != 1 {
			break
		}
		op := ops.Mkdir
		if m.Type == wire.Rm {
			op = ops.Remove
		}
		if err := op(args[0]); err != nil {
			return xsErrOf(err)
		}
		return m.Type, xsOK
	case wire.Directory:
		if len(args) != 1 {
			break
		}
		kids, err := ops.Directory(args[0])
		if err != nil {
			return xsErrOf(err)
		}
		b := wire.Strings(kids...)
		if len(b) > wire.PayloadMax {
			return xsErr(wire.E2BIG) // the client asks again with DIRECTORY_PART
		}
		return m.Type, b
	case wire.DirectoryPart:
		return c.directoryPart(ops, m, args)
	case wire.GetPerms:
		if len(args) != 1 {
			break
		}
		perms, err := ops.GetPerms(args[0])
		if err != nil {
			return xsErrOf(err)
		}
		var b []byte
		for _, p := range perms {
			b = append(append(b, wire.PermString(p)...), 0)
		}
		return m.Type, b
	case wire.SetPerms:
		if len(args) < 2 {
			break
		}
		var perms []xen.Perm
		for _, a := range args[1:] {
			p, ok := wire.ParsePerm(a)
			if !ok {
				return xsErr(wire.EINVAL)
			}
			perms = append(perms, p)
		}
		if err := ops.SetPerms(args[0], perms); err != nil {
			return xsErrOf(err)
		}
		return m.Type, xsOK
	case wire.TransactionStart:
		if m.TxID != 0 {
			return xsErr(wire.EBUSY) // no nesting
		}
		if c.dom != 0 && len(c.txs) >= quotaTransactions {
			return xsErr(wire.ENOSPC)
		}
		c.nextTx++
		for c.nextTx == 0 || c.txs[c.nextTx] != nil {
			c.nextTx++
		}
		c.txs[c.nextTx] = c.store.begin()
		return m.Type, wire.Strings(strconv.FormatUint(uint64(c.nextTx), 10))
	case wire.TransactionEnd:
		if m.TxID == 0 || len(args) != 1 || (args[0] != "T" && args[0] != "F") {
			break
		}
		tx := c.txs[m.TxID]
		delete(c.txs, m.TxID)
		if args[0] == "F" {
			return m.Type, xsOK
		}
		if err := tx.commit(); err != nil {
			return xsErrOf(err)
		}
		return m.Type, xsOK
	case wire.Watch:
		return c.watch(m, args)
	case wire.Unwatch:
		if len(args) != 2 {
			break
		}
		key := [2]string{args[0], args[1]}
		w := c.watches[key]
		if w == nil {
			return xsErr(wire.ENOENT)
		}
		delete(c.watches, key)
		_ = w.Close()
		return m.Type, xsOK
	case wire.ResetWatches:
		for k, w := range c.watches {
			delete(c.watches, k)
			_ = w.Close()
		}
		return m.Type, xsOK
	case wire.GetDomainPath:
		id, ok := domArg(args)
		if !ok {
			break
		}
		p, _ := c.store.DomainPath(id)
		return m.Type, wire.Strings(p)
	case wire.IsDomainIntroduced:
		id, ok := domArg(args)
		if !ok {
			break
		}
		if c.dom != 0 {
			return xsErr(wire.EACCES)
		}
		_, known := c.h.Domain(id)
		if id == 0 || known {
			return m.Type, wire.Strings("T")
		}
		return m.Type, wire.Strings("F")
	case wire.Introduce, wire.Release:
		// The host introduces and releases its domains itself; a
		// toolstack's explicit call is accepted from dom0 for a domain the
		// host knows, and fires the special watch as xenstored does.
		if c.dom != 0 {
			return xsErr(wire.EACCES)
		}
		id, ok := domArg(args)
		if !ok || (m.Type == wire.Introduce && len(args) != 3) {
			break
		}
		if _, known := c.h.Domain(id); !known && id != 0 {
			return xsErr(wire.ENOENT)
		}
		if m.Type == wire.Introduce {
			c.h.store.fireSpecial("@introduceDomain")
		} else {
			c.h.store.fireSpecial("@releaseDomain")
		}
		return m.Type, xsOK
	default:
		return xsErr(wire.ENOSYS)
	}
	return xsErr(wire.EINVAL)
}

// quotaWatchBacklog bounds the events a guest's watch holds while the
// guest does not read its socket; later ones are dropped.
const quotaWatchBacklog = 1024

func domArg(args []string) (xen.DomID, bool) {
	if len(args) < 1 {
		return 0, false
	}
	id, err := strconv.ParseUint(args[0], 10, 16)
	return xen.DomID(id), err == nil
}

func indexNul(b []byte) int {
	for i, x := range b {
		if x == 0 {
			return i
		}
	}
	return -1
}

// directoryPart answers DIRECTORY_PART: "generation\0" then the names
// that fit, each nul-terminated, starting at byte offset off of the whole
// listing; a final empty name ("\0") marks the end. The generation is the
// store's, so a client restarts if anything changed between parts.
func (c *xsConn) directoryPart(ops xsOps, m wire.Header, args []string) (wire.Type, []byte) {
	if len(args) != 2 {
		return xsErr(wire.EINVAL)
	}
	off, err := strconv.Atoi(args[1])
	if err != nil || off < 0 {
		return xsErr(wire.EINVAL)
	}
	c.h.store.mu.Lock()
	gen := c.h.store.gen
	c.h.store.mu.Unlock()
	kids, err := ops.Directory(args[0])
	if err != nil {
		return xsErrOf(err)
	}
	if tx, ok := ops.(*storeTx); ok {
		gen = tx.gen
	}
	out := wire.Strings(strconv.FormatUint(gen, 10))
	pos := 0
	for _, k := range kids {
		if pos >= off {
			if len(out)+len(k)+1+1 > wire.PayloadMax {
				return m.Type, out // more to come
			}
			out = append(append(out, k...), 0)
		} else if pos+len(k)+1 > off {
			return xsErr(wire.EINVAL) // not at a name boundary
		}
		pos += len(k) + 1
	}
	if off > pos {
		return xsErr(wire.EINVAL)
	}
	return m.Type, append(out, 0)
}

func (c *xsConn) watch(m wire.Header, args []string) (wire.Type, []byte) {
	if len(args) != 2 {
		return xsErr(wire.EINVAL)
	}
	key := [2]string{args[0], args[1]}
	if _, dup := c.watches[key]; dup {
		return xsErr(wire.EEXIST)
	}
	if c.dom != 0 && len(c.watches) >= quotaWatches {
		return xsErr(wire.E2BIG)
	}
	if p := c.store.abs(args[0]); p[0] != '@' {
		if err := validPath(p); err != nil {
			return xsErrOf(err)
		}
	}
	w, err := c.store.Watch(args[0], args[1])
	if err != nil {
		return xsErrOf(err)
	}
	if sw, ok := w.(*storeWatch); ok && c.dom != 0 {
		sw.q.SetLimit(quotaWatchBacklog)
	}
	c.watches[key] = w
	// The registration event must follow the reply on the socket.
	c.afterReply = func() {
		go func() {
			for ev := range w.Events() {
				if c.send(wire.Header{Type: wire.WatchEvent}, wire.Strings(ev.Path, ev.Token)) != nil {
					_ = w.Close()
				}
			}
		}()
	}
	return m.Type, xsOK
}
