package sim

import (
	"errors"
	"testing"
	"time"

	"github.com/xenblk/xenblk/xen"
)

// xenstore.txt, RM: "It is not an error if <path> does not exist, but it
// _is_ an error if <path>'s immediate parent does not exist either."
// Removing nothing changes nothing: no generation bump (a transaction
// open across it still commits) and no watch event.
func TestRemoveMissingNodeUnderExistingParent(t *testing.T) {
	_, d0, g := newTestHost(t)
	s0 := d0.Store()
	if err := s0.Write("/a/present", "1"); err != nil {
		t.Fatal(err)
	}
	w, err := s0.Watch("/a", "tok")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	next := func() string {
		t.Helper()
		select {
		case ev := <-w.Events():
			return ev.Path
		case <-time.After(10 * time.Second):
			t.Fatal("no watch event")
			return ""
		}
	}
	if p := next(); p != "/a" {
		t.Fatalf("registration event %q", p)
	}

	// A transaction opened before the removal of nothing still commits
	// on its first run: the generation did not move.
	runs := 0
	err = s0.Transaction(func(tx xen.Tx) error {
		runs++
		if runs == 1 {
			if err := s0.Remove("/a/missing"); err != nil {
				t.Errorf("rm of a missing node whose parent exists: %v", err)
			}
		}
		return tx.Write("/a/tx", "1")
	})
	if err != nil || runs != 1 {
		t.Fatalf("transaction across an rm of nothing: %v after %d runs, want one run", err, runs)
	}
	// The next event is the transaction's write: the rm fired nothing.
	if p := next(); p != "/a/tx" {
		t.Fatalf("event %q after an rm of nothing, want the next write's /a/tx", p)
	}

	if err := s0.Remove("/nowhere/missing"); !errors.Is(err, xen.ErrNotFound) {
		t.Fatalf("rm under a missing parent: %v, want ENOENT", err)
	}
	// A guest learns nothing about a parent it may not read.
	if err := g.Store().Remove("/a/missing"); !errors.Is(err, xen.ErrPermission) {
		t.Fatalf("guest rm of a missing node under an unreadable parent: %v, want EACCES", err)
	}
	if err := g.Store().Remove("nothere/missing"); !errors.Is(err, xen.ErrNotFound) {
		t.Fatalf("guest rm under a missing parent in its home: %v, want ENOENT", err)
	}
	if err := g.Store().Remove("missing"); err != nil {
		t.Fatalf("guest rm of a missing node in its own home: %v", err)
	}

	// Inside a transaction: the same rule, and a transaction whose only
	// operation removed nothing commits without firing.
	err = s0.Transaction(func(tx xen.Tx) error {
		if err := tx.Remove("/a/missing"); err != nil {
			return err
		}
		if err := tx.Remove("/nowhere/missing"); !errors.Is(err, xen.ErrNotFound) {
			t.Errorf("rm under a missing parent in a transaction: %v, want ENOENT", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("transaction removing a missing node: %v", err)
	}
	if err := s0.Write("/a/after", "1"); err != nil {
		t.Fatal(err)
	}
	if p := next(); p != "/a/after" {
		t.Fatalf("event %q after a transaction that removed nothing, want /a/after", p)
	}
}
