package blkback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

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

	mu      sync.Mutex
	devices map[string]*VBD
	crashed chan struct{}
	once    sync.Once
	// crashOnce makes crash idempotent: crashed is closed once, and a
	// caller racing the first waits until it has stopped every device.
	crashOnce sync.Once
}

func (s *Server) crashChan() chan struct{} {
	s.once.Do(func() { s.crashed = make(chan struct{}) })
	return s.crashed
}

// Serve runs until ctx is cancelled; then it closes every device cleanly.
// xenbus.Devices watches the backend type directory and says which vbd
// directories to look at (consider); each vbd runs on its own goroutine.
func (s *Server) Serve(ctx context.Context) error {
	s.Config.defaults()
	st := s.Config.Domain.Store()
	s.mu.Lock()
	s.devices = map[string]*VBD{}
	s.mu.Unlock()
	crashed := s.crashChan()
	devs := &xenbus.Devices{
		Store: st, Name: "blkback", Stop: crashed,
		Root:   fmt.Sprintf("/local/domain/%d/backend/%s", s.Config.Domain.ID(), s.BackendType),
		Failed: s.failed,
		Start: func(dir string) (func(), bool) {
			d, stop := s.consider(st, dir, crashed)
			if d == nil {
				return nil, stop
			}
			return func() {
				if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
					s.Config.Log.Error("device stopped", "vbd", dir, "err", err)
				}
				s.mu.Lock()
				delete(s.devices, dir)
				s.mu.Unlock()
			}, false
		},
	}
	return devs.Serve(ctx)
}

// failed lists the vbds under prefix that failed to start.
func (s *Server) failed(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var dirs []string
	for dir, d := range s.devices {
		if d == nil && strings.HasPrefix(dir, prefix) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// consider looks at one vbd directory. A vbd being served is left to its
// runner. A vbd that failed is forgotten once its directory is gone (so
// that a new one there is tried), and not tried again before. Any other
// is opened and returned, to be run, once the toolstack has written its
// whole directory (state is written last) and it is online. stop reports
// that the server crashed meanwhile: a crashed process starts nothing.
func (s *Server) consider(st xen.Store, dir string, crashed chan struct{}) (d *VBD, stop bool) {
	s.mu.Lock()
	d, known := s.devices[dir]
	s.mu.Unlock()
	if known {
		if d == nil {
			if _, err := st.Read(dir + "/state"); errors.Is(err, xen.ErrNotFound) {
				s.mu.Lock()
				delete(s.devices, dir)
				s.mu.Unlock()
			}
		}
		return nil, false
	}
	if _, err := st.Read(dir + "/state"); err != nil {
		return nil, false
	}
	if v, err := st.Read(dir + "/online"); err != nil || v != "1" {
		return nil, false
	}
	dev, err := s.Open(st, dir)
	if err == nil && dev == nil {
		err = errors.New("no disk for this vbd")
	}
	if err != nil {
		s.Config.Log.Error("cannot open the disk; the device stays unconnected", "vbd", dir, "err", err)
		_ = st.Write(dir+"/error", err.Error())
		s.mu.Lock()
		s.devices[dir] = nil // do not retry in a loop
		s.mu.Unlock()
		return nil, false
	}
	d, err = NewVBD(s.Config, dir, dev)
	if err != nil {
		_ = dev.Close()
		s.Config.Log.Error("bad vbd; the device stays unconnected", "vbd", dir, "err", err)
		_ = st.Write(dir+"/error", err.Error())
		s.mu.Lock()
		s.devices[dir] = nil // as above: the error node's own event must not retry it
		s.mu.Unlock()
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if isClosed(crashed) {
		// crash lists the devices under mu after closing crashed: this
		// one it would not see.
		_ = dev.Close()
		return nil, true
	}
	s.devices[dir] = d
	return d, false
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// crash stops every device as a killed backend process would (see
// VBD.crash), and Serve returns. Crashing again does nothing more. It
// is a fault-injection hook for tests (internal/faultinject.CrashBackend),
// not an API: a real backend ends by its context.
func (s *Server) crash() {
	s.crashOnce.Do(s.crashDevices)
}

func (s *Server) crashDevices() {
	close(s.crashChan())
	s.mu.Lock()
	var devs []*VBD
	for _, d := range s.devices {
		if d != nil {
			devs = append(devs, d)
		}
	}
	s.mu.Unlock()
	for _, d := range devs {
		d.crash()
	}
}

// VBDs returns the backend directories being served.
func (s *Server) VBDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for dir, d := range s.devices {
		if d != nil {
			out = append(out, dir)
		}
	}
	return out
}

// VBD returns the running VBD for a backend directory.
func (s *Server) VBD(dir string) *VBD {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.devices[dir]
}
