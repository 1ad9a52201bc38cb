// Package vscsitest is a vscsi backend for tests that choose each LUN's
// engine themselves: the vscsiback vhost on the ring a frontend
// publishes, driven by a vscsibus.Runner, with no opener and no
// registry between a LUN's p-dev and what serves it.
package vscsitest

import (
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/xen"
)

// Backend is the backend's vscsibus.Driver of one vhost: a
// vscsiback.Vhost on the ring the frontend published, its LUN table
// kept as the Runner says. Build it with a struct literal; its methods
// are safe for concurrent use.
type Backend struct {
	Domain  xen.Domain // the backend's own
	Front   xen.DomID
	Dir     string // the vhost's backend directory
	SGGrant int    // feature-sg-grant offered (0: none)
	// Engine is what serves a LUN's p-dev; an error refuses the LUN.
	Engine func(pdev string) (scsiengine.Engine, error)
	Log    *slog.Logger // nil: discard

	mu   sync.Mutex
	v    *vscsiback.Vhost
	done chan error
	luns map[int]vscsiback.LUN
}

func (b *Backend) log() *slog.Logger {
	if b.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return b.Log
}

// table is the LUN table; b.mu held.
func (b *Backend) table() []vscsiback.LUN {
	var out []vscsiback.LUN
	for _, l := range b.luns {
		out = append(out, l)
	}
	return out
}

func (b *Backend) Connect(r vscsibus.Ring) (vscsibus.Ring, error) {
	v, err := vscsiback.Connect(vscsiback.Config{Domain: b.Domain, Front: b.Front, Vhost: b.Dir,
		RingRef: r.Ref, Port: r.Port, ABI: r.ABI, SGGrant: b.SGGrant, Log: b.log()})
	if err != nil {
		return r, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.v, b.done = v, make(chan error, 1)
	v.SetLUNs(b.table())
	go func(done chan error) { done <- v.Run() }(b.done)
	return r, nil
}

func (b *Backend) Attach(int) error  { return nil }
func (b *Backend) Refresh(int) error { return nil }

func (b *Backend) Disconnect() {
	b.mu.Lock()
	v, done := b.v, b.done
	b.v = nil
	b.mu.Unlock()
	if v != nil {
		_ = v.Close()
		<-done
	}
}

func (b *Backend) AttachLUN(l vscsibus.LUN, done func(error)) {
	e, err := b.Engine(l.PDev)
	if err != nil {
		done(fmt.Errorf("p-dev %s: %w", l.PDev, err))
		return
	}
	b.mu.Lock()
	if b.luns == nil {
		b.luns = map[int]vscsiback.LUN{}
	}
	b.luns[l.Index] = vscsiback.LUN{Channel: l.VDev.Channel, Target: l.VDev.Target, LUN: l.VDev.LUN, Engine: e}
	if b.v != nil {
		b.v.SetLUNs(b.table())
	}
	b.mu.Unlock()
	done(nil)
}

func (b *Backend) DetachLUN(n int) {
	b.mu.Lock()
	delete(b.luns, n)
	if b.v != nil {
		b.v.SetLUNs(b.table())
	}
	b.mu.Unlock()
}

func (b *Backend) Remove() {
	b.Disconnect()
	b.mu.Lock()
	clear(b.luns)
	b.mu.Unlock()
}
