package xenbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// TestDevicesLooksAtWhatAnEventNames: the first firing scans the whole
// tree (and the failed directories remembered); an event inside a
// device's directory has that device alone looked at; a device whose
// run ended is looked at again; Stop ends Serve after the runs return.
func TestDevicesLooksAtWhatAnEventNames(t *testing.T) {
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	st := h.Store()
	root := "/local/domain/0/backend/test"
	for _, p := range []string{root + "/1/0/state", root + "/1/1/state", root + "/2/5/state"} {
		if err := st.Write(p, "1"); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var looked []string
	release := make(chan struct{})
	stop := make(chan struct{})
	d := &Devices{Store: st, Root: root, Name: "test", Stop: stop,
		Failed: func(prefix string) []string { return []string{root + "/9/9"} },
		Start: func(dir string) (func(), bool) {
			mu.Lock()
			looked = append(looked, dir)
			n := len(looked)
			mu.Unlock()
			if dir == root+"/2/5" && n <= 4 {
				return func() { <-release }, false
			}
			return nil, false
		},
	}
	done := make(chan error, 1)
	go func() { done <- d.Serve(context.Background()) }()
	seen := func(want ...string) {
		t.Helper()
		eventually.True(t, 10*time.Second, "looked at "+strings.Join(want, " "), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.Equal(looked, want)
		})
	}
	seen(root+"/1/0", root+"/1/1", root+"/2/5", root+"/9/9")
	if err := st.Write(root+"/1/1/online", "1"); err != nil {
		t.Fatal(err)
	}
	seen(root+"/1/0", root+"/1/1", root+"/2/5", root+"/9/9", root+"/1/1")
	close(release)
	seen(root+"/1/0", root+"/1/1", root+"/2/5", root+"/9/9", root+"/1/1", root+"/2/5")
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDevicesRemoveADeadDomainsDevices: when a frontend domain dies
// (@releaseDomain, its /local/domain/<id> gone), its devices' directories
// are removed and the removal reaches the runners as any event does; the
// devices of live domains, dom0's own included, stay.
func TestDevicesRemoveADeadDomainsDevices(t *testing.T) {
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	st := h.Store()
	doomed, err := h.NewDomain("doomed")
	if err != nil {
		t.Fatal(err)
	}
	alive, err := h.NewDomain("alive")
	if err != nil {
		t.Fatal(err)
	}
	root := "/local/domain/0/backend/test"
	dir := func(dom xen.DomID, dev int) string { return fmt.Sprintf("%s/%d/%d", root, dom, dev) }
	keep := []string{dir(0, 5), dir(alive.ID(), 0)}
	gone := []string{dir(doomed.ID(), 0), dir(doomed.ID(), 1)}
	for _, d := range append(slices.Clone(keep), gone...) {
		if err := st.Write(d+"/state", "1"); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	running := map[string]bool{}
	ended := map[string]bool{}
	stop := make(chan struct{})
	d := &Devices{Store: st, Root: root, Name: "test", Stop: stop,
		Start: func(dir string) (func(), bool) {
			mu.Lock()
			defer mu.Unlock()
			if running[dir] || ended[dir] {
				return nil, false
			}
			if _, err := st.Read(dir + "/state"); err != nil {
				return nil, false
			}
			running[dir] = true
			return func() {
				_, _ = WaitNode(context.Background(), st, dir+"/state", func(_ string, err error) bool { return errors.Is(err, xen.ErrNotFound) })
				mu.Lock()
				ended[dir] = true
				mu.Unlock()
			}, false
		},
	}
	done := make(chan error, 1)
	go func() { done <- d.Serve(context.Background()) }()
	eventually.True(t, 10*time.Second, "every device running", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(running) == 4
	})
	h.Destroy(doomed.ID())
	eventually.True(t, 10*time.Second, "the dead domain's devices ended", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return ended[gone[0]] && ended[gone[1]]
	})
	if _, err := st.Read(fmt.Sprintf("%s/%d", root, doomed.ID())); !errors.Is(err, xen.ErrNotFound) {
		t.Errorf("the dead domain's directory: %v, want it gone", err)
	}
	for _, k := range keep {
		if _, err := st.Read(k + "/state"); err != nil {
			t.Errorf("%s (a live domain's): %v", k, err)
		}
	}
	mu.Lock()
	for _, k := range keep {
		if ended[k] {
			t.Errorf("%s (a live domain's) ended", k)
		}
	}
	mu.Unlock()
	for _, k := range keep {
		_ = st.Remove(k)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
