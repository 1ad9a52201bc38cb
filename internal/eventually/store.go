package eventually

import (
	"slices"
	"testing"
	"time"

	"github.com/xenblk/xenblk/xen"
)

// Node waits until the store node at path holds one of want and returns
// it; it fails t with the last value seen when timeout passes first. It
// reads again on each event of a watch on path (the watch fires once at
// registration, so a value already there is seen at once).
func Node(t testing.TB, st xen.Store, timeout time.Duration, path string, want ...string) string {
	t.Helper()
	w, err := st.Watch(path, "eventually")
	if err != nil {
		t.Fatalf("watch %s: %v", path, err)
		return ""
	}
	defer w.Close()
	deadline := time.After(timeout)
	for {
		v, err := st.Read(path)
		if err == nil && slices.Contains(want, v) {
			return v
		}
		select {
		case _, ok := <-w.Events():
			if !ok {
				t.Fatalf("waiting for %s = one of %q: the store connection closed (last %q, %v)", path, want, v, err)
				return ""
			}
		case <-deadline:
			t.Fatalf("not within %v: %s = %q (%v), want one of %q", timeout, path, v, err, want)
			return ""
		}
	}
}
