package xenbus

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
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
