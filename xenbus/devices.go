package xenbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/xenblk/xenblk/xen"
)

// Devices is the loop of a backend server: it watches a backend type
// directory (/local/domain/<self>/backend/<type>) and starts every
// device that appears in it, root/<frontend-domid>/<devid>, each on its
// own goroutine. Which directory is a device to start, and what running
// it means, is the server's (Start); Devices only decides which
// directories to look at:
//
//   - an event inside one device's directory concerns that device alone,
//     and only it is looked at;
//   - the watch's first firing (root itself) and an event naming a
//     frontend domain's directory (its removal, which takes every device
//     in it) have what they cover scanned, with the directories Failed
//     remembers there (which may be gone);
//   - a device whose run ended is looked at again: the events for it
//     while it ran were its runner's, and it may have been created anew.
//
// A frontend domain that dies takes its devices with it. On each firing
// of @releaseDomain (a domain died or shut down) after the one at
// registration, the directory root/<id> of every frontend domain whose
// /local/domain/<id> is gone is removed, as libxl removes the devices it
// made when it destroys a domain: a vbd made by xenblk attach has no
// daemon of libxl's to do it. A suspended domain (xl save) still has its
// directory and keeps its devices. The firing at registration removes
// nothing: what a domain that died before the server started left is the
// toolstack's to remove (xenblk detach), and directories written by hand
// for a domain that never existed are not a death. The removal is an ordinary
// event for the devices' runners: each sees its directory go and ends
// (its frontend's directory went first, with the domain's, so it has
// already closed and let go of the guest's grants and channels). A
// backend that cannot read /local/domain/<id> (a driver domain, to which
// the guest's directory is not readable) removes nothing.
type Devices struct {
	Store xen.Store
	Root  string
	// Name prefixes errors and is the watch's token.
	Name string
	// Start looks at one device directory: it returns the function that
	// runs the device until it ends, or nil when there is nothing to
	// start; stop says Serve must return at once (the server crashed).
	Start func(dir string) (run func(), stop bool)
	// Failed lists the directories under prefix the server remembers as
	// failed, so that a rescan looks at them (nil: none).
	Failed func(prefix string) []string
	// Stop, when closed, makes Serve return as a crash does: at once,
	// starting nothing more.
	Stop <-chan struct{}
	// Log hears the dead domains' removals (nil: slog.Default()).
	Log *slog.Logger
}

// Serve runs until ctx is cancelled or Stop is closed, then waits for
// every run it started to return.
func (d *Devices) Serve(ctx context.Context) error {
	w, err := d.Store.Watch(d.Root, d.Name)
	if err != nil {
		return fmt.Errorf("%s: watch %s: %w", d.Name, d.Root, err)
	}
	defer w.Close()
	released, err := d.Store.Watch("@releaseDomain", d.Name+"-released")
	if err != nil {
		return fmt.Errorf("%s: watch @releaseDomain: %w", d.Name, err)
	}
	defer released.Close()
	registered := false // the registration's firing has been seen
	var wg sync.WaitGroup
	defer wg.Wait()
	// ended hears the directory of each device whose run returned, until
	// the loop stops (then nobody listens: stopped is closed first).
	ended, stopped := make(chan string), make(chan struct{})
	defer close(stopped)
	for {
		var dirs []string
		select {
		case <-ctx.Done():
			return nil
		case <-d.Stop:
			return nil
		case dir := <-ended:
			dirs = []string{dir}
		case ev, ok := <-w.Events():
			if !ok {
				return fmt.Errorf("%s: store connection closed", d.Name)
			}
			dirs = d.concerned(ev.Path)
		case _, ok := <-released.Events():
			if !ok {
				return fmt.Errorf("%s: store connection closed", d.Name)
			}
			if registered {
				d.removeDead()
			}
			registered = true
		}
		// select picks among ready cases at random: an event (another
		// backend writing in the area) may win over the stop.
		if isClosed(d.Stop) {
			return nil
		}
		for _, dir := range dirs {
			run, stop := d.Start(dir)
			if stop {
				return nil
			}
			if run == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				run()
				select {
				case ended <- dir:
				case <-stopped:
				}
			}()
		}
	}
}

// concerned lists the device directories a watch event at path
// concerns.
func (d *Devices) concerned(path string) []string {
	root := d.Root
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
	dirs := d.scan(dom)
	if d.Failed != nil {
		for _, dir := range d.Failed(prefix) {
			if !slices.Contains(dirs, dir) {
				dirs = append(dirs, dir)
			}
		}
	}
	return dirs
}

// removeDead removes root/<id> for every frontend domain id whose
// /local/domain/<id> is gone. The removal's events reach the loop's
// watch: the devices there are looked at, and their runners end.
func (d *Devices) removeDead() {
	doms, err := d.Store.Directory(d.Root)
	if err != nil {
		return
	}
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	for _, dom := range doms {
		id, err := strconv.ParseUint(dom, 10, 16)
		if err != nil {
			continue
		}
		if _, err := d.Store.Read(fmt.Sprintf("/local/domain/%d", id)); !errors.Is(err, xen.ErrNotFound) {
			continue
		}
		dir := d.Root + "/" + dom
		if err := d.Store.Remove(dir); err != nil && !errors.Is(err, xen.ErrNotFound) {
			log.Warn("cannot remove a dead domain's devices", "dir", dir, "err", err)
			continue
		}
		log.Info("domain gone: its devices removed", "domain", id, "dir", dir)
	}
}

// scan lists the device directories root/<frontend-domid>/<devid>, of
// one frontend domain if dom is not "".
func (d *Devices) scan(dom string) []string {
	doms := []string{dom}
	if dom == "" {
		var err error
		if doms, err = d.Store.Directory(d.Root); err != nil {
			return nil
		}
	}
	var out []string
	for _, dom := range doms {
		devs, err := d.Store.Directory(d.Root + "/" + dom)
		if err != nil {
			continue
		}
		for _, dev := range devs {
			if strings.ContainsAny(dev, "/") {
				continue
			}
			out = append(out, d.Root+"/"+dom+"/"+dev)
		}
	}
	return out
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
