// Package simstack assembles the whole stack on one machine: a simulated
// Xen host, blkback serving in dom0, the toolstack's vbd nodes for a
// guest, and the guest's blkfront. It is the one recipe that `xenblk
// sim`, the benchmarks and the end-to-end tests build on; each asks for
// the pieces it varies (the device, the backend's and frontend's
// configurations, the host's grant tables, a backend in another process)
// and gets the rest as every other user does.
//
// A Stack owns what it started: Close closes the frontends it opened,
// then stops the backends (blkback closes the devices it opened), in that
// order, so no frontend waits on a backend that is gone.
package simstack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// DefaultOpenTimeout bounds a frontend's handshake (Stack.Open) unless
// Options.OpenTimeout says otherwise.
const DefaultOpenTimeout = 10 * time.Second

// Opener opens the device behind the vbd whose backend directory is dir
// (blkback.Server.Open).
type Opener = func(st xen.Store, dir string) (storage.Device, error)

// Serving is the Opener that hands out dev for every vbd.
func Serving(dev storage.Device) Opener {
	return func(xen.Store, string) (storage.Device, error) { return dev, nil }
}

// Options say how a stack differs from the default one; the zero value
// is the default.
type Options struct {
	// Host configures the simulated host (grant-table size).
	Host []sim.HostOption
	// Backend is blkback's configuration for New's backend; its Domain
	// is the host's dom0 when nil.
	Backend blkback.Config
	// OpenTimeout bounds each frontend's handshake (default
	// DefaultOpenTimeout).
	OpenTimeout time.Duration
}

// Stack is one simulated host with what was started on it.
type Stack struct {
	Host *sim.Host
	// Backend is the first backend started in this process (New's);
	// nil for a host without one or with its backend in another process.
	Backend *Backend
	// BackendPID is the backend process's id (NewCrossProcess), 0 when
	// blkback runs in this process.
	BackendPID int

	openTimeout time.Duration

	mu       sync.Mutex
	disks    []*blkfront.Disk
	backends []*Backend
	// The PVSCSI variant's (vscsi.go): each ends a vhost's frontend, or
	// stops a vscsiback server, and returns how it ended.
	vhostStops, vscsiStops []func() error
	// stopProcess ends the backend process and waits for it (nil: none).
	stopProcess func()
}

// NewHost starts a host with no backend and no guest.
func NewHost(o Options) (*Stack, error) {
	h, err := sim.NewHost(o.Host...)
	if err != nil {
		return nil, err
	}
	return &Stack{Host: h, openTimeout: o.openTimeout()}, nil
}

func (o Options) openTimeout() time.Duration {
	if o.OpenTimeout > 0 {
		return o.OpenTimeout
	}
	return DefaultOpenTimeout
}

// New starts a host and a blkback serving dev for every vbd, configured
// by o.Backend.
func New(dev storage.Device, o Options) (*Stack, error) {
	s, err := NewHost(o)
	if err != nil {
		return nil, err
	}
	s.Serve(o.Backend, Serving(dev))
	return s, nil
}

// Serve starts a blkback server in dom0 (unless cfg names another
// domain) with the toolstack's backend type, opening devices with open.
// The stack stops it at Close; Backend.Stop stops it sooner.
func (s *Stack) Serve(cfg blkback.Config, open Opener) *Backend {
	if cfg.Domain == nil {
		cfg.Domain = s.Host.Dom0()
	}
	b := Serve(&blkback.Server{Config: cfg, BackendType: toolstack.DefaultBackendType, Open: open})
	s.mu.Lock()
	if s.Backend == nil {
		s.Backend = b
	}
	s.backends = append(s.backends, b)
	s.mu.Unlock()
	return b
}

// Guest is a guest domain with one vbd; Disk is its frontend once opened.
type Guest struct {
	Domain *sim.Domain
	VBD    toolstack.VBD
	Disk   *blkfront.Disk
}

// NewGuest starts a guest domain named name and creates its vbd from
// spec (served by dom0) as libxl does; no frontend opens it yet.
func (s *Stack) NewGuest(name string, spec diskspec.Spec) (*Guest, error) {
	d, err := s.Host.NewDomain(name)
	if err != nil {
		return nil, err
	}
	return s.AddVBD(d, spec)
}

// AddVBD creates a vbd from spec for the existing domain d (served by
// dom0) as libxl does; no frontend opens it yet.
func (s *Stack) AddVBD(d *sim.Domain, spec diskspec.Spec) (*Guest, error) {
	vbd, err := toolstack.NewVBD(0, d.ID(), spec)
	if err != nil {
		return nil, err
	}
	if err := toolstack.Create(s.Host.Store(), vbd); err != nil {
		return nil, err
	}
	return &Guest{Domain: d, VBD: vbd}, nil
}

// Open opens g's frontend with cfg (its Domain and Dir are g's), within
// the stack's open timeout; the stack closes it at Close.
func (s *Stack) Open(ctx context.Context, g *Guest, cfg blkfront.Config) error {
	cfg.Domain, cfg.Dir = g.Domain, g.VBD.FrontendPath()
	octx, cancel := context.WithTimeout(ctx, s.openTimeout)
	defer cancel()
	d, err := blkfront.Open(octx, cfg)
	if err != nil {
		return err
	}
	g.Disk = d
	s.mu.Lock()
	s.disks = append(s.disks, d)
	s.mu.Unlock()
	return nil
}

// AttachGuest is NewGuest and Open: a guest named name whose frontend
// is connected to the vbd spec (xl's disk syntax) describes.
func (s *Stack) AttachGuest(ctx context.Context, name, spec string, cfg blkfront.Config) (*Guest, error) {
	sp, err := diskspec.Parse(spec)
	if err != nil {
		return nil, err
	}
	g, err := s.NewGuest(name, sp)
	if err != nil {
		return nil, err
	}
	if err := s.Open(ctx, g, cfg); err != nil {
		return nil, err
	}
	return g, nil
}

// Close closes every frontend the stack opened, then stops every
// backend it started, and returns what the backends' Serve returned.
// Closing again does nothing more.
func (s *Stack) Close() error {
	s.mu.Lock()
	disks, backends, stop := s.disks, s.backends, s.stopProcess
	vhosts, vscsi := s.vhostStops, s.vscsiStops
	s.disks, s.backends, s.stopProcess = nil, nil, nil
	s.vhostStops, s.vscsiStops = nil, nil
	s.mu.Unlock()
	for _, d := range disks {
		d.Close()
	}
	var errs []error
	for _, v := range vhosts {
		errs = append(errs, v())
	}
	for _, b := range backends {
		errs = append(errs, b.Stop())
	}
	for _, v := range vscsi {
		errs = append(errs, v())
	}
	if stop != nil {
		stop()
	}
	return errors.Join(errs...)
}

// Backend is a blkback server serving on its own goroutine.
type Backend struct {
	Server *blkback.Server
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Serve's, set before done closes
}

// Serve runs srv.Serve on its own goroutine until Stop (or a crash ends
// it).
func Serve(srv *blkback.Server) *Backend {
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{Server: srv, cancel: cancel, done: make(chan struct{})}
	go func() {
		b.err = srv.Serve(ctx)
		close(b.done)
	}()
	return b
}

// Stop ends the server's Serve and waits for it to return (its devices
// stopped and closed); it returns what Serve returned. Stopping again
// returns the same.
func (b *Backend) Stop() error {
	b.cancel()
	<-b.done
	return b.err
}

// Done is closed once Serve has returned.
func (b *Backend) Done() <-chan struct{} { return b.done }

// TB is what ForTest needs of a test; testing.TB has it.
type TB interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

// ForTest is New for a test: it fails tb if the stack does not start and
// closes the stack at tb's cleanup. A nil dev starts the host alone
// (NewHost).
func ForTest(tb TB, dev storage.Device, o Options) *Stack {
	tb.Helper()
	var s *Stack
	var err error
	if dev == nil {
		s, err = NewHost(o)
	} else {
		s, err = New(dev, o)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// AttachGuests is AttachGuest for each of names, with one spec and one
// frontend configuration; it returns their frontends in that order.
func (s *Stack) AttachGuests(ctx context.Context, spec string, cfg blkfront.Config, names ...string) ([]*blkfront.Disk, error) {
	disks := make([]*blkfront.Disk, 0, len(names))
	for _, name := range names {
		g, err := s.AttachGuest(ctx, name, spec, cfg)
		if err != nil {
			return nil, fmt.Errorf("guest %s: %w", name, err)
		}
		disks = append(disks, g.Disk)
	}
	return disks, nil
}

// SharedSCSI is a backend configuration for one disk shared by a
// cluster's nodes: every vbd gets the SCSI extension emulated over its
// device under one identity and one reservation unit (kept in memory), so
// each node sees the others' registrations and reservations.
func SharedSCSI(identity string) (blkback.Config, error) {
	unit, err := pr.Open(pr.NewMemoryStore(), identity, nil)
	if err != nil {
		return blkback.Config{}, err
	}
	return blkback.Config{SCSI: func(_ string, dev storage.Device) (blkback.SCSIExecutor, error) {
		return emulate.New(dev, emulate.Config{Identity: identity, Reservations: unit}), nil
	}}, nil
}
