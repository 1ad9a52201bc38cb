package vscsiback

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"

	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// vhostDriver is one vhost of a Server: the vscsibus.Driver its runner
// calls, holding the vhost's LUNs (which outlive a connection: a frontend
// that reconnects finds them attached) and its connection, a Vhost.
//
// The runner calls it from one goroutine; a LUN's open runs on its own
// (an NBD connect may take long) and adds the LUN under mu.
type vhostDriver struct {
	s        *Server
	dir      string
	frontDir string
	front    xen.DomID
	log      *slog.Logger
	// stats outlive connections, as the LUNs do.
	stats counters

	mu sync.Mutex
	// v is the connection, nil while there is none; serving is nil
	// until its ring is served (serve), then closed when its Run has
	// returned.
	v       *Vhost
	serving chan struct{}
	luns    map[int]*openLUN // attached, by dev-N index
	// removed: Remove was called; an open finishing later closes what it
	// opened.
	removed bool
}

// run drives the vhost until it is removed, ctx ends (then the vhost
// closes with its frontend, within the server's Grace) or the server
// crashes (then it stops writing nothing).
func (d *vhostDriver) run(ctx context.Context, crashed chan struct{}) {
	r := &vscsibus.Runner{
		Store: d.s.Domain.Store(), Self: d.dir, Peer: d.frontDir,
		Machine: vscsibus.NewBackend(), Driver: d, SGGrant: d.s.sgGrant(),
		Abandon: crashed, Grace: d.s.Grace, Log: d.s.Log,
		OnStep: func(self, _ xenbus.State) {
			if self == xenbus.Connected {
				d.serve()
			}
		},
	}
	err := r.Run(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		d.log.Error("vhost stopped", "err", err)
	}
	// Abandoned (a crash), or ended by the store: what the vhost holds
	// is let go of; after a Remove this does nothing more.
	d.Remove()
}

// Connect implements vscsibus.Driver: map the ring the frontend
// published and bind its channel, with the LUNs attached as its table;
// the ring is served from serve on.
func (d *vhostDriver) Connect(ring vscsibus.Ring) (vscsibus.Ring, error) {
	d.Disconnect() // the machine disconnects first; never leak a ring
	v, err := Connect(Config{
		Domain: d.s.Domain, Front: d.front, Vhost: d.dir,
		RingRef: ring.Ref, Port: ring.Port, ABI: ring.ABI,
		SGGrant: d.s.sgGrant(), Poll: d.s.Poll, Log: d.s.Log,
		stats: &d.stats,
	})
	if err != nil {
		return ring, err
	}
	d.mu.Lock()
	d.v, d.serving = v, nil
	v.SetLUNs(d.table())
	d.mu.Unlock()
	return ring, nil
}

// serve starts serving the connection's ring, once: the runner calls it
// when the machine has written Connected, which it does only after every
// LUN of its connect pass has been opened. Until then requests wait on
// the ring: a restarted backend maps the ring of a frontend that never
// stopped (Linux's scsifront does not notice a backend's death), and a
// request it took before reopening the LUNs found attached would be
// answered NO_CONNECT, which the guest takes as the disk gone.
func (d *vhostDriver) serve() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.v == nil || d.serving != nil {
		return
	}
	v, serving := d.v, make(chan struct{})
	d.serving = serving
	go func() {
		defer close(serving)
		if err := v.Run(); err != nil {
			// The frontend broke its ring: this vhost stops serving until
			// the frontend connects again; nothing else is affected.
			d.log.Error("vhost ring stopped", "err", err)
		}
	}()
}

// Attach and Refresh are a frontend's.
func (d *vhostDriver) Attach(int) error  { return nil }
func (d *vhostDriver) Refresh(int) error { return nil }

// Disconnect implements vscsibus.Driver: stop serving the ring and let
// go of it; the LUNs stay attached.
func (d *vhostDriver) Disconnect() {
	d.mu.Lock()
	v, serving := d.v, d.serving
	d.v, d.serving = nil, nil
	d.mu.Unlock()
	if v != nil {
		_ = v.Close()
		if serving != nil {
			<-serving
		}
	}
}

// AttachLUN implements vscsibus.Driver: open what p-dev names on a
// goroutine of its own and serve it at its v-dev.
func (d *vhostDriver) AttachLUN(l vscsibus.LUN, done func(error)) {
	go func() {
		u, err := d.s.openLUN(d.dir, l)
		d.mu.Lock()
		if d.removed {
			d.mu.Unlock()
			if u != nil {
				u.close()
			}
			done(errors.New("vhost removed"))
			return
		}
		if err == nil {
			if old := d.luns[l.Index]; old != nil {
				// The machine detaches a LUN before it attaches another
				// at its index; never leak one anyway.
				defer old.close()
			}
			d.luns[l.Index] = u
			d.push()
		}
		d.mu.Unlock()
		if err != nil {
			d.log.Warn("LUN not attached", "lun", l.Index, "p-dev", l.PDev, "err", err)
			reportLUN(d.s.Domain.Store(), d.dir, l.Index, err.Error())
		}
		done(err)
	}()
}

// DetachLUN implements vscsibus.Driver: no request reaches the LUN once
// the table without it is in place (SetLUNs waits for the pass that may
// still use it), then it is closed.
func (d *vhostDriver) DetachLUN(index int) {
	d.mu.Lock()
	u := d.luns[index]
	delete(d.luns, index)
	d.push()
	d.mu.Unlock()
	if u != nil {
		u.close()
	}
}

// Remove implements vscsibus.Driver: disconnect and close every LUN.
// Calling it again does nothing more.
func (d *vhostDriver) Remove() {
	d.Disconnect()
	d.mu.Lock()
	d.removed = true
	luns := d.luns
	d.luns = map[int]*openLUN{}
	d.mu.Unlock()
	for _, u := range luns {
		u.close()
	}
}

// push gives the connection, if any, the LUN table as it stands. Called
// with mu held.
func (d *vhostDriver) push() {
	if d.v != nil {
		d.v.SetLUNs(d.table())
	}
}

// table is the LUN table of the LUNs attached, by index. Called with mu
// held.
func (d *vhostDriver) table() []LUN {
	idx := make([]int, 0, len(d.luns))
	for n := range d.luns {
		idx = append(idx, n)
	}
	slices.Sort(idx)
	out := make([]LUN, 0, len(idx))
	for _, n := range idx {
		u := d.luns[n]
		out = append(out, LUN{Channel: u.addr.Channel, Target: u.addr.Target, LUN: u.addr.LUN, Engine: u.engine, Nexus: u.nexus})
	}
	return out
}
