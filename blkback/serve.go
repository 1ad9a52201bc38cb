package blkback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
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
func (s *Server) Serve(ctx context.Context) error {
	s.Config.defaults()
	st := s.Config.Domain.Store()
	root := fmt.Sprintf("/local/domain/%d/backend/%s", s.Config.Domain.ID(), s.BackendType)
	w, err := st.Watch(root, "blkback")
	if err != nil {
		return fmt.Errorf("blkback: watch %s: %w", root, err)
	}
	defer w.Close()
	s.mu.Lock()
	s.devices = map[string]*VBD{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	crashed := s.crashChan()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-crashed:
			return nil
		case _, ok := <-w.Events():
			if !ok {
				return errors.New("blkback: store connection closed")
			}
		}
		// select picks among ready cases at random: an event (another
		// backend writing in the area) may win over the crash.
		if isClosed(crashed) {
			return nil
		}
		for _, dir := range s.scan(st, root) {
			s.mu.Lock()
			_, running := s.devices[dir]
			s.mu.Unlock()
			if running {
				continue
			}
			// Only once the toolstack has written the whole directory
			// (state is written last).
			if _, err := st.Read(dir + "/state"); err != nil {
				continue
			}
			if v, err := st.Read(dir + "/online"); err != nil || v != "1" {
				continue
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
				continue
			}
			d, err := NewVBD(s.Config, dir, dev)
			if err != nil {
				_ = dev.Close()
				s.Config.Log.Error("bad vbd; the device stays unconnected", "vbd", dir, "err", err)
				_ = st.Write(dir+"/error", err.Error())
				s.mu.Lock()
				s.devices[dir] = nil // as above: the error node's own event must not retry it
				s.mu.Unlock()
				continue
			}
			s.mu.Lock()
			if isClosed(crashed) {
				// crash lists the devices under mu after closing
				// crashed: this one it would not see (a crashed process
				// starts nothing).
				s.mu.Unlock()
				_ = dev.Close()
				return nil
			}
			s.devices[dir] = d
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
					s.Config.Log.Error("device stopped", "vbd", dir, "err", err)
				}
				s.mu.Lock()
				delete(s.devices, dir)
				s.mu.Unlock()
			}()
		}
		// Forget failed entries whose directory is gone.
		s.mu.Lock()
		for dir, d := range s.devices {
			if d == nil {
				if _, err := st.Read(dir + "/state"); errors.Is(err, xen.ErrNotFound) {
					delete(s.devices, dir)
				}
			}
		}
		s.mu.Unlock()
	}
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

// scan lists root/<frontend-domid>/<devid> directories.
func (s *Server) scan(st xen.Store, root string) []string {
	doms, err := st.Directory(root)
	if err != nil {
		return nil
	}
	var out []string
	for _, dom := range doms {
		devs, err := st.Directory(root + "/" + dom)
		if err != nil {
			continue
		}
		for _, dev := range devs {
			if strings.ContainsAny(dev, "/") {
				continue
			}
			out = append(out, root+"/"+dom+"/"+dev)
		}
	}
	return out
}
