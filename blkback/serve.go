package blkback

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
//
// A watch on the backend type directory tells it what changed: an event
// inside one vbd's directory (root/<frontend-domid>/<devid>/...) concerns
// that vbd alone, and only its nodes are read. The watch's first firing
// (root itself) and an event naming a frontend domain's directory (its
// removal, which takes every vbd in it) rescan what they cover. A vbd
// whose device ended is looked at again: events for it while it ran were
// its runner's, and it may have been attached anew meanwhile.
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
	// ended hears the directory of each device whose Run returned, until
	// Serve's loop stops (then nobody listens: stopped is closed first).
	ended, stopped := make(chan string), make(chan struct{})
	defer close(stopped)
	crashed := s.crashChan()
	for {
		var dirs []string
		select {
		case <-ctx.Done():
			return nil
		case <-crashed:
			return nil
		case dir := <-ended:
			dirs = []string{dir}
		case ev, ok := <-w.Events():
			if !ok {
				return errors.New("blkback: store connection closed")
			}
			dirs = s.concerned(st, root, ev.Path)
		}
		// select picks among ready cases at random: an event (another
		// backend writing in the area) may win over the crash.
		if isClosed(crashed) {
			return nil
		}
		for _, dir := range dirs {
			d, stop := s.consider(st, dir, crashed)
			if stop {
				return nil
			}
			if d == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
					s.Config.Log.Error("device stopped", "vbd", dir, "err", err)
				}
				s.mu.Lock()
				delete(s.devices, dir)
				s.mu.Unlock()
				select {
				case ended <- dir:
				case <-stopped:
				}
			}()
		}
	}
}

// concerned lists the vbd directories a watch event at path concerns:
// the one vbd whose directory path lies in, or, for root or a frontend
// domain's directory, every vbd listed under it now and every failed one
// remembered there (which may be gone).
func (s *Server) concerned(st xen.Store, root, path string) []string {
	rel, ok := strings.CutPrefix(path, root+"/")
	if !ok {
		rel = "" // root itself (the first firing), or its removal
	}
	dom, rest, inDom := strings.Cut(rel, "/")
	if dev, _, _ := strings.Cut(rest, "/"); inDom && dom != "" && dev != "" {
		return []string{root + "/" + dom + "/" + dev}
	}
	prefix := root + "/"
	if dom != "" {
		prefix += dom + "/"
	}
	dirs := s.scan(st, root, dom)
	s.mu.Lock()
	for dir, d := range s.devices {
		if d == nil && strings.HasPrefix(dir, prefix) && !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	s.mu.Unlock()
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

// scan lists the vbd directories root/<frontend-domid>/<devid>, of one
// frontend domain if dom is not "".
func (s *Server) scan(st xen.Store, root, dom string) []string {
	doms := []string{dom}
	if dom == "" {
		var err error
		if doms, err = st.Directory(root); err != nil {
			return nil
		}
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
