package xenbus

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// removedAfterCheck is a store whose directory dir is removed (as the
// toolstack removes it on seeing Closed) right after the first read that
// finds it, in or out of a transaction: the worst moment for a writer
// that checks before it writes.
type removedAfterCheck struct {
	xen.Store
	dir     string
	removed bool
}

func (s *removedAfterCheck) race(path string, err error) {
	if path == s.dir && err == nil && !s.removed {
		s.removed = true
		s.Store.Remove(s.dir)
	}
}

func (s *removedAfterCheck) Read(path string) (string, error) {
	v, err := s.Store.Read(path)
	s.race(path, err)
	return v, err
}

func (s *removedAfterCheck) Transaction(fn func(xen.Tx) error) error {
	return s.Store.Transaction(func(tx xen.Tx) error { return fn(racyTx{tx, s}) })
}

type racyTx struct {
	xen.Tx
	s *removedAfterCheck
}

func (t racyTx) Read(path string) (string, error) {
	v, err := t.Tx.Read(path)
	t.s.race(path, err)
	return v, err
}

// TestStateIsNotWrittenIntoARemovedDirectory: when the toolstack removes
// the device's directory between the runner's check and its write, the
// state node is not written back alone (which made the next attach of
// the same device fail with "already exists").
func TestStateIsNotWrittenIntoARemovedDirectory(t *testing.T) {
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	const dir = "/local/domain/0/backend/xenblk/1/51712"
	st := h.Store()
	if err := st.Write(dir+"/state", Connected.Value()); err != nil {
		t.Fatal(err)
	}
	racy := &removedAfterCheck{Store: st, dir: dir}
	r := &Runner{Store: racy, Self: dir}
	r.writeState(Closed, slog.Default())
	if !racy.removed {
		t.Fatal("the test did not remove the directory")
	}
	if v, err := st.Read(dir + "/state"); !errors.Is(err, xen.ErrNotFound) {
		t.Fatalf("%s/state = %q (%v) after the directory was removed; want it gone", dir, v, err)
	}
}
