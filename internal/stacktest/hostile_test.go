package stacktest

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenbus"
)

// rawFront is a hand-made frontend that writes whatever bytes a test wants
// into the ring: the hostile guest.
type rawFront struct {
	t     *testing.T
	dom   *sim.Domain
	ringG *xen.Granted
	front *ring.Front
	ch    xen.Channel
	vbd   toolstack.VBD
	data  *xen.Granted // 16 writable pages
	ro    *xen.Granted // 1 read-only page
}

func waitState(t *testing.T, st xen.Store, path, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := xenbus.WaitNode(ctx, st, path, xenbus.OneOf(want)); err != nil {
		t.Fatalf("want %q: %v", want, err)
	}
}

func newRawFront(t *testing.T, h *sim.Host, dom *sim.Domain, vdev string) *rawFront {
	spec, _ := diskspec.Parse("vdev=" + vdev + ", target=memory")
	vbd, err := toolstack.NewVBD(0, dom.ID(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := toolstack.Create(h.Store(), vbd); err != nil {
		t.Fatal(err)
	}
	st := dom.Store()
	waitState(t, st, vbd.BackendPath()+"/state", "2")
	g, err := dom.Granter().Grant(0, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ring.InitFront(g.Mem, blkif.X86_64.SlotSize())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := dom.Events().AllocUnbound(0)
	if err != nil {
		t.Fatal(err)
	}
	fe := vbd.FrontendPath()
	st.Write(fe+"/ring-ref", strconv.Itoa(int(g.Refs[0])))
	st.Write(fe+"/event-channel", strconv.Itoa(int(ch.Port())))
	st.Write(fe+"/protocol", "x86_64-abi")
	st.Write(fe+"/state", "3")
	waitState(t, st, vbd.BackendPath()+"/state", "4")
	data, _ := dom.Granter().Grant(0, 16, false)
	ro, _ := dom.Granter().Grant(0, 1, true)
	return &rawFront{t: t, dom: dom, ringG: g, front: f, ch: ch, vbd: vbd, data: data, ro: ro}
}

// one is a segment array holding a single segment.
func one(ref uint32, first, last uint8) [11]blkif.Segment {
	return [11]blkif.Segment{{Gref: ref, FirstSect: first, LastSect: last}}
}

// do sends one request and returns the response status.
func (r *rawFront) do(req blkif.Request) int16 {
	r.t.Helper()
	blkif.X86_64.EncodeRequest(r.front.NextRequest(), &req)
	r.front.Produce(1)
	if r.front.Push() {
		r.ch.Notify()
	}
	rsp := r.awaitResponse(5 * time.Second)
	if rsp.ID != req.ID {
		r.t.Fatalf("response id %d for request %d", rsp.ID, req.ID)
	}
	return rsp.Status
}

// The hostile guest against a backend that maps its pages and against
// one that copies them (grant-copy mode): the same requests fail alone.
func TestHostileFrontend(t *testing.T) {
	t.Run("map", func(t *testing.T) { testHostileFrontend(t, blkback.Config{MaxIndirectSegments: 1024}) })
	t.Run("grant-copy", func(t *testing.T) {
		testHostileFrontend(t, blkback.Config{MaxIndirectSegments: 1024, GrantCopy: true})
	})
}

func testHostileFrontend(t *testing.T, bcfg blkback.Config) {
	s := simstack.ForTest(t, nil, simstack.Options{})
	h := s.Host
	bad, _ := h.NewDomain("hostile")
	good, _ := h.NewDomain("good")
	const size = 1 << 20
	disks := map[xen.DomID]*storage.Memory{bad.ID(): newMemDisk(size), good.ID(): newMemDisk(size)}
	s.Serve(bcfg, func(st xen.Store, dir string) (storage.Device, error) {
		id, _ := st.Read(dir + "/frontend-id")
		n, _ := strconv.Atoi(id)
		return disks[xen.DomID(n)], nil
	})
	raw := newRawFront(t, h, bad, "xvda")

	spec, _ := diskspec.Parse("vdev=xvdb, target=memory")
	gg, err := s.AddVBD(good, spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Open(ctx, gg, blkfront.Config{}); err != nil {
		t.Fatal(err)
	}
	gdisk := gg.Disk

	ref := func(i int) uint32 { return uint32(raw.data.Refs[i]) }
	okRead := blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(ref(0), 0, 7)}
	if st := raw.do(okRead); st != blkif.RspOkay {
		t.Fatalf("a good request failed: %d", st)
	}
	cases := []struct {
		name string
		req  blkif.Request
	}{
		{"unknown operation", blkif.Request{Operation: 0x42}},
		{"reserved operation 4", blkif.Request{Operation: blkif.OpReserved1}},
		{"nr_segments over 11", blkif.Request{Operation: blkif.OpRead, NrSegments: 12}},
		{"nr_segments 255", blkif.Request{Operation: blkif.OpWrite, NrSegments: 255}},
		{"no segments", blkif.Request{Operation: blkif.OpRead}},
		{"first_sect > last_sect", blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(ref(0), 5, 4)}},
		{"last_sect >= 8", blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(ref(0), 0, 8)}},
		{"sectors past the end", blkif.Request{Operation: blkif.OpWrite, Sector: size/512 - 7, NrSegments: 1, Seg: one(ref(0), 0, 7)}},
		{"sector near 2^64", blkif.Request{Operation: blkif.OpWrite, Sector: ^uint64(0) - 3, NrSegments: 1, Seg: one(ref(0), 0, 7)}},
		{"grant never made", blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(9999, 0, 7)}},
		{"grant ref 0", blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(0, 0, 7)}},
		{"read into a read-only grant", blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(uint32(raw.ro.Refs[0]), 0, 7)}},
		{"discard past the end", blkif.Request{Operation: blkif.OpDiscard, Sector: 1, NrSectors: size / 512}},
		{"discard wrapping 2^64", blkif.Request{Operation: blkif.OpDiscard, Sector: 10, NrSectors: ^uint64(0) - 5}},
		{"indirect with too many segments", blkif.Request{Operation: blkif.OpIndirect, IndirectOp: blkif.OpRead, NrSegments: 1025}},
		{"indirect with 8 pages over the limit", blkif.Request{Operation: blkif.OpIndirect, IndirectOp: blkif.OpRead, NrSegments: 4096}},
		{"indirect flush", blkif.Request{Operation: blkif.OpIndirect, IndirectOp: blkif.OpFlushDiskcache, NrSegments: 1}},
		{"indirect page not granted", blkif.Request{Operation: blkif.OpIndirect, IndirectOp: blkif.OpRead, NrSegments: 1, IndirectGrefs: [8]uint32{12345}}},
		{"extra slot without a flagged request", blkif.Request{Operation: 0x7f}},
	}
	for i, c := range cases {
		c.req.ID = uint64(1000 + i)
		if st := raw.do(c.req); st == blkif.RspOkay {
			t.Errorf("%s: answered OKAY", c.name)
		}
	}
	// A flagged pair sent to a backend that does not offer the extension:
	// two slots, two error responses, and the ring stays in step.
	pair := blkif.Request{ID: 555, Operation: blkif.OpRead | blkif.OpExtraFlag}
	blkif.X86_64.EncodeRequest(raw.front.NextRequest(), &pair)
	blkif.X86_64.EncodeExtraRequest(raw.front.RequestAt(1), &blkif.ExtraRequest{Type: blkif.ExtraTypeSCSI, CmdLen: 6, ID: 555})
	raw.front.Produce(2)
	raw.front.Push()
	raw.ch.Notify()
	deadline := time.Now().Add(5 * time.Second)
	for raw.front.Unconsumed() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d responses to a flagged pair, want 2", raw.front.Unconsumed())
		}
		raw.ch.Wait(50 * time.Millisecond)
	}
	for i := 0; i < 2; i++ {
		var rsp blkif.Response
		blkif.X86_64.DecodeResponse(raw.front.Response(), &rsp)
		raw.front.Consume(1)
		if rsp.Status != blkif.RspError {
			t.Errorf("slot %d of an unnegotiated pair: status %d", i, rsp.Status)
		}
	}
	// A revoked grant: granted, used, revoked, used again.
	g1, _ := bad.Granter().Grant(0, 1, false)
	r1 := blkif.Request{ID: 1, Operation: blkif.OpRead, NrSegments: 1, Seg: one(uint32(g1.Refs[0]), 0, 7)}
	if st := raw.do(r1); st != blkif.RspOkay {
		t.Fatalf("fresh grant: %d", st)
	}
	if err := bad.Granter().Revoke(g1); err != nil {
		t.Fatalf("revoke after use (the backend must not keep it mapped without feature-persistent): %v", err)
	}
	if st := raw.do(r1); st == blkif.RspOkay {
		t.Error("a revoked grant was used")
	}
	if st := raw.do(okRead); st != blkif.RspOkay {
		t.Fatal("the device stopped serving good requests after bad ones")
	}
	// An event storm costs nothing but wake-ups.
	for i := 0; i < 100000; i++ {
		raw.ch.Notify()
	}
	// The good guest's disk works throughout.
	data := bytes.Repeat([]byte("good"), 1024)
	if _, err := gdisk.WriteAt(ctx, data, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := gdisk.ReadAt(ctx, got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("good guest: %v", err)
	}
	// req_prod more than a ring ahead: the device is disconnected, the
	// other one keeps working.
	mem := raw.ringG.Mem
	mem[0], mem[1], mem[2], mem[3] = 0xff, 0xff, 0, 0
	raw.ch.Notify()
	waitState(t, bad.Store(), raw.vbd.BackendPath()+"/state", "6")
	if e, _ := bad.Store().Read(raw.vbd.BackendPath() + "/error"); e == "" {
		t.Error("no error node explains the disconnect")
	}
	if _, err := gdisk.ReadAt(ctx, got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("good guest after the other's disconnect: %v", err)
	}
}
