package vscsifront_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/vscsitest"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsifront"
	"github.com/xenblk/xenblk/vscsispec"
	"github.com/xenblk/xenblk/xen/sim"
)

// The tests run the frontend in a guest of a simulated host against
// xenblk's own backend in dom0: a vscsibus.Runner with a small backend
// driver around vscsiback.Vhost (vscsitest.Backend), LUNs served by the engine
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
	back  *vscsitest.Backend
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
	r.back = &vscsitest.Backend{Domain: h.host.Dom0(), Front: h.guest.ID(), Dir: r.tv.BackendPath(), SGGrant: cfg.sgGrant,
		Engine: engineFor(r.tv.BackendPath(), cfg.disks, h.reg, cfg.engine), Log: quiet}
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

// engineFor is what serves a p-dev of disks: engine's, or else the
// registry's engine over the disk.
func engineFor(dir string, disks map[string]storage.Device, reg *scsiengine.Registry,
	engine func(pdev string, dev storage.Device) scsiengine.Engine) func(string) (scsiengine.Engine, error) {
	return func(pdev string) (scsiengine.Engine, error) {
		dev, ok := disks[pdev]
		if !ok {
			return nil, fmt.Errorf("no disk %q", pdev)
		}
		if engine != nil {
			return engine(pdev, dev), nil
		}
		e, _, err := reg.Open(scsiengine.Unit{Name: dir, ID: pdev}, dev)
		return e, err
	}
}

// memDisks is one zeroed memory disk of size bytes per p-dev name.
func memDisks(size int64, names ...string) map[string]storage.Device {
	m := map[string]storage.Device{}
	for _, n := range names {
		m[n] = storage.NewMemory(size)
	}
	return m
}
