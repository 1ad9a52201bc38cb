package toolstack

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

func TestCreateWritesWhatLibxlWrites(t *testing.T) {
	h, _ := sim.NewHost()
	g, _ := h.NewDomain("guest")
	other, _ := h.NewDomain("other")
	spec, _ := diskspec.Parse("/img/disk.raw,raw,xvdb,ro,rotation-rate=1")
	v, err := NewVBD(0, g.ID(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := Create(h.Store(), v); err != nil {
		t.Fatal(err)
	}
	st := g.Store() // the guest reads both sides
	for path, want := range map[string]string{
		v.BackendPath() + "/frontend":        v.FrontendPath(),
		v.BackendPath() + "/frontend-id":     "1",
		v.BackendPath() + "/mode":            "r",
		v.BackendPath() + "/params":          "/img/disk.raw",
		v.BackendPath() + "/state":           "1",
		v.BackendPath() + "/online":          "1",
		v.BackendPath() + "/rotation-rate":   "1",
		v.FrontendPath() + "/backend":        v.BackendPath(),
		v.FrontendPath() + "/backend-id":     "0",
		v.FrontendPath() + "/virtual-device": "51728",
		v.FrontendPath() + "/state":          "1",
	} {
		if got, err := st.Read(path); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	if v.BackendPath() != "/local/domain/0/backend/xenblk/1/51728" {
		t.Errorf("backend path %s", v.BackendPath())
	}
	// Another guest can see neither side.
	if _, err := other.Store().Read(v.FrontendPath() + "/backend"); !errors.Is(err, xen.ErrPermission) {
		t.Errorf("another guest read the frontend dir: %v", err)
	}
	if _, err := other.Store().Read(v.BackendPath() + "/params"); !errors.Is(err, xen.ErrPermission) {
		t.Errorf("another guest read the backend dir: %v", err)
	}
	if err := Create(h.Store(), v); err == nil {
		t.Error("creating the same vbd twice succeeded")
	}
	list, err := List(h.Store(), 0, "")
	if err != nil || len(list) != 1 || list[0].DevID != 51728 || list[0].Spec.Target != "/img/disk.raw" {
		t.Fatalf("List: %+v %v", list, err)
	}
}

func TestRemoveWaitsForTheBackend(t *testing.T) {
	h, _ := sim.NewHost()
	g, _ := h.NewDomain("guest")
	spec, _ := diskspec.Parse("vdev=xvda, target=/x")
	v, _ := NewVBD(0, g.ID(), spec)
	Create(h.Store(), v)
	h.Store().Write(v.BackendPath()+"/state", "4") // taken up and connected
	// A backend that closes when asked: it answers Closing (5) with
	// Closed (6), woken by a watch on its state, until the test ends.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st := h.Store()
	w, err := st.Watch(v.BackendPath()+"/state", "backend")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	go func() {
		for {
			select {
			case _, ok := <-w.Events():
				if !ok {
					return
				}
			case <-ctx.Done():
				return
			}
			if s, _ := st.Read(v.BackendPath() + "/state"); s == "5" {
				st.Write(v.BackendPath()+"/state", "6")
				return
			}
		}
	}()
	if err := Remove(ctx, h.Store(), v, false); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{v.BackendPath(), v.FrontendPath()} {
		if _, err := h.Store().Read(p + "/state"); !errors.Is(err, xen.ErrNotFound) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	// A backend that never answers: refused without --force, done with it.
	Create(h.Store(), v)
	h.Store().Write(v.BackendPath()+"/state", "4")
	short, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if err := Remove(short, h.Store(), v, false); !errors.Is(err, ErrNotClosed) {
		t.Fatalf("removal without an answering backend, without force: %v, want ErrNotClosed", err)
	}
	short2, cancel3 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel3()
	if err := Remove(short2, h.Store(), v, true); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Store().Read(v.BackendPath() + "/state"); !errors.Is(err, xen.ErrNotFound) {
		t.Error("forced removal left the backend dir")
	}
}

// A shared disk (shared=1, or xl's access=w!) reaches the backend as its
// shared node, which serve reads to lock the image shared.
func TestCreateMarksASharedDisk(t *testing.T) {
	h, _ := sim.NewHost()
	g, _ := h.NewDomain("guest")
	for spec, want := range map[string][2]string{
		"vdev=xvdb, shared=1, target=/dev/vg/cluster":            {"w", "1"},
		"vdev=xvdc, access=w!, target=/dev/vg/cluster":           {"w", "1"},
		"vdev=xvdd, access=ro, shared=1, target=/dev/vg/cluster": {"r", "1"},
		"vdev=xvde, target=/dev/vg/alone":                        {"w", ""},
	} {
		s, err := diskspec.Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		v, err := NewVBD(0, g.ID(), s)
		if err != nil {
			t.Fatal(err)
		}
		if err := Create(h.Store(), v); err != nil {
			t.Fatal(err)
		}
		mode, _ := h.Store().Read(v.BackendPath() + "/mode")
		shared, _ := h.Store().Read(v.BackendPath() + "/shared")
		if mode != want[0] || shared != want[1] {
			t.Errorf("%s: mode %q, shared %q; want %q, %q", spec, mode, shared, want[0], want[1])
		}
	}
}

// TestRemoveOfAClosedBackendIsImmediate: a backend already Closed (its
// guest died, or its frontend closed) is not asked to close again. Its
// state is left as it is, as libxl leaves it, and the removal does not
// wait for an answer no backend would give.
func TestRemoveOfAClosedBackendIsImmediate(t *testing.T) {
	h, _ := sim.NewHost()
	g, _ := h.NewDomain("guest")
	spec, _ := diskspec.Parse("vdev=xvda, target=/x")
	v, _ := NewVBD(0, g.ID(), spec)
	if err := Create(h.Store(), v); err != nil {
		t.Fatal(err)
	}
	st := h.Store()
	st.Write(v.BackendPath()+"/state", "6")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := Remove(ctx, st, v, false); err != nil {
		t.Fatalf("removing a Closed backend: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("removing a Closed backend took %v", d)
	}
	for _, p := range []string{v.BackendPath(), v.FrontendPath()} {
		if _, err := st.Read(p + "/state"); !errors.Is(err, xen.ErrNotFound) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}

// A vbd no backend has taken up (still the Initialising that Create
// wrote: no serve runs, or it has not reached it) has nothing to close:
// removed at once, without force, however long the context.
func TestRemoveOfAnUntakenVBDIsImmediate(t *testing.T) {
	h, _ := sim.NewHost()
	g, _ := h.NewDomain("guest")
	spec, _ := diskspec.Parse("vdev=xvda, target=/x")
	v, _ := NewVBD(0, g.ID(), spec)
	if err := Create(h.Store(), v); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Remove(ctx, h.Store(), v, false) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("removing an untaken vbd: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("removing a vbd no backend took up waited for a backend")
	}
	for _, p := range []string{v.BackendPath(), v.FrontendPath()} {
		if _, err := h.Store().Read(p + "/state"); !errors.Is(err, xen.ErrNotFound) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}
