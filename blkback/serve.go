package blkback

import (
	"context"
	"errors"
	"fmt"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// Opener opens the storage for a vbd, given its backend directory (where
// params, mode, type and the spec are). It is how a Server learns what to
// serve; the command layer supplies it.
type Opener func(store xen.Store, dir string) (storage.Device, error)

// Server is the backend daemon: it watches its domain's backend type
// directory and serves every vbd that appears there, many at once, each
// in its own goroutine, each failing alone.
type Server struct {
	Config      Config
	BackendType string // directory under /local/domain/<self>/backend
	Open        Opener

	devices xenbus.DeviceTable[VBD]
	// crashed makes crash idempotent: a caller racing the first waits
	// until it has stopped every device.
	crashed xenbus.Crash
}

// Serve runs until ctx is cancelled; then it closes every device cleanly.
// xenbus.Devices watches the backend type directory and says which vbd
// directories to look at (consider); each vbd runs on its own goroutine.
func (s *Server) Serve(ctx context.Context) error {
	s.Config.defaults()
	st := s.Config.Domain.Store()
	s.devices.Reset()
	crashed := s.crashed.Chan()
	devs := &xenbus.Devices{
		Store: st, Name: "blkback", Stop: crashed,
		Root:   fmt.Sprintf("/local/domain/%d/backend/%s", s.Config.Domain.ID(), s.BackendType),
		Failed: s.devices.Failed, Log: s.Config.Log,
		Start: func(dir string) (func(), bool) {
			d, stop := s.consider(st, dir, crashed)
			if d == nil {
				return nil, stop
			}
			return func() {
				if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
					s.Config.Log.Error("device stopped", "vbd", dir, "err", err)
				}
				s.devices.Remove(dir)
			}, false
		},
	}
	return devs.Serve(ctx)
}

// consider looks at one vbd directory (xenbus.DeviceTable.Consider): a
// vbd new and online is opened and returned, to be run. stop reports
// that the server crashed meanwhile: a crashed process starts nothing.
func (s *Server) consider(st xen.Store, dir string, crashed chan struct{}) (d *VBD, stop bool) {
	var dev storage.Device
	d, stop = s.devices.Consider(st, dir, crashed, func() (*VBD, error) {
		var err error
		dev, err = s.Open(st, dir)
		if err == nil && dev == nil {
			err = errors.New("no disk for this vbd")
		}
		if err != nil {
			s.Config.Log.Error("cannot open the disk; the device stays unconnected", "vbd", dir, "err", err)
			return nil, err
		}
		d, err := NewVBD(s.Config, dir, dev)
		if err != nil {
			_ = dev.Close()
			s.Config.Log.Error("bad vbd; the device stays unconnected", "vbd", dir, "err", err)
			return nil, err
		}
		return d, nil
	})
	if stop {
		_ = dev.Close()
		return nil, true
	}
	return d, false
}

// crash stops every device as a killed backend process would (see
// VBD.crash), and Serve returns. Crashing again does nothing more. It
// is a fault-injection hook for tests (internal/faultinject.CrashBackend),
// not an API: a real backend ends by its context.
func (s *Server) crash() {
	s.crashed.Do(func() {
		for _, d := range s.devices.Running() {
			d.crash()
		}
	})
}

// VBDs returns the backend directories being served.
func (s *Server) VBDs() []string { return s.devices.Dirs() }

// VBD returns the running VBD for a backend directory.
func (s *Server) VBD(dir string) *VBD { return s.devices.Get(dir) }
