package sim

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/xenblk/xenblk/internal/watchq"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenstore/wire"
)

// tree is the embedded host's xenstore: Xen's node tree with its
// permission model, watches and transactions, reached through per-domain
// connections (storeConn) that implement xen.Store. It keeps the semantics
// the drivers rely on:
//   - a node's first permission entry names its owner and the access of
//     every domain not listed; dom0 and the owner may do anything;
//   - a new node inherits its parent's permissions, owned by its creator
//     when the creator is not dom0; missing parents are created;
//   - a watch fires for changes of its node or any descendant, for the
//     removal of an ancestor, and once at registration; only for domains
//     that may read the node;
//   - a transaction sees a snapshot; its commit fails with ErrAgain if the
//     store changed since it started, and then leaves no trace.
type tree struct {
	mu      sync.Mutex
	root    *node
	gen     uint64 // bumped by every committed change
	watches map[*storeWatch]struct{}
}

type node struct {
	value    string
	perms    []xen.Perm
	children map[string]*node
}

func newTree() *tree {
	t := &tree{root: &node{perms: []xen.Perm{{Dom: 0}}, children: map[string]*node{}}, watches: map[*storeWatch]struct{}{}}
	return t
}

func (n *node) clone() *node {
	c := &node{value: n.value, perms: append([]xen.Perm(nil), n.perms...), children: make(map[string]*node, len(n.children))}
	for k, v := range n.children {
		c.children[k] = v.clone()
	}
	return c
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func validPath(p string) error {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") || len(p) > 3072 {
		return fmt.Errorf("sim store: invalid path %q (EINVAL)", p)
	}
	return nil
}

func lookup(root *node, p string) *node {
	n := root
	for _, part := range splitPath(p) {
		n = n.children[part]
		if n == nil {
			return nil
		}
	}
	return n
}

// access reports whether dom may read (or write) n.
func access(n *node, dom xen.DomID, write bool) bool {
	if dom == 0 || len(n.perms) == 0 || n.perms[0].Dom == dom {
		return true
	}
	p := n.perms[0]
	for _, e := range n.perms[1:] {
		if e.Dom == dom {
			p = e
			break
		}
	}
	if write {
		return p.Write
	}
	return p.Read
}

// ops on a root (the live tree or a transaction's snapshot).

func read(root *node, dom xen.DomID, p string) (string, error) {
	n := lookup(root, p)
	if n == nil {
		return "", fmt.Errorf("%w: %s (ENOENT)", xen.ErrNotFound, p)
	}
	if !access(n, dom, false) {
		return "", fmt.Errorf("%w: read %s (EACCES)", xen.ErrPermission, p)
	}
	return n.value, nil
}

func write(root *node, dom xen.DomID, p, v string, mkdirOnly bool) error {
	parts := splitPath(p)
	if len(parts) == 0 {
		return fmt.Errorf("%w: write / (EACCES)", xen.ErrPermission)
	}
	if dom != 0 && len(v) > quotaNodeSize {
		return &wire.Err{Name: wire.ENOSPC, Op: fmt.Sprintf("write %s: %d bytes exceed the node size quota of %d", p, len(v), quotaNodeSize)}
	}
	owned := -1 // counted on the first creation only
	n := root
	for i, part := range parts {
		c := n.children[part]
		if c == nil {
			if dom != 0 {
				if owned < 0 {
					owned = countOwned(root, dom)
				}
				if owned >= quotaNodes {
					return &wire.Err{Name: wire.ENOSPC, Op: fmt.Sprintf("create %s: domain %d owns %d nodes, its quota", p, dom, owned)}
				}
				owned++
			}
			if !access(n, dom, true) {
				return fmt.Errorf("%w: create %s (EACCES)", xen.ErrPermission, "/"+strings.Join(parts[:i+1], "/"))
			}
			c = &node{perms: append([]xen.Perm(nil), n.perms...), children: map[string]*node{}}
			if dom != 0 {
				c.perms[0].Dom = dom
			}
			n.children[part] = c
		} else if i == len(parts)-1 && !mkdirOnly && !access(c, dom, true) {
			return fmt.Errorf("%w: write %s (EACCES)", xen.ErrPermission, p)
		}
		n = c
	}
	if !mkdirOnly {
		n.value = v
	}
	return nil
}

// Per-domain quotas, as xenstored's defaults; dom0 is exempt. A hostile
// guest cannot grow the host's store beyond them (XSA-349).
const (
	quotaNodes        = 1000 // nodes a domain may own
	quotaNodeSize     = 2048 // bytes of one node's value
	quotaWatches      = 128  // watches per connection
	quotaTransactions = 10   // open transactions per connection
)

// countOwned counts the nodes whose owner is dom.
func countOwned(n *node, dom xen.DomID) int {
	c := 0
	if len(n.perms) > 0 && n.perms[0].Dom == dom {
		c = 1
	}
	for _, k := range n.children {
		c += countOwned(k, dom)
	}
	return c
}

// remove deletes the subtree at p and reports whether there was one.
// xenstore.txt: "It is not an error if <path> does not exist, but it _is_
// an error if <path>'s immediate parent does not exist either." So a
// missing node under an existing parent is a success that changed
// nothing (false, nil): no generation bump, no watch event. As in C
// xenstored, a domain that may not read that parent learns nothing about
// it (EACCES).
func remove(root *node, dom xen.DomID, p string) (bool, error) {
	parts := splitPath(p)
	if len(parts) == 0 {
		return false, fmt.Errorf("%w: remove / (EINVAL)", xen.ErrPermission)
	}
	parent := lookup(root, "/"+strings.Join(parts[:len(parts)-1], "/"))
	if parent == nil {
		return false, fmt.Errorf("%w: %s (ENOENT)", xen.ErrNotFound, p)
	}
	n := parent.children[parts[len(parts)-1]]
	if n == nil {
		if !access(parent, dom, false) {
			return false, fmt.Errorf("%w: remove %s (EACCES)", xen.ErrPermission, p)
		}
		return false, nil
	}
	if !access(n, dom, true) {
		return false, fmt.Errorf("%w: remove %s (EACCES)", xen.ErrPermission, p)
	}
	delete(parent.children, parts[len(parts)-1])
	return true, nil
}

func directory(root *node, dom xen.DomID, p string) ([]string, error) {
	n := lookup(root, p)
	if n == nil {
		return nil, fmt.Errorf("%w: %s (ENOENT)", xen.ErrNotFound, p)
	}
	if !access(n, dom, false) {
		return nil, fmt.Errorf("%w: directory %s (EACCES)", xen.ErrPermission, p)
	}
	out := make([]string, 0, len(n.children))
	for k := range n.children {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

func setPerms(root *node, dom xen.DomID, p string, perms []xen.Perm) error {
	n := lookup(root, p)
	if n == nil {
		return fmt.Errorf("%w: %s (ENOENT)", xen.ErrNotFound, p)
	}
	if dom != 0 && (len(n.perms) == 0 || n.perms[0].Dom != dom) {
		return fmt.Errorf("%w: set perms of %s (EACCES)", xen.ErrPermission, p)
	}
	if len(perms) == 0 {
		return fmt.Errorf("sim store: empty permission list for %s (EINVAL)", p)
	}
	n.perms = append([]xen.Perm(nil), perms...)
	return nil
}

// fire queues watch events for a change at p (a write, or the removal of
// the subtree at p). Called with t.mu held, after the change.
func (t *tree) fire(p string, removed bool) {
	for w := range t.watches {
		match := p == w.path || strings.HasPrefix(p, w.path+"/") || w.path == "/"
		if !match && removed && strings.HasPrefix(w.path, p+"/") {
			match = true // an ancestor of the watched node went away
		}
		if !match {
			continue
		}
		if w.dom != 0 {
			// Only if the domain may read what changed (or what is left of it).
			if n := lookup(t.root, p); n != nil && !access(n, w.dom, false) {
				continue
			}
		}
		ev := p
		if removed && !strings.HasPrefix(p, w.path) {
			ev = w.path
		}
		w.queue(xen.WatchEvent{Path: ev, Token: w.token})
	}
}

// storeWatch is one registered watch; its queue delivers events in order
// without ever blocking the store.
type storeWatch struct {
	t     *tree
	dom   xen.DomID
	path  string
	token string
	q     *watchq.Queue
	once  sync.Once
}

func (w *storeWatch) queue(ev xen.WatchEvent) { w.q.Push(ev) }

func (w *storeWatch) Events() <-chan xen.WatchEvent { return w.q.Events() }

func (w *storeWatch) Close() error {
	w.once.Do(func() {
		w.t.mu.Lock()
		delete(w.t.watches, w)
		w.t.mu.Unlock()
		w.q.Stop()
	})
	return nil
}

// storeConn is one domain's connection to the tree.
type storeConn struct {
	t   *tree
	dom xen.DomID

	mu      sync.Mutex
	watches []*storeWatch
	closed  bool
}

func (t *tree) connect(dom xen.DomID) *storeConn { return &storeConn{t: t, dom: dom} }

// abs resolves a guest's relative path against its home, as xenstored does.
func (c *storeConn) abs(p string) string {
	if strings.HasPrefix(p, "/") || strings.HasPrefix(p, "@") {
		return p
	}
	return fmt.Sprintf("/local/domain/%d/%s", c.dom, p)
}

func (c *storeConn) Read(p string) (string, error) {
	p = c.abs(p)
	if err := validPath(p); err != nil {
		return "", err
	}
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return read(c.t.root, c.dom, p)
}

func (c *storeConn) Write(p, v string) error {
	return c.mutate(p, func(r *node, p string) (bool, error) { return true, write(r, c.dom, p, v, false) }, false)
}

func (c *storeConn) Mkdir(p string) error {
	return c.mutate(p, func(r *node, p string) (bool, error) { return true, write(r, c.dom, p, "", true) }, false)
}

func (c *storeConn) Remove(p string) error {
	return c.mutate(p, func(r *node, p string) (bool, error) { return remove(r, c.dom, p) }, true)
}

func (c *storeConn) SetPerms(p string, perms []xen.Perm) error {
	return c.mutate(p, func(r *node, p string) (bool, error) { return true, setPerms(r, c.dom, p, perms) }, false)
}

// mutate applies op at p; op reports whether it changed the tree, and
// only a change bumps the generation and fires watches.
func (c *storeConn) mutate(p string, op func(*node, string) (bool, error), removes bool) error {
	p = c.abs(p)
	if err := validPath(p); err != nil {
		return err
	}
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	changed, err := op(c.t.root, p)
	if err != nil || !changed {
		return err
	}
	c.t.gen++
	c.t.fire(p, removes)
	return nil
}

func (c *storeConn) Directory(p string) ([]string, error) {
	p = c.abs(p)
	if err := validPath(p); err != nil {
		return nil, err
	}
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return directory(c.t.root, c.dom, p)
}

func (c *storeConn) GetPerms(p string) ([]xen.Perm, error) {
	p = c.abs(p)
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return getPerms(c.t.root, c.dom, p)
}

func getPerms(root *node, dom xen.DomID, p string) ([]xen.Perm, error) {
	n := lookup(root, p)
	if n == nil {
		return nil, fmt.Errorf("%w: %s (ENOENT)", xen.ErrNotFound, p)
	}
	if !access(n, dom, false) {
		return nil, fmt.Errorf("%w: %s (EACCES)", xen.ErrPermission, p)
	}
	return append([]xen.Perm(nil), n.perms...), nil
}

func (c *storeConn) Watch(p, token string) (xen.Watch, error) {
	p = c.abs(p)
	w := &storeWatch{t: c.t, dom: c.dom, path: p, token: token, q: watchq.New()}
	c.t.mu.Lock()
	c.t.watches[w] = struct{}{}
	c.t.mu.Unlock()
	w.queue(xen.WatchEvent{Path: p, Token: token}) // Xen fires once at registration
	c.mu.Lock()
	c.watches = append(c.watches, w)
	c.mu.Unlock()
	return w, nil
}

func (c *storeConn) DomainPath(dom xen.DomID) (string, error) {
	return fmt.Sprintf("/local/domain/%d", dom), nil
}

// Close drops the connection's watches, as xenstored does when a
// connection goes.
func (c *storeConn) Close() error {
	c.mu.Lock()
	ws := c.watches
	c.watches = nil
	c.closed = true
	c.mu.Unlock()
	for _, w := range ws {
		_ = w.Close()
	}
	return nil
}

// storeTx is a transaction: a private snapshot and the changes made to it.
type storeTx struct {
	c     *storeConn
	root  *node
	gen   uint64
	fired []firedPath
}

type firedPath struct {
	path    string
	removed bool
}

func (c *storeConn) Transaction(fn func(xen.Tx) error) error {
	for attempt := 0; ; attempt++ {
		tx := c.begin()
		if err := fn(tx); err != nil {
			return err // aborted: the snapshot is dropped, no trace
		}
		err := tx.commit()
		if errors.Is(err, xen.ErrAgain) && attempt < 100 {
			continue // run it again on fresh state
		}
		return err
	}
}

// begin starts a transaction on a private snapshot of the tree.
func (c *storeConn) begin() *storeTx {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return &storeTx{c: c, root: c.t.root.clone(), gen: c.t.gen}
}

// commit installs the transaction's snapshot and fires its watches, or
// fails with ErrAgain (leaving no trace) if the store changed since begin.
func (tx *storeTx) commit() error {
	t := tx.c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gen != tx.gen {
		return fmt.Errorf("%w: the store changed during the transaction (EAGAIN)", xen.ErrAgain)
	}
	if len(tx.fired) == 0 {
		return nil
	}
	t.root = tx.root
	t.gen++
	for _, f := range tx.fired {
		t.fire(f.path, f.removed)
	}
	return nil
}

func (tx *storeTx) GetPerms(p string) ([]xen.Perm, error) {
	return getPerms(tx.root, tx.c.dom, tx.c.abs(p))
}

func (tx *storeTx) Read(p string) (string, error) { return read(tx.root, tx.c.dom, tx.c.abs(p)) }

func (tx *storeTx) Directory(p string) ([]string, error) {
	return directory(tx.root, tx.c.dom, tx.c.abs(p))
}

// change applies op at p in the snapshot; only a change is recorded,
// to fire its watches at commit.
func (tx *storeTx) change(p string, removed bool, op func(string) (bool, error)) error {
	p = tx.c.abs(p)
	if err := validPath(p); err != nil {
		return err
	}
	changed, err := op(p)
	if err != nil || !changed {
		return err
	}
	tx.fired = append(tx.fired, firedPath{p, removed})
	return nil
}

func (tx *storeTx) Write(p, v string) error {
	return tx.change(p, false, func(p string) (bool, error) { return true, write(tx.root, tx.c.dom, p, v, false) })
}

func (tx *storeTx) Mkdir(p string) error {
	return tx.change(p, false, func(p string) (bool, error) { return true, write(tx.root, tx.c.dom, p, "", true) })
}

func (tx *storeTx) Remove(p string) error {
	return tx.change(p, true, func(p string) (bool, error) { return remove(tx.root, tx.c.dom, p) })
}

func (tx *storeTx) SetPerms(p string, perms []xen.Perm) error {
	return tx.change(p, false, func(p string) (bool, error) { return true, setPerms(tx.root, tx.c.dom, p, perms) })
}

// fireSpecial fires a special watch path (@introduceDomain, @releaseDomain).
func (t *tree) fireSpecial(p string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for w := range t.watches {
		if w.path == p {
			w.queue(xen.WatchEvent{Path: p, Token: w.token})
		}
	}
}
