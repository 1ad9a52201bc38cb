package blkback

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenbus"
)

// countingStore records every path read (Read and Directory, in or out
// of a transaction) through it.
type countingStore struct {
	xen.Store
	mu    sync.Mutex
	reads []string
}

func (s *countingStore) note(path string) {
	s.mu.Lock()
	s.reads = append(s.reads, path)
	s.mu.Unlock()
}

// take returns the paths read since the last take.
func (s *countingStore) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reads
	s.reads = nil
	return r
}

func (s *countingStore) Read(path string) (string, error) {
	s.note(path)
	return s.Store.Read(path)
}

func (s *countingStore) Directory(path string) ([]string, error) {
	s.note("dir " + path)
	return s.Store.Directory(path)
}

func (s *countingStore) Transaction(fn func(xen.Tx) error) error {
	return s.Store.Transaction(func(tx xen.Tx) error { return fn(countingTx{tx, s}) })
}

type countingTx struct {
	xen.Tx
	s *countingStore
}

func (t countingTx) Read(path string) (string, error) {
	t.s.note(path)
	return t.Tx.Read(path)
}

func (t countingTx) Directory(path string) ([]string, error) {
	t.s.note("dir " + path)
	return t.Tx.Directory(path)
}

type countingDomain struct {
	xen.Domain
	st *countingStore
}

func (d countingDomain) Store() xen.Store { return d.st }

// A watch event inside one vbd's directory reads that vbd's nodes only:
// not the others' (two that failed to open, which every event used to
// read again), and no listing of the backend directory. The watch's first firing still finds the
// vbds already there, and the removal of a failed vbd's directory, or of
// its frontend domain's, forgets it (a new one there is tried again).
func TestServeReadsOnlyTheVBDAnEventNames(t *testing.T) {
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	host := h.Store()
	guest1, err := h.NewDomain("guest1")
	if err != nil {
		t.Fatal(err)
	}
	guest2, err := h.NewDomain("guest2")
	if err != nil {
		t.Fatal(err)
	}
	create := func(guest xen.DomID, vdev, target string) toolstack.VBD {
		t.Helper()
		spec, err := diskspec.Parse("vdev=" + vdev + ", target=" + target)
		if err != nil {
			t.Fatal(err)
		}
		v, err := toolstack.NewVBD(0, guest, spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := toolstack.Create(host, v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	waitState := func(v toolstack.VBD, want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := xenbus.WaitNode(ctx, host, v.BackendPath()+"/state", xenbus.OneOf(want)); err != nil {
			t.Fatal(err)
		}
	}
	served := create(guest1.ID(), "xvda", "good")
	failed := create(guest1.ID(), "xvdb", "bad")
	failedElsewhere := create(guest2.ID(), "xvdc", "bad")

	st := &countingStore{Store: h.Dom0().Store()}
	srv := &Server{
		Config:      Config{Domain: countingDomain{h.Dom0(), st}, Log: slog.New(slog.DiscardHandler)},
		BackendType: toolstack.DefaultBackendType,
		Open: func(st xen.Store, dir string) (storage.Device, error) {
			if params, _ := st.Read(dir + "/params"); params == "bad" {
				return nil, errors.New("no such disk")
			}
			return storage.NewMemory(1 << 20), nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer cancel()
	defer func() {
		srv.crash() // no clean close: no frontend would answer it
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	// The first firing: the vbds already there.
	waitState(served, "2")
	remembered := func(dir string) bool {
		return slices.Contains(srv.devices.Failed(dir), dir)
	}
	if !eventually.Within(10*time.Second, func() bool {
		return remembered(failed.BackendPath()) && remembered(failedElsewhere.BackendPath())
	}) {
		t.Fatal("the vbds that cannot open are not remembered as failed")
	}

	// The events so far (the failed vbds' error nodes among them) are
	// behind us once a vbd attached after them has started: one loop
	// takes them in order.
	barrier := create(guest1.ID(), "xvde", "good")
	waitState(barrier, "2")

	st.take()
	added := create(guest1.ID(), "xvdd", "good")
	waitState(added, "2") // its events were seen: it started
	for _, p := range st.take() {
		if strings.HasPrefix(p, "dir ") {
			t.Errorf("an event for %s listed %s", added.BackendPath(), p)
		}
		// (The served vbds' runners read their own nodes meanwhile.)
		for _, other := range []toolstack.VBD{failed, failedElsewhere} {
			if p == other.BackendPath() || strings.HasPrefix(p, other.BackendPath()+"/") {
				t.Errorf("an event for %s read %s", added.BackendPath(), p)
			}
		}
	}

	// A failed vbd's directory removed: forgotten, and one attached
	// there anew is tried (and fails) again.
	if err := host.Remove(failed.BackendPath()); err != nil {
		t.Fatal(err)
	}
	if !eventually.Within(10*time.Second, func() bool { return !remembered(failed.BackendPath()) }) {
		t.Fatal("a failed vbd whose directory is gone is still remembered")
	}
	host.Remove(failed.FrontendPath())
	failed = create(guest1.ID(), "xvdb", "bad")
	if !eventually.Within(10*time.Second, func() bool { return remembered(failed.BackendPath()) }) {
		t.Fatal("a vbd attached anew where one failed is not tried")
	}

	// A frontend domain's whole directory removed: its failed vbd too.
	if err := host.Remove(path.Dir(failedElsewhere.BackendPath())); err != nil {
		t.Fatal(err)
	}
	if !eventually.Within(10*time.Second, func() bool { return !remembered(failedElsewhere.BackendPath()) }) {
		t.Fatal("a failed vbd whose domain's directory is gone is still remembered")
	}
}
