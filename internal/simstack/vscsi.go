package simstack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsifront"
	"github.com/xenblk/xenblk/vscsispec"
	"github.com/xenblk/xenblk/xen/sim"
)

// The PVSCSI variant of the recipe: a vscsiback.Server in dom0 serving
// backend/vscsi, vhosts made by the toolstack's own CreateVhost, and a
// guest's vscsifront driven by its vscsibus.Runner.

// ServeVscsi starts srv (its Domain dom0 when nil) on its own goroutine;
// the stack stops it at Close, after the frontends.
func (s *Stack) ServeVscsi(srv *vscsiback.Server) {
	if srv.Domain == nil {
		srv.Domain = s.Host.Dom0()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	s.mu.Lock()
	s.vscsiStops = append(s.vscsiStops, func() error { cancel(); return <-done })
	s.mu.Unlock()
}

// VhostGuest is a guest's vhost and its frontend, holding every LUN the
// vhost was made with.
type VhostGuest struct {
	Domain *sim.Domain
	Vhost  toolstack.Vhost
	Front  *vscsifront.Vhost
	LUNs   []*vscsifront.LUN // in the order of the specs
}

// AttachVhost creates a vhost for d (served by dom0) with a LUN per spec
// as libxl would, starts its frontend with cfg (Domain and Backend are
// set here; cfg.OnLUNs is kept), and waits, within the stack's open
// timeout, until the frontend holds every LUN. The stack ends the
// frontend at Close.
func (s *Stack) AttachVhost(ctx context.Context, d *sim.Domain, cfg vscsifront.Config, specs ...vscsispec.Spec) (*VhostGuest, error) {
	if len(specs) == 0 {
		return nil, errors.New("simstack: a vhost needs a LUN")
	}
	hosts, err := toolstack.Vhosts(s.Host.Store(), 0, d.ID())
	if err != nil {
		return nil, err
	}
	v := toolstack.Vhost{BackendDom: 0, FrontendDom: d.ID(), DevID: uint32(len(hosts))}
	if err := toolstack.CreateVhost(s.Host.Store(), v, specs...); err != nil {
		return nil, err
	}
	changed := make(chan struct{}, 1)
	onLUNs := cfg.OnLUNs
	cfg.Domain, cfg.Backend = d, 0
	cfg.OnLUNs = func() {
		select {
		case changed <- struct{}{}:
		default:
		}
		if onLUNs != nil {
			onLUNs()
		}
	}
	front, err := vscsifront.New(cfg)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- front.Runner(d.Store(), v.FrontendPath(), v.BackendPath()).Run(rctx) }()
	stop := func() error {
		cancel()
		err := <-done
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	s.mu.Lock()
	s.vhostStops = append(s.vhostStops, stop)
	s.mu.Unlock()
	g := &VhostGuest{Domain: d, Vhost: v, Front: front}
	wait := time.NewTimer(s.openTimeout)
	defer wait.Stop()
	for {
		g.LUNs = g.LUNs[:0]
		for _, sp := range specs {
			if l, ok := front.LUNAt(sp.VDev.Channel, sp.VDev.Target, sp.VDev.LUN); ok {
				g.LUNs = append(g.LUNs, l)
			}
		}
		if len(g.LUNs) == len(specs) {
			return g, nil
		}
		select {
		case <-changed:
		case err := <-done:
			done <- err // for stop
			return nil, fmt.Errorf("simstack: vhost %s ended before its LUNs came: %v", v.FrontendPath(), err)
		case <-wait.C:
			return nil, fmt.Errorf("simstack: vhost %s: %d of %d LUNs after %v", v.FrontendPath(), len(g.LUNs), len(specs), s.openTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ServingDisk is a vscsiback.Server's OpenDisk for a process that holds
// the disk at path open already (and serves it over blkif too): a LUN
// whose p-dev is path gets dev, which the LUN's end leaves open; any
// other p-dev is refused.
func ServingDisk(path string, dev storage.Device) func(vbd.Disk) (storage.Device, error) {
	return func(d vbd.Disk) (storage.Device, error) {
		if d.Path != path {
			return nil, fmt.Errorf("this stack serves %s alone", path)
		}
		return keptOpen{dev}, nil
	}
}

// keptOpen is a device whose Close leaves it open: its owner closes it.
type keptOpen struct{ storage.Device }

func (keptOpen) Close() error { return nil }

// Dual is one disk served over both transports on one stack: a guest's
// blkfront disk and a vhost of the same guest whose LUN 0:0:0:0 is the
// disk, one logical unit.
type Dual struct {
	Guest   *Guest
	Vhost   *VhostGuest
	LUN     storage.Device // the vhost's LUN as a block device
	Blkback *Backend
	Vscsi   *vscsiback.Server
}

// ServeDual serves dev, known as path, with blkback (cfg) and with vsrv
// (its OpenDisk set here to dev alone), and attaches a guest name to
// both: xvda read-write over blkif (fcfg), and a vhost (vcfg) with the
// LUN.
func (s *Stack) ServeDual(ctx context.Context, name, path string, dev storage.Device, cfg blkback.Config, vsrv *vscsiback.Server, fcfg blkfront.Config, vcfg vscsifront.Config) (*Dual, error) {
	d := &Dual{Blkback: s.Serve(cfg, Serving(dev)), Vscsi: vsrv}
	vsrv.OpenDisk = ServingDisk(path, dev)
	s.ServeVscsi(vsrv)
	var err error
	if d.Guest, err = s.AttachGuest(ctx, name, "vdev=xvda, access=rw, target="+path, fcfg); err != nil {
		return nil, fmt.Errorf("simstack: blkif frontend: %w", err)
	}
	spec, err := vscsispec.Parse(path + ", 0:0:0:0")
	if err != nil {
		return nil, err
	}
	if d.Vhost, err = s.AttachVhost(ctx, d.Guest.Domain, vcfg, spec); err != nil {
		return nil, fmt.Errorf("simstack: vscsi frontend: %w", err)
	}
	if d.LUN, err = d.Vhost.LUNs[0].Device(ctx); err != nil {
		return nil, fmt.Errorf("simstack: vscsi LUN: %w", err)
	}
	return d, nil
}
