package vscsiback_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// The tests drive vscsiback as a guest would: a small frontend of their
// own (testFront) puts vscsiif requests on a ring granted by a guest of a
// simulated host, with data in pages the guest granted, and reads the
// responses back; the backend runs in dom0 with engines from
// scsiengine, as the server will give them.

var quiet = slog.New(slog.DiscardHandler)

// rig is one simulated host with one guest and an engine registry whose
// units share a reservation store.
type rig struct {
	t     testing.TB
	host  *sim.Host
	guest *sim.Domain
	reg   *scsiengine.Registry
	// concurrency and crewAfter are the vhosts' Config's.
	concurrency int
	crewAfter   time.Duration
}

func newRig(t testing.TB) *rig {
	t.Helper()
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	g, err := h.NewDomain("guest")
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, host: h, guest: g, reg: scsiengine.New(scsiengine.Config{Reservations: pr.NewMemoryStore(), Log: quiet})}
}

// engine is the emulation over dev as the registry gives a unit whose
// backing disk is id.
func (r *rig) engine(id string, dev storage.Device) scsiengine.Engine {
	r.t.Helper()
	e, _, err := r.reg.Open(scsiengine.Unit{Name: id, ID: id}, dev)
	if err != nil {
		r.t.Fatal(err)
	}
	return e
}

// at is a guest's channel:target:lun.
type at struct{ channel, target, lun uint16 }

// lun is a LUN at a whose engine is the registry's for disk id on dev.
func (r *rig) lun(a at, id string, dev storage.Device) vscsiback.LUN {
	return vscsiback.LUN{Channel: a.channel, Target: a.target, LUN: a.lun, Engine: r.engine(id, dev)}
}

// testFront is the guest's end of one vhost: the ring it granted, its
// event channel, and data pages granted once (writable, and a few
// read-only ones).
type testFront struct {
	t       testing.TB
	dom     xen.Domain
	abi     blkif.ABI
	ring    *ring.Front
	ringMem []byte
	ringRef xen.GrantRef
	ch      xen.Channel
	v       *vscsiback.Vhost // nil when a Server serves the vhost
	data    *xen.Granted     // dataPages writable pages
	ro      *xen.Granted     // 4 read-only pages
	lists   *xen.Granted     // listPages writable pages for SG_GRANT lists
	done    chan error
	next    uint16 // the next rqid
}

const (
	dataPages = 1100
	listPages = 4
)

// vhost connects a new vhost of r's guest, named name, serving luns.
func (r *rig) vhost(name string, sgGrant int, luns ...vscsiback.LUN) *testFront {
	t := r.t
	t.Helper()
	f := newGuestFront(t, r.guest)
	var err error
	f.v, err = vscsiback.Connect(vscsiback.Config{
		Domain: r.host.Dom0(), Front: r.guest.ID(), Vhost: "backend/vscsi/" + name,
		RingRef: f.ringRef, Port: f.ch.Port(), ABI: f.abi, SGGrant: sgGrant, Log: quiet,
		Concurrency: r.concurrency, CrewAfter: r.crewAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.v.SetLUNs(luns)
	go func() { f.done <- f.v.Run() }()
	t.Cleanup(func() {
		_ = f.v.Close()
		if err := <-f.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return f
}

// newGuestFront is guest g's end of a vhost before any backend has it:
// the ring granted to dom0 and initialised, an unbound channel, the data
// and list pages; the test's cleanup revokes them (after the backend's,
// registered later, has let go).
func newGuestFront(t testing.TB, g xen.Domain) *testFront {
	t.Helper()
	f := &testFront{t: t, dom: g, abi: blkif.X86_64, done: make(chan error, 1), next: 1}
	rg, err := g.Granter().Grant(0, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	f.ringRef, f.ringMem = rg.Refs[0], rg.Mem
	if f.ring, err = ring.InitFront(rg.Mem, vscsiif.SlotSize(f.abi)); err != nil {
		t.Fatal(err)
	}
	if f.ch, err = g.Events().AllocUnbound(0); err != nil {
		t.Fatal(err)
	}
	if f.data, err = g.Granter().Grant(0, dataPages, false); err != nil {
		t.Fatal(err)
	}
	if f.ro, err = g.Granter().Grant(0, 4, true); err != nil {
		t.Fatal(err)
	}
	if f.lists, err = g.Granter().Grant(0, listPages, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = f.ch.Close()
		for _, gr := range []*xen.Granted{f.data, f.ro, f.lists, rg} {
			if err := g.Granter().Revoke(gr); err != nil {
				t.Errorf("revoke: %v", err)
			}
		}
	})
	return f
}

// oneLUN is a rig with one vhost serving one LUN at 0:0:0 over a fresh
// disk, whose nexus has had its power-on unit attention.
func oneLUN(t testing.TB, sgGrant int) (*rig, *storage.Memory, *testFront) {
	r := newRig(t)
	dev := newDisk(t)
	f := r.vhost("1/0", sgGrant, vscsiback.LUN{Engine: r.engine("disk", dev)})
	f.spoken(at{})
	return r, dev, f
}

// spoken has the vhost's nexus meet the power-on unit attention of each
// LUN, so that what follows starts clean.
func (f *testFront) spoken(luns ...at) {
	f.t.Helper()
	for _, a := range luns {
		checkCondition(f.t, f.do(f.cdb(a, tur, vscsiif.DirNone, 0)), scsi.PowerOnReset)
	}
}

// rqid hands out the next request id.
func (f *testFront) rqid() uint16 {
	id := f.next
	f.next++
	return id
}

// push puts reqs on the ring with one publication, notifying if the
// backend asked.
func (f *testFront) push(reqs ...*vscsiif.Request) {
	for _, r := range reqs {
		vscsiif.EncodeRequest(f.abi, f.ring.NextRequest(), r)
		f.ring.Produce(1)
	}
	if f.ring.Push() {
		if err := f.ch.Notify(); err != nil {
			f.t.Fatal(err)
		}
	}
}

// await waits for the next response and decodes it into rsp; false when
// none came within 10s (or the channel failed). It allocates nothing,
// for the allocation tests.
func (f *testFront) await(rsp *vscsiif.Response) bool {
	if !f.ready() {
		return false
	}
	vscsiif.DecodeResponse(f.abi, f.ring.Response(), rsp)
	f.ring.Consume(1)
	return true
}

// ready waits until a response is published, unconsumed, at
// f.ring.Response(); false when none came within 10s.
func (f *testFront) ready() bool {
	deadline := time.Now().Add(10 * time.Second)
	for f.ring.Unconsumed() == 0 {
		if f.ring.FinalCheck() {
			continue
		}
		if time.Now().After(deadline) {
			return false
		}
		if _, err := f.ch.Wait(100 * time.Millisecond); err != nil {
			return false
		}
	}
	return true
}

// collect waits for n responses (bounded: a backend that never answers
// fails the test) and returns them in ring order.
func (f *testFront) collect(n int) []vscsiif.Response {
	f.t.Helper()
	out := make([]vscsiif.Response, n)
	for i := range out {
		if !f.await(&out[i]) {
			f.t.Fatalf("%d of %d responses after 10s", i, n)
		}
	}
	return out
}

// do sends one request and returns its response.
func (f *testFront) do(r *vscsiif.Request) vscsiif.Response {
	f.t.Helper()
	f.push(r)
	rsp := f.collect(1)[0]
	if rsp.RqID != r.RqID {
		f.t.Fatalf("response for rqid %d, want %d", rsp.RqID, r.RqID)
	}
	return rsp
}

// page is data page i of the front's pool.
func (f *testFront) page(i int) []byte { return f.data.Mem[i*xen.PageSize : (i+1)*xen.PageSize] }

// cdb builds a SCSI_CDB request for lun a whose data is n bytes in the
// pool's pages from page 0 on, page-aligned: direct segments, or SG_GRANT
// lists in the front's list pages when over vscsiif.SGTableSize pages.
func (f *testFront) cdb(a at, cdb []byte, dir uint8, n int) *vscsiif.Request {
	r := &vscsiif.Request{RqID: f.rqid(), Act: vscsiif.ActSCSICDB, CmdLen: uint8(len(cdb)),
		Channel: a.channel, ID: a.target, LUN: a.lun, DataDirection: dir}
	copy(r.Cmnd[:], cdb)
	var segs []vscsiif.Segment
	for off, i := 0, 0; off < n; off, i = off+xen.PageSize, i+1 {
		segs = append(segs, vscsiif.Segment{Gref: uint32(f.data.Refs[i]), Length: uint16(min(n-off, xen.PageSize))})
	}
	f.setSegments(r, segs)
	return r
}

// setSegments gives r its data segments: in seg[] when they fit, else
// as SG_GRANT lists, one list page after another.
func (f *testFront) setSegments(r *vscsiif.Request, segs []vscsiif.Segment) {
	if len(segs) <= vscsiif.SGTableSize {
		copy(r.Seg[:], segs)
		r.NrSegments = uint8(len(segs))
		return
	}
	lists := 0
	for len(segs) > 0 {
		k := min(len(segs), vscsiif.SGPerPage)
		page := f.lists.Mem[lists*xen.PageSize:]
		for i, s := range segs[:k] {
			vscsiif.EncodeSegment(page[i*vscsiif.SegmentSize:], s)
		}
		r.Seg[lists] = vscsiif.Segment{Gref: uint32(f.lists.Refs[lists]), Length: uint16(k * vscsiif.SegmentSize)}
		lists++
		segs = segs[k:]
	}
	r.NrSegments = vscsiif.SGGrant | uint8(lists)
}

// Checks of a response.

func good(t testing.TB, rsp vscsiif.Response) {
	t.Helper()
	if rsp.Rslt != 0 {
		t.Fatalf("rqid %d: rslt %#x (host %d, status %#x), sense % x; want GOOD", rsp.RqID, rsp.Rslt,
			vscsiif.HostOf(rsp.Rslt), vscsiif.StatusOf(rsp.Rslt), rsp.Sense[:rsp.SenseLen])
	}
}

func rslt(t testing.TB, rsp vscsiif.Response, want int32) {
	t.Helper()
	if rsp.Rslt != want {
		t.Fatalf("rqid %d: rslt %#x, want %#x", rsp.RqID, rsp.Rslt, want)
	}
}

// checkCondition fails unless rsp is host OK, CHECK CONDITION, with
// sense code c in at most 96 bytes of fixed or descriptor sense.
func checkCondition(t testing.TB, rsp vscsiif.Response, c scsi.Code) {
	t.Helper()
	if rsp.Rslt != vscsiif.Result(vscsiif.HostOK, scsi.StatusCheckCondition) {
		t.Fatalf("rqid %d: rslt %#x, want CHECK CONDITION", rsp.RqID, rsp.Rslt)
	}
	if rsp.SenseLen == 0 || rsp.SenseLen > vscsiif.SenseBufferSize {
		t.Fatalf("rqid %d: sense_len %d", rsp.RqID, rsp.SenseLen)
	}
	s, _, ok := scsi.ParseSense(rsp.Sense[:rsp.SenseLen])
	if !ok || s.Code != c {
		t.Fatalf("rqid %d: sense % x, want %x/%02x/%02x", rsp.RqID, rsp.Sense[:rsp.SenseLen], c.Key, c.ASC, c.ASCQ)
	}
}

// CDBs.

var tur = []byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0}
