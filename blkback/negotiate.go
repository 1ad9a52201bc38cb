package blkback

import (
	"errors"
	"fmt"
	"strings"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// The pure half of connecting: what the frontend published, read through a
// function, against what this backend offered, gives the connection's
// layout (ABI, rings, features) or the reason it cannot be served.
// VBD.connect then carries it out (maps, binds, starts the queues).
// Every answer is pinned in testdata/negotiate.txt.

// offer is what Publish advertised: the backend's side of the negotiation.
type offer struct {
	maxQueues        int  // multi-queue-max-queues
	maxRingPageOrder int  // max-ring-page-order; 0: single-page rings
	persistent       bool // feature-persistent
	extraRequest     bool // feature-extra-request (the SCSI extension)
}

// offer is the VBD's side, from its configuration.
func (d *VBD) offer() offer {
	return offer{
		maxQueues:        d.cfg.MaxQueues,
		maxRingPageOrder: max(d.cfg.MaxRingPageOrder, 0),
		persistent:       d.cfg.PersistentGrants > 0 && !d.grantCopy, // nothing is kept mapped
		extraRequest:     d.scsi != nil,
	}
}

// connection is what the frontend asked for within the offer.
type connection struct {
	abi          blkif.ABI
	order        int  // ring-page-order: each ring is 1<<order pages
	persistent   bool // both ends speak feature-persistent
	extraRequest bool // the frontend asked for the SCSI extension
	rings        []ringSpec
}

// ringSpec is one queue's ring as the frontend published it.
type ringSpec struct {
	dir  string // the keys' directory, relative to the frontend's ("" or queue-N)
	refs []xen.GrantRef
	port xen.Port
}

// negotiate reads the frontend's keys with read, which takes a path
// relative to the frontend's directory and reports an absent key as
// xen.ErrNotFound (a key's default then applies: xenbus.ReadNumber). It
// maps nothing and writes nothing.
func negotiate(o offer, read func(key string) (string, error)) (connection, error) {
	var c connection
	proto, err := read(blkif.KeyProtocol)
	if err != nil && !errors.Is(err, xen.ErrNotFound) {
		return c, err
	}
	if c.abi, err = blkif.ParseProtocol(strings.TrimSpace(proto)); err != nil {
		return c, err
	}
	num := func(key string, def int) (int, error) { return xenbus.ReadNumber(xenbus.ReaderFunc(read), key, def) }
	nq, err := num(blkif.KeyNumQueues, 1)
	if err != nil {
		return c, err
	}
	if nq < 1 || nq > o.maxQueues {
		return c, fmt.Errorf("frontend asks for %d queues; this backend offers 1 to %d", nq, o.maxQueues)
	}
	if o.persistent {
		p, err := num(blkif.KeyFeaturePersistent, 0)
		if err != nil {
			return c, err
		}
		c.persistent = p == 1
	}
	if o.extraRequest {
		v, err := num(blkif.KeyFeatureExtraRequest, 0)
		if err != nil {
			return c, err
		}
		if v < 0 || v > blkif.ExtraRequestVersion {
			return c, fmt.Errorf("frontend asks for extra-request version %d; this backend speaks %d", v, blkif.ExtraRequestVersion)
		}
		c.extraRequest = v >= 1
	}
	if c.order, err = num(blkif.KeyRingPageOrder, 0); err != nil {
		return c, err
	}
	if c.order < 0 || c.order > o.maxRingPageOrder {
		return c, fmt.Errorf("ring-page-order %d beyond max-ring-page-order %d", c.order, o.maxRingPageOrder)
	}
	for i := 0; i < nq; i++ {
		r := ringSpec{refs: make([]xen.GrantRef, 1<<c.order)}
		if nq > 1 {
			r.dir = fmt.Sprintf("queue-%d/", i)
		}
		if err := r.read(num, c.order); err != nil {
			return c, fmt.Errorf("queue %d: %w", i, err)
		}
		c.rings = append(c.rings, r)
	}
	return c, nil
}

// read fills in the ring's grant references and event channel.
func (r *ringSpec) read(num func(string, int) (int, error), order int) error {
	for k := range r.refs {
		key := blkif.KeyRingRef
		if order > 0 {
			key = fmt.Sprintf("%s%d", blkif.KeyRingRef, k)
		}
		v, err := num(r.dir+key, -1)
		if err != nil {
			return err
		}
		if v < 0 {
			return fmt.Errorf("%s%s missing", r.dir, key)
		}
		r.refs[k] = xen.GrantRef(v)
	}
	port, err := num(r.dir+blkif.KeyEventChannel, -1)
	if err != nil {
		return err
	}
	if port < 0 {
		return fmt.Errorf("%s%s missing", r.dir, blkif.KeyEventChannel)
	}
	r.port = xen.Port(port)
	return nil
}
