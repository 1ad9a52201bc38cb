package toolstack

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsispec"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

func mustSpec(t *testing.T, s string) vscsispec.Spec {
	t.Helper()
	spec, err := vscsispec.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func newGuest(t *testing.T) (*sim.Host, *sim.Domain) {
	t.Helper()
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	g, err := h.NewDomain("guest")
	if err != nil {
		t.Fatal(err)
	}
	return h, g
}

func TestCreateVhostWritesWhatLibxlWrites(t *testing.T) {
	h, g := newGuest(t)
	other, _ := h.NewDomain("other")
	v := Vhost{BackendDom: 0, FrontendDom: g.ID(), DevID: 0}
	if err := CreateVhost(h.Store(), v,
		mustSpec(t, "/img/a.raw, 2:0:0:0"),
		mustSpec(t, "nbd://10.0.0.1/b, 2:0:1:0, shared=1, sector-size=4096")); err != nil {
		t.Fatal(err)
	}
	if v.BackendPath() != "/local/domain/0/backend/vscsi/1/0" || v.FrontendPath() != "/local/domain/1/device/vscsi/0" {
		t.Fatalf("paths %s %s", v.BackendPath(), v.FrontendPath())
	}
	be, fe := v.BackendPath(), v.FrontendPath()
	st := g.Store() // the guest reads both sides
	for path, want := range map[string]string{
		be + "/frontend":                     fe,
		be + "/frontend-id":                  "1",
		be + "/online":                       "1",
		be + "/state":                        "1",
		be + "/feature-host":                 "0",
		be + "/libxl_ctrl_index":             "2",
		be + "/vscsi-devs/dev-0/p-dev":       "/img/a.raw",
		be + "/vscsi-devs/dev-0/p-devname":   "/img/a.raw",
		be + "/vscsi-devs/dev-0/v-dev":       "2:0:0:0",
		be + "/vscsi-devs/dev-0/state":       "1",
		be + "/vscsi-devs/dev-1/p-dev":       "nbd://10.0.0.1/b",
		be + "/vscsi-devs/dev-1/v-dev":       "2:0:1:0",
		be + "/vscsi-devs/dev-1/state":       "1",
		be + "/vscsi-devs/dev-1/shared":      "1",
		be + "/vscsi-devs/dev-1/sector-size": "4096",
		fe + "/backend":                      be,
		fe + "/backend-id":                   "0",
		fe + "/state":                        "1",
	} {
		if got, err := st.Read(path); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := st.Read(be + "/vscsi-devs/dev-0/shared"); !errors.Is(err, xen.ErrNotFound) {
		t.Errorf("dev-0 got dev-1's key: %v", err)
	}
	// The guest writes only its own side: its frontend directory (its
	// state, and its own vscsi-devs/dev-N/state there), never the backend's.
	for _, p := range []string{be + "/state", be + "/online", be + "/vscsi-devs/dev-0/state", be + "/vscsi-devs/dev-0/p-dev", be + "/vscsi-devs/dev-9/p-dev"} {
		if err := st.Write(p, "4"); !errors.Is(err, xen.ErrPermission) {
			t.Errorf("the guest wrote %s: %v", p, err)
		}
	}
	for _, p := range []string{fe + "/state", fe + "/ring-ref", fe + "/vscsi-devs/dev-0/state"} {
		if err := st.Write(p, "3"); err != nil {
			t.Errorf("the guest cannot write %s: %v", p, err)
		}
	}
	wantBE := []xen.Perm{{Dom: 0}, {Dom: g.ID(), Read: true}}
	for _, p := range []string{be, be + "/vscsi-devs", be + "/vscsi-devs/dev-1", be + "/vscsi-devs/dev-1/p-dev"} {
		if got, err := h.Store().GetPerms(p); err != nil || !slices.Equal(got, wantBE) {
			t.Errorf("perms of %s: %v %v, want %v", p, got, err, wantBE)
		}
	}
	// Another guest sees neither side.
	for _, p := range []string{be + "/vscsi-devs/dev-0/p-dev", fe + "/backend"} {
		if _, err := other.Store().Read(p); !errors.Is(err, xen.ErrPermission) {
			t.Errorf("another guest read %s: %v", p, err)
		}
	}
	if err := CreateVhost(h.Store(), v, mustSpec(t, "/x, 2:0:5:0")); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("creating the vhost twice: %v", err)
	}
	list, err := Vhosts(h.Store(), 0, g.ID())
	if err != nil || len(list) != 1 || !list[0].HasHost || list[0].Host != 2 || len(list[0].LUNs) != 2 || list[0].LUNs[1].PDev != "nbd://10.0.0.1/b" {
		t.Fatalf("Vhosts: %+v %v", list, err)
	}
}

func TestCreateVhostRefuses(t *testing.T) {
	h, g := newGuest(t)
	v := Vhost{FrontendDom: g.ID()}
	for _, c := range []struct {
		luns []string
		want string
	}{
		{nil, "toolstack: a vhost needs a LUN"},
		{[]string{"/a, 0:0:0:0", "/b, 1:0:1:0"}, "toolstack: v-dev 1:0:1:0 is not on host 0, as 0:0:0:0 is: the host number picks the vhost"},
		{[]string{"/a, 0:0:0:0", "/b, 0:0:0:0"}, "toolstack: v-dev 0:0:0:0 and 0:0:0:0 share channel:target:lun"},
		{[]string{"/a, 0:0:0:0", "/b, 0:0:1:0", "/c, 0:0:1:0"}, "toolstack: v-dev 0:0:1:0 and 0:0:1:0 share channel:target:lun"},
		{[]string{"/a, 0:0:0:0, feature-host", "/b, 0:0:1:0"}, "toolstack: /b, 0:0:1:0: feature-host is the vhost's, and /a, 0:0:0:0, feature-host says otherwise"},
	} {
		var specs []vscsispec.Spec
		for _, l := range c.luns {
			specs = append(specs, mustSpec(t, l))
		}
		if err := CreateVhost(h.Store(), v, specs...); err == nil || err.Error() != c.want {
			t.Errorf("%v:\n got %v\nwant %s", c.luns, err, c.want)
		}
	}
	if _, err := h.Store().Read(v.BackendPath()); !errors.Is(err, xen.ErrNotFound) {
		t.Errorf("a refused vhost left %s: %v", v.BackendPath(), err)
	}
}

// backend plays a vscsi backend for one vhost, through a watch, until
// the test ends: Reconfiguring is answered by setting the LUNs at 5 to
// 6 and those at 1 to 4 (6 for a p-dev in refuse), then Connected;
// Closing by Closed. It records every vhost state it saw.
type backend struct {
	mu   sync.Mutex
	seen []string
}

func (b *backend) saw(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Contains(b.seen, s)
}

func runBackend(t *testing.T, st xen.Store, v Vhost, refuse ...string) *backend {
	t.Helper()
	be := v.BackendPath()
	w, err := st.Watch(be, "backend")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	b := &backend{}
	go func() {
		defer close(done)
		defer w.Close()
		for {
			select {
			case _, ok := <-w.Events():
				if !ok {
					return
				}
			case <-ctx.Done():
				return
			}
			s, _ := st.Read(be + "/state")
			b.mu.Lock()
			b.seen = append(b.seen, s)
			b.mu.Unlock()
			switch s {
			case "7":
				luns, _ := readLUNs(st, be)
				for _, l := range luns {
					dir := v.devPath(l.Index) + "/state"
					switch {
					case l.State == "5", l.State == "1" && slices.Contains(refuse, l.PDev):
						st.Write(dir, "6")
					case l.State == "1":
						st.Write(dir, "4")
					}
				}
				st.Write(be+"/state", "4")
			case "5":
				st.Write(be+"/state", "6")
			}
		}
	}()
	return b
}

func connectedVhost(t *testing.T, h *sim.Host, g *sim.Domain, luns ...string) Vhost {
	t.Helper()
	v := Vhost{FrontendDom: g.ID()}
	var specs []vscsispec.Spec
	for _, l := range luns {
		specs = append(specs, mustSpec(t, l))
	}
	if err := CreateVhost(h.Store(), v, specs...); err != nil {
		t.Fatal(err)
	}
	luns2, _ := readLUNs(h.Store(), v.BackendPath())
	for _, l := range luns2 {
		h.Store().Write(v.devPath(l.Index)+"/state", "4")
	}
	h.Store().Write(v.BackendPath()+"/state", "4")
	return v
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestAddLUNToAConnectedVhost(t *testing.T) {
	h, g := newGuest(t)
	v := connectedVhost(t, h, g, "/a, 0:0:0:0", "/b, 0:0:1:0")
	b := runBackend(t, h.Store(), v)
	n, err := AddLUN(timeout(t, 20*time.Second), h.Store(), v, mustSpec(t, "/c, 0:0:2:0, shared=1"))
	if err != nil || n != 2 {
		t.Fatalf("AddLUN: %d, %v", n, err)
	}
	if !b.saw("7") {
		t.Error("the backend never saw Reconfiguring")
	}
	for path, want := range map[string]string{
		v.devPath(2) + "/p-dev":    "/c",
		v.devPath(2) + "/v-dev":    "0:0:2:0",
		v.devPath(2) + "/state":    "4",
		v.devPath(2) + "/shared":   "1",
		v.BackendPath() + "/state": "4",
	} {
		if got, err := g.Store().Read(path); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
}

// A LUN the backend cannot attach comes back at 6: an error, and its
// directory is gone, so its v-dev is free again.
func TestAddLUNTheBackendRefuses(t *testing.T) {
	h, g := newGuest(t)
	v := connectedVhost(t, h, g, "/a, 0:0:0:0")
	runBackend(t, h.Store(), v, "/missing")
	_, err := AddLUN(timeout(t, 20*time.Second), h.Store(), v, mustSpec(t, "/missing, 0:0:1:0"))
	if err == nil || err.Error() != "toolstack: the backend could not attach "+v.devPath(1)+" (its log says why); it is removed" {
		t.Fatalf("AddLUN of a LUN refused: %v", err)
	}
	if _, err := h.Store().Read(v.devPath(1)); !errors.Is(err, xen.ErrNotFound) {
		t.Errorf("refused LUN left: %v", err)
	}
}

// Before a frontend connects, the backend reads vscsi-devs when it
// comes: the LUN is written at 1 and nothing is waited for.
func TestAddLUNBeforeTheFrontend(t *testing.T) {
	h, g := newGuest(t)
	v := Vhost{FrontendDom: g.ID()}
	if err := CreateVhost(h.Store(), v, mustSpec(t, "/a, 0:0:0:0")); err != nil {
		t.Fatal(err)
	}
	for _, state := range []string{"1", "2"} {
		h.Store().Write(v.BackendPath()+"/state", state)
		n, err := AddLUN(timeout(t, time.Minute), h.Store(), v, mustSpec(t, "/b, 0:0:1:"+state))
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := h.Store().Read(v.devPath(n) + "/state"); s != "1" {
			t.Errorf("vhost at %s: LUN at %q", state, s)
		}
		if s, _ := h.Store().Read(v.BackendPath() + "/state"); s != state {
			t.Errorf("vhost at %s moved to %s", state, s)
		}
	}
}

func TestAddLUNRefuses(t *testing.T) {
	h, g := newGuest(t)
	v := connectedVhost(t, h, g, "/a, 3:0:0:0", "/b, 3:0:1:0")
	be := v.BackendPath()
	ctx := timeout(t, 20*time.Second)
	for _, c := range []struct{ spec, want string }{
		{"/c, 3:0:1:0", "toolstack: vhost 0 already has a LUN at 3:0:1:0 (/b, dev-1); detach it first"},
		{"/c, 4:0:5:0", "toolstack: v-dev 4:0:5:0 is not on vhost 0's host 3"},
		{"/c, 3:0:5:0, feature-host", "toolstack: feature-host is the vhost's, and vhost 0 (" + be + ") does not have it"},
	} {
		if _, err := AddLUN(ctx, h.Store(), v, mustSpec(t, c.spec)); err == nil || err.Error() != c.want {
			t.Errorf("%s:\n got %v\nwant %s", c.spec, err, c.want)
		}
	}
	h.Store().Write(be+"/state", "5")
	if _, err := AddLUN(ctx, h.Store(), v, mustSpec(t, "/c, 3:0:5:0")); err == nil || err.Error() != "toolstack: vhost "+be+" is Closing: it is going away" {
		t.Errorf("adding to a closing vhost: %v", err)
	}
	if _, err := AddLUN(ctx, h.Store(), Vhost{FrontendDom: g.ID(), DevID: 9}, mustSpec(t, "/c, 3:0:5:0")); !errors.Is(err, xen.ErrNotFound) {
		t.Errorf("adding to no vhost: %v", err)
	}
	if luns, _ := readLUNs(h.Store(), be); len(luns) != 2 {
		t.Errorf("refusals wrote LUNs: %+v", luns)
	}
}

// No backend answers the Reconfiguring: ErrNotReconfigured, and the LUN
// stays written for a backend that comes later.
func TestAddLUNWithoutABackend(t *testing.T) {
	h, g := newGuest(t)
	v := connectedVhost(t, h, g, "/a, 0:0:0:0")
	_, err := AddLUN(timeout(t, 200*time.Millisecond), h.Store(), v, mustSpec(t, "/b, 0:0:1:0"))
	if !errors.Is(err, ErrNotReconfigured) {
		t.Fatalf("AddLUN without a backend: %v", err)
	}
	if s, _ := h.Store().Read(v.devPath(1) + "/state"); s != "1" {
		t.Errorf("LUN at %q", s)
	}
}

func TestRemoveLUN(t *testing.T) {
	h, g := newGuest(t)
	v := connectedVhost(t, h, g, "/a, 0:0:0:0", "/b, 0:0:1:0", "/c, 0:0:2:0")
	st := h.Store()
	// No backend: refused without force, done with it.
	if err := RemoveLUN(timeout(t, 200*time.Millisecond), st, v, 2, false); !errors.Is(err, ErrNotReconfigured) {
		t.Fatalf("RemoveLUN without a backend: %v", err)
	}
	if s, _ := st.Read(v.devPath(2) + "/state"); s != "5" {
		t.Errorf("LUN at %q, want 5", s)
	}
	if err := RemoveLUN(timeout(t, 200*time.Millisecond), st, v, 2, true); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Read(v.devPath(2)); !errors.Is(err, xen.ErrNotFound) {
		t.Errorf("forced removal left dev-2: %v", err)
	}
	st.Write(v.BackendPath()+"/state", "4") // the Reconfiguring nobody answered
	// With a backend: 5, Reconfiguring, 6, gone.
	b := runBackend(t, st, v)
	if err := RemoveLUN(timeout(t, 20*time.Second), st, v, 1, false); err != nil {
		t.Fatal(err)
	}
	if !b.saw("7") {
		t.Error("the backend never saw Reconfiguring")
	}
	if _, err := st.Read(v.devPath(1)); !errors.Is(err, xen.ErrNotFound) {
		t.Errorf("dev-1 left: %v", err)
	}
	if s, _ := st.Read(v.devPath(0) + "/state"); s != "4" {
		t.Errorf("dev-0 at %q", s)
	}
	if err := RemoveLUN(timeout(t, 20*time.Second), st, v, 7, false); err == nil || err.Error() != "toolstack: vhost "+v.BackendPath()+" has no LUN dev-7: "+xen.ErrNotFound.Error() {
		t.Errorf("removing no LUN: %v", err)
	}
}

// A vhost no frontend has connected to holds no LUN open: dev-N goes at
// once, without force and without a backend.
func TestRemoveLUNOfAnUnconnectedVhost(t *testing.T) {
	h, g := newGuest(t)
	v := Vhost{FrontendDom: g.ID()}
	if err := CreateVhost(h.Store(), v, mustSpec(t, "/a, 0:0:0:0"), mustSpec(t, "/b, 0:0:1:0")); err != nil {
		t.Fatal(err)
	}
	if err := RemoveLUN(timeout(t, time.Minute), h.Store(), v, 1, false); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Store().Read(v.devPath(1)); !errors.Is(err, xen.ErrNotFound) {
		t.Errorf("dev-1 left: %v", err)
	}
}

// A vhost in the middle of a reconfiguration is waited for, not refused.
func TestRemoveLUNWaitsOutAReconfiguration(t *testing.T) {
	h, g := newGuest(t)
	v := connectedVhost(t, h, g, "/a, 0:0:0:0", "/b, 0:0:1:0")
	st := h.Store()
	st.Write(v.BackendPath()+"/state", "8")
	done := make(chan error, 1)
	go func() { done <- RemoveLUN(timeout(t, 20*time.Second), st, v, 1, false) }()
	runBackend(t, st, v)
	st.Write(v.BackendPath()+"/state", "4")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := st.Read(v.devPath(1)); !errors.Is(err, xen.ErrNotFound) {
		t.Errorf("dev-1 left: %v", err)
	}
}

func TestRemoveVhost(t *testing.T) {
	h, g := newGuest(t)
	v := connectedVhost(t, h, g, "/a, 0:0:0:0")
	runBackend(t, h.Store(), v)
	if err := RemoveVhost(timeout(t, 20*time.Second), h.Store(), v, false); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{v.BackendPath(), v.FrontendPath()} {
		if _, err := h.Store().Read(p); !errors.Is(err, xen.ErrNotFound) {
			t.Errorf("%s left: %v", p, err)
		}
	}
}

// xl's vscsi-attach and vscsi-detach: the v-dev's host number picks the
// vhost; detaching a vhost's last LUN removes the vhost.
func TestAttachAndDetachByVDev(t *testing.T) {
	h, g := newGuest(t)
	st := h.Store()
	ctx := timeout(t, time.Minute)
	for _, c := range []struct {
		spec string
		want Placed
	}{
		{"/a, 0:0:0:0", Placed{Vhost: Vhost{FrontendDom: g.ID(), DevID: 0}, Index: 0, NewVhost: true}},
		{"/b, 0:0:1:0", Placed{Vhost: Vhost{FrontendDom: g.ID(), DevID: 0}, Index: 1}},
		{"/c, 5:0:0:0", Placed{Vhost: Vhost{FrontendDom: g.ID(), DevID: 1}, Index: 0, NewVhost: true}},
		{"/d, 5:0:0:1", Placed{Vhost: Vhost{FrontendDom: g.ID(), DevID: 1}, Index: 1}},
	} {
		got, err := AttachVscsi(ctx, st, 0, g.ID(), mustSpec(t, c.spec))
		if err != nil || got != c.want {
			t.Errorf("attach %s: %+v, %v; want %+v", c.spec, got, err, c.want)
		}
	}
	if _, err := AttachVscsi(ctx, st, 0, g.ID(), mustSpec(t, "/e, 5:0:0:1")); err == nil {
		t.Error("a second LUN at 5:0:0:1 was attached")
	}
	for _, c := range []struct {
		vdev string
		want Detached
	}{
		{"0:0:1:0", Detached{Vhost: Vhost{FrontendDom: g.ID(), DevID: 0}, Index: 1}},
		{"0:0:0:0", Detached{Vhost: Vhost{FrontendDom: g.ID(), DevID: 0}, Index: 0, VhostRemoved: true}},
	} {
		a, _ := vscsibus.ParseVDev(c.vdev)
		got, err := DetachVscsi(ctx, st, 0, g.ID(), a, false)
		if err != nil || got != c.want {
			t.Errorf("detach %s: %+v, %v; want %+v", c.vdev, got, err, c.want)
		}
	}
	if _, err := st.Read("/local/domain/1/device/vscsi/0"); !errors.Is(err, xen.ErrNotFound) {
		t.Errorf("vhost 0's frontend left: %v", err)
	}
	a, _ := vscsibus.ParseVDev("0:0:0:0")
	if _, err := DetachVscsi(ctx, st, 0, g.ID(), a, false); !errors.Is(err, ErrNoLUN) {
		t.Errorf("detaching a LUN gone: %v", err)
	}
	list, _ := Vhosts(st, 0, g.ID())
	if len(list) != 1 || list[0].DevID != 1 || len(list[0].LUNs) != 2 {
		t.Errorf("left: %+v", list)
	}
	// The next vhost is numbered past the guest's highest, as libxl does.
	got, err := AttachVscsi(ctx, st, 0, g.ID(), mustSpec(t, "/f, 7:0:0:0"))
	if err != nil || got.Vhost.DevID != 2 || !got.NewVhost {
		t.Errorf("attach on host 7: %+v, %v", got, err)
	}
}
