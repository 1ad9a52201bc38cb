package xentest

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/linux"
	"github.com/xenblk/xenblk/xenbus"
)

// backendType keeps these tests' vbds apart from anything else in dom0.
const backendType = "xenblk-test"

func open(t *testing.T) *linux.Domain {
	t.Helper()
	if !linux.Available() {
		if os.Getenv("XENBLK_REQUIRE_XEN") != "" {
			t.Fatalf("XENBLK_REQUIRE_XEN is set but %s is missing", linux.DevPrivcmd)
		}
		t.Skipf("SKIP: not on Xen (%s missing); these run in `make xenlab`", linux.DevPrivcmd)
	}
	d, err := linux.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// server starts our backend on real Xen, serving each vbd the device
// devices[backend directory] names; it stops at the test's end.
func server(t *testing.T, devices *disks) {
	back := open(t)
	b := simstack.Serve(&blkback.Server{Config: blkback.Config{Domain: back, MaxIndirectSegments: 256}, BackendType: backendType,
		Open: func(st xen.Store, dir string) (storage.Device, error) { return devices.get(dir), nil }})
	t.Cleanup(func() { b.Stop() })
}

// disks maps backend directories to the devices the server opens.
type disks struct {
	mu sync.Mutex
	m  map[string]storage.Device
}

func (d *disks) get(dir string) storage.Device {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[dir]
}

func (d *disks) put(dir string, dev storage.Device) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[dir] = dev
}

var nextVdev = 0

// attach creates a vbd for dom0 under our test backend type; it returns
// the vbd and removes its nodes at the test's end.
func attach(t *testing.T, st xen.Store, devices *disks, dev storage.Device) toolstack.VBD {
	t.Helper()
	nextVdev++
	spec, err := diskspec.Parse("vdev=xvd" + string(rune('h'+nextVdev%16)) + ", target=memory")
	if err != nil {
		t.Fatal(err)
	}
	vbd, err := toolstack.NewVBD(0, 0, spec)
	if err != nil {
		t.Fatal(err)
	}
	vbd.BackendType = backendType
	devices.put(vbd.BackendPath(), dev)
	if err := toolstack.Create(st, vbd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { detach(st, vbd) })
	return vbd
}

// detach removes a vbd as xl block-detach does. With the frontend still
// running, the backend closes at once; with the frontend gone, the
// toolstack waits for it and then removes the nodes anyway.
func detach(st xen.Store, vbd toolstack.VBD) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	toolstack.Remove(ctx, st, vbd, true)
}

// TestConformanceOnRealXen runs the block-device conformance suite
// through our blkfront and blkback over real grants and event channels.
func TestConformanceOnRealXen(t *testing.T) {
	front := open(t)
	devices := &disks{m: map[string]storage.Device{}}
	server(t, devices)
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
		vbd := attach(t, front.Store(), devices, storage.NewMemory(size))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d, err := blkfront.Open(ctx, blkfront.Config{Domain: front, Dir: vbd.FrontendPath()})
		if err != nil {
			t.Fatal(err)
		}
		// Detach while the frontend runs (it answers the backend's
		// Closing), then stop it; the vbd's own cleanup finds it gone.
		t.Cleanup(func() { detach(front.Store(), vbd); d.Close() })
		return d.Device()
	})
}

func waitState(t *testing.T, st xen.Store, path string, want ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := xenbus.WaitNode(ctx, st, path, xenbus.OneOf(want...))
	if err != nil {
		t.Fatalf("want one of %q: %v", want, err)
	}
	return v
}

// TestHostilePeersOnRealXen: a frontend that revokes a grant under the
// backend, closes its event channel, removes its nodes in the middle of
// the handshake; each hurts only its own device, and a good device goes on.
func TestHostilePeersOnRealXen(t *testing.T) {
	dom := open(t)
	st := dom.Store()
	devices := &disks{m: map[string]storage.Device{}}
	server(t, devices)

	goodVBD := attach(t, st, devices, storage.NewMemory(4<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	good, err := blkfront.Open(ctx, blkfront.Config{Domain: dom, Dir: goodVBD.FrontendPath()})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	goodStillWorks := func(when string) {
		t.Helper()
		data := bytes.Repeat([]byte(when[:1]), 8192)
		if _, err := good.WriteAt(ctx, data, 4096); err != nil {
			t.Fatalf("good device, %s: %v", when, err)
		}
		got := make([]byte, len(data))
		if _, err := good.ReadAt(ctx, got, 4096); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("good device, %s: read back %v", when, err)
		}
	}

	// A raw frontend on its own vbd.
	bad := attach(t, st, devices, storage.NewMemory(1<<20))
	waitState(t, st, bad.BackendPath()+"/state", "2")
	rg, err := dom.Granter().Grant(dom.ID(), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ring.InitFront(rg.Mem, blkif.X86_64.SlotSize())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := dom.Events().AllocUnbound(dom.ID())
	if err != nil {
		t.Fatal(err)
	}
	fe := bad.FrontendPath()
	st.Write(fe+"/ring-ref", strconv.Itoa(int(rg.Refs[0])))
	st.Write(fe+"/event-channel", strconv.Itoa(int(ch.Port())))
	st.Write(fe+"/protocol", "x86_64-abi")
	st.Write(fe+"/state", "3")
	waitState(t, st, bad.BackendPath()+"/state", "4")
	do := func(req blkif.Request) int16 {
		t.Helper()
		blkif.X86_64.EncodeRequest(f.NextRequest(), &req)
		f.Produce(1)
		if f.Push() {
			ch.Notify()
		}
		deadline := time.Now().Add(10 * time.Second)
		for f.Unconsumed() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no response to request %d", req.ID)
			}
			ch.Wait(50 * time.Millisecond)
		}
		var rsp blkif.Response
		blkif.X86_64.DecodeResponse(f.Response(), &rsp)
		f.Consume(1)
		return rsp.Status
	}

	// A grant revoked under the backend: used once, revoked, used again.
	g, err := dom.Granter().Grant(dom.ID(), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	seg := [11]blkif.Segment{{Gref: uint32(g.Refs[0]), FirstSect: 0, LastSect: 7}}
	read := blkif.Request{ID: 1, Operation: blkif.OpRead, NrSegments: 1, Seg: seg}
	if s := do(read); s != blkif.RspOkay {
		t.Fatalf("a good read: status %d", s)
	}
	if err := dom.Granter().Revoke(g); err != nil {
		t.Fatal(err)
	}
	read.ID = 2
	if s := do(read); s == blkif.RspOkay {
		t.Error("a read into a revoked grant answered OKAY")
	}
	if s := do(blkif.Request{ID: 3, Operation: blkif.OpRead, NrSegments: 1, Seg: [11]blkif.Segment{{Gref: 1 << 30, LastSect: 7}}}); s == blkif.RspOkay {
		t.Error("a read into a grant that never existed answered OKAY")
	}
	goodStillWorks("after bad grants")

	// The frontend closes its event channel, then its device.
	ch.Close()
	st.Write(fe+"/state", "5")
	waitState(t, st, bad.BackendPath()+"/state", "5", "6")
	st.Write(fe+"/state", "6")
	waitState(t, st, bad.BackendPath()+"/state", "6")
	dom.Granter().Revoke(rg)
	goodStillWorks("after the bad frontend closed")

	// A frontend whose nodes vanish in the middle of the handshake.
	gone := attach(t, st, devices, storage.NewMemory(1<<20))
	waitState(t, st, gone.BackendPath()+"/state", "2")
	if err := st.Remove(gone.FrontendPath()); err != nil {
		t.Fatal(err)
	}
	waitState(t, st, gone.BackendPath()+"/state", "5", "6")
	goodStillWorks("after a frontend vanished mid-handshake")
}
