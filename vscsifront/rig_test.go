package vscsifront_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsifront"
	"github.com/xenblk/xenblk/vscsispec"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// The tests run the frontend in a guest of a simulated host against
// xenblk's own backend in dom0: a vscsibus.Runner with a small backend
// driver around vscsiback.Vhost (backDriver), LUNs served by the engine
// registry's emulation over memory disks, the vhost and its LUNs made
// by the toolstack's own functions.

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// waitFor bounds every wait: each is for something that happens within
// milliseconds.
const waitFor = 10 * time.Second

// simHost is a simulated host with one guest, and the engine registry
// of dom0's backend.
type simHost struct {
	t     testing.TB
	host  *sim.Host
	guest *sim.Domain
	reg   *scsiengine.Registry
}

func newSimHost(t testing.TB) *simHost {
	t.Helper()
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	g, err := h.NewDomain("guest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return &simHost{t: t, host: h, guest: g, reg: scsiengine.New(scsiengine.Config{Reservations: pr.NewMemoryStore(), Log: quiet})}
}

// rig is one vhost between a guest's frontend and dom0's backend.
type rig struct {
	*simHost
	tv    toolstack.Vhost
	back  *backDriver
	front *vscsifront.Vhost
}

// rigConfig shapes a rig: the backend's feature-sg-grant (0: none), the
// frontend's Config (Domain and Backend are set), the disks by p-dev,
// and, if not nil, what makes a LUN's engine (else the registry).
type rigConfig struct {
	sgGrant int
	front   vscsifront.Config
	disks   map[string]storage.Device
	engine  func(pdev string, dev storage.Device) scsiengine.Engine
}

// newRig makes a vhost on a host of its own: see simHost.vhost.
func newRig(t testing.TB, cfg rigConfig, specs ...string) *rig {
	t.Helper()
	return newSimHost(t).vhost(0, cfg, specs...)
}

// vhost makes vhost devID with a LUN per spec ("PDEV, VDEV"), each PDEV
// a disk of cfg.disks, starts both runners, and waits until the
// frontend holds every LUN.
func (h *simHost) vhost(devID uint32, cfg rigConfig, specs ...string) *rig {
	t := h.t
	t.Helper()
	r := &rig{simHost: h, tv: toolstack.Vhost{BackendDom: 0, FrontendDom: h.guest.ID(), DevID: devID}}
	var sp []vscsispec.Spec
	for _, s := range specs {
		sp = append(sp, spec(t, s))
	}
	if err := toolstack.CreateVhost(h.host.Store(), r.tv, sp...); err != nil {
		t.Fatal(err)
	}
	r.back = &backDriver{dom: h.host.Dom0(), front: h.guest.ID(), dir: r.tv.BackendPath(), sgGrant: cfg.sgGrant, disks: cfg.disks,
		reg: h.reg, engine: cfg.engine, luns: map[int]vscsiback.LUN{}}
	fc := cfg.front
	fc.Domain, fc.Backend = h.guest, 0
	if fc.Log == nil {
		fc.Log = quiet
	}
	var err error
	if r.front, err = vscsifront.New(fc); err != nil {
		t.Fatal(err)
	}
	back := &vscsibus.Runner{Store: h.host.Dom0().Store(), Self: r.tv.BackendPath(), Peer: r.tv.FrontendPath(),
		Machine: vscsibus.NewBackend(), Driver: r.back, SGGrant: cfg.sgGrant, Log: quiet}
	front := r.front.Runner(h.guest.Store(), r.tv.FrontendPath(), r.tv.BackendPath())
	stopFront := run(t, "frontend", front)
	stopBack := run(t, "backend", back)
	t.Cleanup(func() { stopFront(); stopBack() })
	for _, s := range sp {
		r.lun(s.VDev)
	}
	return r
}

// run starts a runner and returns what stops it and waits for its end.
func run(t testing.TB, what string, r *vscsibus.Runner) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Errorf("the %s runner did not end", what)
		}
	}
}

func spec(t testing.TB, s string) vscsispec.Spec {
	t.Helper()
	sp, err := vscsispec.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// lun waits until the frontend holds a LUN at a and returns it.
func (r *rig) lun(a vscsibus.VDev) *vscsifront.LUN {
	r.t.Helper()
	var l *vscsifront.LUN
	eventually.True(r.t, waitFor, "LUN "+a.String()+" added", func() bool {
		var ok bool
		l, ok = r.front.LUNAt(a.Channel, a.Target, a.LUN)
		return ok
	})
	return l
}

// device is lun's storage.Device.
func (r *rig) device(l *vscsifront.LUN) storage.Device {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	d, err := l.Device(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

func addr(s string) vscsibus.VDev {
	a, err := vscsibus.ParseVDev(strings.TrimSpace(s))
	if err != nil {
		panic(err)
	}
	return a
}

// backDriver is the backend's vscsibus.Driver: a vscsiback.Vhost on the
// ring the frontend published, its LUN table kept as the Runner says.
type backDriver struct {
	dom     xen.Domain
	front   xen.DomID
	dir     string
	sgGrant int
	disks   map[string]storage.Device
	reg     *scsiengine.Registry
	engine  func(pdev string, dev storage.Device) scsiengine.Engine

	mu   sync.Mutex
	v    *vscsiback.Vhost
	done chan error
	luns map[int]vscsiback.LUN
}

func (b *backDriver) table() []vscsiback.LUN {
	var out []vscsiback.LUN
	for _, l := range b.luns {
		out = append(out, l)
	}
	return out
}

func (b *backDriver) Connect(r vscsibus.Ring) (vscsibus.Ring, error) {
	v, err := vscsiback.Connect(vscsiback.Config{Domain: b.dom, Front: b.front, Vhost: b.dir,
		RingRef: r.Ref, Port: r.Port, ABI: r.ABI, SGGrant: b.sgGrant, Log: quiet})
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

func (b *backDriver) Attach(int) error  { return nil }
func (b *backDriver) Refresh(int) error { return nil }

func (b *backDriver) Disconnect() {
	b.mu.Lock()
	v, done := b.v, b.done
	b.v = nil
	b.mu.Unlock()
	if v != nil {
		_ = v.Close()
		<-done
	}
}

func (b *backDriver) AttachLUN(l vscsibus.LUN, done func(error)) {
	dev, ok := b.disks[l.PDev]
	if !ok {
		done(fmt.Errorf("no disk %q", l.PDev))
		return
	}
	var e scsiengine.Engine
	if b.engine != nil {
		e = b.engine(l.PDev, dev)
	} else {
		var err error
		if e, _, err = b.reg.Open(scsiengine.Unit{Name: b.dir, ID: l.PDev}, dev); err != nil {
			done(err)
			return
		}
	}
	b.mu.Lock()
	b.luns[l.Index] = vscsiback.LUN{Channel: l.VDev.Channel, Target: l.VDev.Target, LUN: l.VDev.LUN, Engine: e}
	if b.v != nil {
		b.v.SetLUNs(b.table())
	}
	b.mu.Unlock()
	done(nil)
}

func (b *backDriver) DetachLUN(n int) {
	b.mu.Lock()
	delete(b.luns, n)
	if b.v != nil {
		b.v.SetLUNs(b.table())
	}
	b.mu.Unlock()
}

func (b *backDriver) Remove() {
	b.Disconnect()
	b.mu.Lock()
	clear(b.luns)
	b.mu.Unlock()
}

// memDisks is one zeroed memory disk of size bytes per p-dev name.
func memDisks(size int64, names ...string) map[string]storage.Device {
	m := map[string]storage.Device{}
	for _, n := range names {
		m[n] = storage.NewMemory(size)
	}
	return m
}
