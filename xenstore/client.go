// Package xenstore is a client of Xen's xenstore wire protocol: it
// implements xen.Store over any byte stream to a xenstored (a unix socket,
// or the connection the simulated host hands a domain process).
//
// Invariants: one reader goroutine owns the read side and never blocks on
// a consumer; every request carries a fresh req_id and its reply is matched
// by it, so any number of requests may be in flight; watch events go to a
// per-watch queue whose pump feeds the watch's channel; when the
// connection fails every waiting call returns xen.ErrClosed and every
// watch channel closes.
package xenstore

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"

	"github.com/xenblk/xenblk/internal/watchq"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenstore/wire"
)

// DefaultSocket is xenstored's socket when XENSTORED_PATH is unset.
const DefaultSocket = "/run/xenstored/socket"

// SocketPath is $XENSTORED_PATH, else DefaultSocket.
func SocketPath() string {
	if p := os.Getenv("XENSTORED_PATH"); p != "" {
		return p
	}
	return DefaultSocket
}

// Dial connects to xenstored's unix socket at path ("" means SocketPath()).
func Dial(path string) (*Client, error) {
	if path == "" {
		path = SocketPath()
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("xenstore: %w", err)
	}
	return New(c)
}

type reply struct {
	typ     wire.Type
	payload []byte
}

// Client is one connection to xenstored. It is safe for concurrent use.
type Client struct {
	rwc io.ReadWriteCloser
	wmu sync.Mutex // serialises whole messages on the write side

	mu      sync.Mutex
	nextReq uint32
	pending map[uint32]chan reply
	watches map[string]*watch // by wire token
	nextW   uint64
	err     error // set once the connection is gone
	done    chan struct{}
}

// New starts a client on rwc, which it owns from now on.
func New(rwc io.ReadWriteCloser) (*Client, error) {
	c := &Client{rwc: rwc, pending: map[uint32]chan reply{}, watches: map[string]*watch{}, done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

func (c *Client) readLoop() {
	var hdr [wire.HeaderSize]byte
	var err error
	for {
		if _, err = io.ReadFull(c.rwc, hdr[:]); err != nil {
			break
		}
		var h wire.Header
		if h, err = wire.ParseHeader(hdr[:]); err != nil {
			break
		}
		p := make([]byte, h.Len)
		if _, err = io.ReadFull(c.rwc, p); err != nil {
			break
		}
		if h.Type == wire.WatchEvent {
			c.deliver(p)
			continue
		}
		c.mu.Lock()
		ch := c.pending[h.ReqID]
		delete(c.pending, h.ReqID)
		c.mu.Unlock()
		if ch != nil {
			ch <- reply{h.Type, p} // buffered: never blocks
		}
	}
	c.fail(err)
}

// fail ends the connection: waiting calls get xen.ErrClosed, watches close.
func (c *Client) fail(cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = fmt.Errorf("%w: xenstore connection: %v", xen.ErrClosed, cause)
	close(c.done)
	ws := c.watches
	c.watches = map[string]*watch{}
	c.pending = map[uint32]chan reply{}
	c.mu.Unlock()
	_ = c.rwc.Close()
	for _, w := range ws {
		w.stop()
	}
}

func (c *Client) deliver(p []byte) {
	args := wire.SplitStrings(p)
	if len(args) < 2 {
		return
	}
	c.mu.Lock()
	w := c.watches[args[1]]
	c.mu.Unlock()
	if w != nil {
		w.queue(xen.WatchEvent{Path: args[0], Token: w.token})
	}
}

// call sends one request and waits for its reply. An ERROR reply becomes
// a *wire.Err naming op.
func (c *Client) call(typ wire.Type, tx uint32, payload []byte, op string) ([]byte, error) {
	if len(payload) > wire.PayloadMax {
		return nil, &wire.Err{Name: wire.E2BIG, Op: op}
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.nextReq++
	id := c.nextReq
	c.pending[id] = ch
	c.mu.Unlock()

	msg := wire.AppendMessage(make([]byte, 0, wire.HeaderSize+len(payload)), wire.Header{Type: typ, ReqID: id, TxID: tx}, payload)
	c.wmu.Lock()
	_, err := c.rwc.Write(msg)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
	}
	select {
	case r := <-ch:
		if r.typ == wire.Error {
			name := "EINVAL"
			if a := wire.SplitStrings(r.payload); len(a) > 0 {
				name = a[0]
			}
			return nil, &wire.Err{Name: name, Op: op}
		}
		if r.typ != typ {
			return nil, fmt.Errorf("xenstore: %s: reply of type %v", op, r.typ)
		}
		return r.payload, nil
	case <-c.done:
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
}

// ops carries the calls shared by the client and its transactions.
type ops struct {
	c  *Client
	tx uint32
}

func (o ops) Read(path string) (string, error) {
	b, err := o.c.call(wire.Read, o.tx, wire.Strings(path), "read "+path)
	return string(b), err
}

func (o ops) Write(path, value string) error {
	p := append(append([]byte(path), 0), value...)
	_, err := o.c.call(wire.Write, o.tx, p, "write "+path)
	return err
}

func (o ops) Mkdir(path string) error {
	_, err := o.c.call(wire.Mkdir, o.tx, wire.Strings(path), "mkdir "+path)
	return err
}

func (o ops) Remove(path string) error {
	_, err := o.c.call(wire.Rm, o.tx, wire.Strings(path), "rm "+path)
	return err
}

// Directory lists path's children. A listing too big for one message
// (E2BIG) is fetched with DIRECTORY_PART, restarting if the directory
// changes between parts.
func (o ops) Directory(path string) ([]string, error) {
	b, err := o.c.call(wire.Directory, o.tx, wire.Strings(path), "directory "+path)
	if err == nil {
		return wire.SplitStrings(b), nil
	}
	var we *wire.Err
	if !errors.As(err, &we) || we.Name != wire.E2BIG {
		return nil, err
	}
	for attempt := 0; attempt < 100; attempt++ {
		names, changed, err := o.directoryParts(path)
		if err != nil || !changed {
			return names, err
		}
	}
	return nil, &wire.Err{Name: wire.EAGAIN, Op: "directory " + path}
}

func (o ops) directoryParts(path string) (names []string, changed bool, err error) {
	gen := ""
	off := 0
	for {
		b, err := o.c.call(wire.DirectoryPart, o.tx, wire.Strings(path, strconv.Itoa(off)), "directory_part "+path)
		if err != nil {
			return nil, false, err
		}
		// Reply: generation\0 name\0 ... ; a final empty name (\0\0) ends the listing.
		i := indexNul(b)
		if i < 0 {
			return nil, false, &wire.Err{Name: wire.EIO, Op: "directory_part " + path + ": no generation"}
		}
		g := string(b[:i])
		if gen == "" {
			gen = g
		} else if g != gen {
			return nil, true, nil
		}
		rest := b[i+1:]
		for len(rest) > 0 {
			j := indexNul(rest)
			if j < 0 {
				return nil, false, &wire.Err{Name: wire.EIO, Op: "directory_part " + path + ": unterminated name"}
			}
			if j == 0 {
				return names, false, nil
			}
			names = append(names, string(rest[:j]))
			off += j + 1
			rest = rest[j+1:]
		}
		if len(b) == i+1 {
			return nil, false, &wire.Err{Name: wire.EIO, Op: "directory_part " + path + ": empty part"}
		}
	}
}

func indexNul(b []byte) int {
	for i, x := range b {
		if x == 0 {
			return i
		}
	}
	return -1
}

func (o ops) GetPerms(path string) ([]xen.Perm, error) {
	b, err := o.c.call(wire.GetPerms, o.tx, wire.Strings(path), "get_perms "+path)
	if err != nil {
		return nil, err
	}
	var perms []xen.Perm
	for _, s := range wire.SplitStrings(b) {
		p, ok := wire.ParsePerm(s)
		if !ok {
			return nil, &wire.Err{Name: wire.EIO, Op: "get_perms " + path + ": bad entry " + strconv.Quote(s)}
		}
		perms = append(perms, p)
	}
	return perms, nil
}

func (o ops) SetPerms(path string, perms []xen.Perm) error {
	args := []string{path}
	for _, p := range perms {
		args = append(args, wire.PermString(p))
	}
	_, err := o.c.call(wire.SetPerms, o.tx, wire.Strings(args...), "set_perms "+path)
	return err
}

func (c *Client) Read(path string) (string, error)        { return ops{c: c}.Read(path) }
func (c *Client) Write(path, value string) error          { return ops{c: c}.Write(path, value) }
func (c *Client) Mkdir(path string) error                 { return ops{c: c}.Mkdir(path) }
func (c *Client) Remove(path string) error                { return ops{c: c}.Remove(path) }
func (c *Client) Directory(path string) ([]string, error) { return ops{c: c}.Directory(path) }
func (c *Client) GetPerms(path string) ([]xen.Perm, error) {
	return ops{c: c}.GetPerms(path)
}
func (c *Client) SetPerms(path string, perms []xen.Perm) error {
	return ops{c: c}.SetPerms(path, perms)
}

// DomainPath asks the store for dom's home (/local/domain/<dom>).
func (c *Client) DomainPath(dom xen.DomID) (string, error) {
	b, err := c.call(wire.GetDomainPath, 0, wire.Strings(strconv.Itoa(int(dom))), "get_domain_path")
	if err != nil {
		return "", err
	}
	if a := wire.SplitStrings(b); len(a) > 0 {
		return a[0], nil
	}
	return "", &wire.Err{Name: wire.EIO, Op: "get_domain_path: empty reply"}
}

// IsDomainIntroduced asks whether dom is known to the store.
func (c *Client) IsDomainIntroduced(dom xen.DomID) (bool, error) {
	b, err := c.call(wire.IsDomainIntroduced, 0, wire.Strings(strconv.Itoa(int(dom))), "is_domain_introduced")
	if err != nil {
		return false, err
	}
	a := wire.SplitStrings(b)
	return len(a) > 0 && a[0] == "T", nil
}

// ResetWatches drops every watch this connection holds on the server.
// Local Watch values stop receiving events.
func (c *Client) ResetWatches() error {
	_, err := c.call(wire.ResetWatches, 0, nil, "reset_watches")
	if err != nil {
		return err
	}
	c.mu.Lock()
	ws := c.watches
	c.watches = map[string]*watch{}
	c.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
	return nil
}

// Transaction runs fn in a transaction. If the commit (or any operation)
// reports EAGAIN, fn runs again on fresh state; an error from fn aborts
// the transaction, which then leaves no trace.
func (c *Client) Transaction(fn func(xen.Tx) error) error {
	const maxAttempts = 1000
	for attempt := 1; ; attempt++ {
		b, err := c.call(wire.TransactionStart, 0, wire.Strings(""), "transaction_start")
		if err != nil {
			return err
		}
		a := wire.SplitStrings(b)
		var id uint64
		if len(a) > 0 {
			id, err = strconv.ParseUint(a[0], 10, 32)
		}
		if len(a) == 0 || err != nil || id == 0 {
			return &wire.Err{Name: wire.EIO, Op: "transaction_start: bad id " + strconv.Quote(string(b))}
		}
		tx := ops{c: c, tx: uint32(id)}
		if err := fn(tx); err != nil {
			_, _ = c.call(wire.TransactionEnd, tx.tx, wire.Strings("F"), "transaction_end")
			if errors.Is(err, xen.ErrAgain) && attempt < maxAttempts {
				continue
			}
			return err
		}
		_, err = c.call(wire.TransactionEnd, tx.tx, wire.Strings("T"), "transaction_end")
		if errors.Is(err, xen.ErrAgain) && attempt < maxAttempts {
			continue
		}
		return err
	}
}

// Watch registers a watch on path (and its descendants). As in Xen, one
// event fires at registration.
func (c *Client) Watch(path, token string) (xen.Watch, error) {
	c.mu.Lock()
	c.nextW++
	wt := "xenblk/" + strconv.FormatUint(c.nextW, 10)
	w := newWatch(c, path, token, wt)
	if c.err == nil {
		c.watches[wt] = w
	}
	c.mu.Unlock()
	if _, err := c.call(wire.Watch, 0, wire.Strings(path, wt), "watch "+path); err != nil {
		c.mu.Lock()
		delete(c.watches, wt)
		c.mu.Unlock()
		w.stop()
		return nil, err
	}
	return w, nil
}

// Close hangs up; calls in progress return xen.ErrClosed.
func (c *Client) Close() error {
	c.fail(errors.New("closed by the client"))
	return nil
}

// watch is one registered watch; its queue delivers events in order
// without ever blocking the connection's reader.
type watch struct {
	c               *Client
	path, token, wt string
	q               *watchq.Queue
	closeOnce       sync.Once
}

func newWatch(c *Client, path, token, wt string) *watch {
	return &watch{c: c, path: path, token: token, wt: wt, q: watchq.New()}
}

func (w *watch) queue(ev xen.WatchEvent) { w.q.Push(ev) }

func (w *watch) stop() { w.q.Stop() }

func (w *watch) Events() <-chan xen.WatchEvent { return w.q.Events() }

// Close unregisters the watch; its channel closes.
func (w *watch) Close() error {
	var err error
	w.closeOnce.Do(func() {
		w.c.mu.Lock()
		_, live := w.c.watches[w.wt]
		delete(w.c.watches, w.wt)
		w.c.mu.Unlock()
		if live {
			_, err = w.c.call(wire.Unwatch, 0, wire.Strings(w.path, w.wt), "unwatch "+w.path)
			if errors.Is(err, xen.ErrClosed) {
				err = nil
			}
		}
		w.stop()
	})
	return err
}

var (
	_ xen.Store = (*Client)(nil)
	_ xen.Tx    = ops{}
)
