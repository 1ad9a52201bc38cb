// Package hostileguest is a blkif frontend that breaks the protocol on
// purpose, as a hostile guest would, from the guest's own domain: bad and
// revoked grants, an event storm, nodes removed in the middle of the
// handshake, ring indexes that run backwards or past the ring, requests
// beyond the disk, too many segments, unknown operations. It runs against
// the vbds its host attached to it (VBDs says which and what it does with
// each) and reports what a guest can see of each case: an answer rather
// than a hang, and its vbd's backend state and error node. The same code
// runs in a lab domU on xen/linux and in a xen/sim domain in go test.
package hostileguest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/internal/shmem"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// End is how the guest ends one of its vbds, and so how the backend must
// leave it.
type End int

const (
	// EndBackwards: the request cases, then req_prod moved back behind
	// what the backend consumed.
	EndBackwards End = iota
	// EndPastRing: the request cases, then req_prod more than a ring
	// ahead of the responses.
	EndPastRing
	// EndNoRingRef: Initialised after removing its ring-ref node.
	EndNoRingRef
	// EndVanished: its frontend directory removed while the backend
	// waits in InitWait (the guest gone mid-handshake).
	EndVanished
)

func (e End) String() string {
	return [...]string{"req_prod moved back", "req_prod past the ring", "ring-ref removed before Initialised", "frontend directory removed mid-handshake"}[e]
}

// Want is what the backend's directory must show once the guest is done
// with a vbd ending so: its state, and whether an error node says why. A
// ring-level violation closes the device (Closed, as when the frontend is
// lost); a frontend the backend cannot connect to is refused (Closing); a
// guest that vanished is no violation, only gone.
func (e End) Want() (state xenbus.State, errorNode bool) {
	switch e {
	case EndBackwards, EndPastRing:
		return xenbus.Closed, true
	case EndNoRingRef:
		return xenbus.Closing, true
	default:
		return xenbus.Closed, false
	}
}

// VBD is one of the hostile guest's vbds.
type VBD struct {
	Vdev string
	End  End
}

// VBDs are the vbds a host attaches to the hostile guest before it runs,
// in the order the guest takes them. The host gives xvdc grant-copy=1,
// so that the request cases run against a backend that maps the guest's
// pages and one that copies them.
var VBDs = []VBD{
	{"xvdb", EndBackwards},
	{"xvdc", EndPastRing},
	{"xvdd", EndNoRingRef},
	{"xvde", EndVanished},
}

// Config is the guest's side of a run.
type Config struct {
	// Domain is the hostile guest's own domain.
	Domain xen.Domain
	// Stranger is a domain that is neither the guest nor its backend: a
	// grant made to it is another domain's, not the backend's.
	Stranger xen.DomID
	// Wait bounds each wait for an answer or a state (0: 30 s). A case
	// whose answer does not come in time is a hang, and fails.
	Wait time.Duration
	// Report hears every check: what was done and what was seen.
	Report func(ok bool, what string)
}

// StormNotifies and StormTime bound the event storm: that many
// notifications, or that long, whichever ends first.
const (
	StormNotifies = 100000
	StormTime     = 5 * time.Second
)

// Run takes every vbd of VBDs in turn and returns how many checks failed.
func Run(ctx context.Context, cfg Config) (failed int) {
	if cfg.Wait == 0 {
		cfg.Wait = 30 * time.Second
	}
	r := &run{Config: cfg, ctx: ctx}
	for _, v := range VBDs {
		r.vbd(v)
	}
	return r.failed
}

type run struct {
	Config
	ctx    context.Context
	failed int
}

func (r *run) check(ok bool, format string, a ...any) bool {
	if !ok {
		r.failed++
	}
	r.Report(ok, fmt.Sprintf(format, a...))
	return ok
}

// front is the guest's end of one vbd: whatever the case needs of it.
type front struct {
	r           *run
	vdev        string
	fe, be      string
	backend     xen.DomID
	ringPage    *xen.Granted
	ring        *ring.Front
	reqProd     *atomic.Uint32 // the shared req_prod, for the index cases
	ch          xen.Channel
	data        *xen.Granted // one writable page the backend may use
	sectors     uint64
	maxIndirect int
	nextID      uint64
}

// vbd takes one vbd from the backend's InitWait to v's End, then checks
// the backend's state and error node as End.Want says.
func (r *run) vbd(v VBD) {
	f, err := r.locate(v.Vdev)
	if !r.check(err == nil, "[%s] found its vbd (%v)", v.Vdev, err) {
		return
	}
	defer f.release()
	if !f.waitBackend("InitWait", xenbus.InitWait) {
		return
	}
	switch v.End {
	case EndBackwards, EndPastRing:
		if !f.connect() {
			return
		}
		if !f.requests() {
			return
		}
		f.breakIndexes(v.End)
	case EndNoRingRef:
		f.noRingRef()
	case EndVanished:
		f.vanish()
	}
	state, errorNode := v.End.Want()
	f.waitBackend(state.String()+" after "+v.End.String(), state)
	msg, err := f.r.Domain.Store().Read(f.be + "/error")
	if errorNode {
		r.check(err == nil && msg != "", "[%s] the backend's error node says why: %q", v.Vdev, msg)
	} else {
		r.check(true, "[%s] the backend's error node: %q", v.Vdev, msg)
	}
}

// locate finds the vbd's directories: the frontend's in our domain, the
// backend's it names.
func (r *run) locate(vdev string) (*front, error) {
	st := r.Domain.Store()
	id, err := diskspec.VirtualDevice(vdev)
	if err != nil {
		return nil, err
	}
	home, err := st.DomainPath(r.Domain.ID())
	if err != nil {
		return nil, err
	}
	fe := home + "/device/vbd/" + strconv.FormatUint(uint64(id), 10)
	be, err := st.Read(fe + "/backend")
	if err != nil {
		return nil, fmt.Errorf("%s/backend: %w", fe, err)
	}
	bid, err := st.Read(fe + "/backend-id")
	if err != nil {
		return nil, fmt.Errorf("%s/backend-id: %w", fe, err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(bid), 10, 16)
	if err != nil {
		return nil, fmt.Errorf("%s/backend-id %q: %w", fe, bid, err)
	}
	return &front{r: r, vdev: vdev, fe: fe, be: strings.TrimSpace(be), backend: xen.DomID(n)}, nil
}

// release ends what the guest made for the vbd. The backend maps none of
// it by now (a closed device is unmapped, a request's pages are unmapped
// before its answer is published); what fails to end goes with the
// guest.
func (f *front) release() {
	if f.ch != nil {
		f.ch.Close()
	}
	for _, p := range []*xen.Granted{f.data, f.ringPage} {
		if p != nil {
			f.r.Domain.Granter().Revoke(p)
		}
	}
}

// waitBackend waits for the backend's state to be one of want.
func (f *front) waitBackend(what string, want ...xenbus.State) bool {
	vals := make([]string, len(want))
	for i, s := range want {
		vals[i] = s.Value()
	}
	ctx, cancel := context.WithTimeout(f.r.ctx, f.r.Wait)
	defer cancel()
	v, err := xenbus.WaitNode(ctx, f.r.Domain.Store(), f.be+"/state", xenbus.OneOf(vals...))
	return f.r.check(err == nil, "[%s] the backend reached %s (state %q, %v)", f.vdev, what, v, err)
}

// connect does a frontend's handshake with one ring page, no feature
// (no persistent grants: the backend maps or copies each request's pages
// anew), and reads the disk's size and limits.
func (f *front) connect() bool {
	st, dom := f.r.Domain.Store(), f.r.Domain
	var err error
	if f.ringPage, err = dom.Granter().Grant(f.backend, 1, false); err != nil {
		return f.r.check(false, "[%s] grant the ring: %v", f.vdev, err)
	}
	if f.ring, err = ring.InitFront(f.ringPage.Mem, blkif.X86_64.SlotSize()); err != nil {
		return f.r.check(false, "[%s] ring: %v", f.vdev, err)
	}
	f.reqProd = shmem.MustUint32(f.ringPage.Mem, 0) // ring.h's sring: req_prod is the first word
	if f.ch, err = dom.Events().AllocUnbound(f.backend); err != nil {
		return f.r.check(false, "[%s] event channel: %v", f.vdev, err)
	}
	if f.data, err = dom.Granter().Grant(f.backend, 1, false); err != nil {
		return f.r.check(false, "[%s] grant a data page: %v", f.vdev, err)
	}
	for _, n := range [][2]string{
		{"ring-ref", strconv.Itoa(int(f.ringPage.Refs[0]))},
		{"event-channel", strconv.Itoa(int(f.ch.Port()))},
		{"protocol", blkif.ProtocolX86_64},
		{"state", xenbus.Initialised.Value()},
	} {
		if err := st.Write(f.fe+"/"+n[0], n[1]); err != nil {
			return f.r.check(false, "[%s] write %s: %v", f.vdev, n[0], err)
		}
	}
	if !f.waitBackend("Connected", xenbus.Connected) {
		return false
	}
	sectors, _ := st.Read(f.be + "/sectors")
	f.sectors, err = strconv.ParseUint(strings.TrimSpace(sectors), 10, 64)
	if err != nil || f.sectors < 64 {
		return f.r.check(false, "[%s] the backend's sectors node %q", f.vdev, sectors)
	}
	mi, _ := st.Read(f.be + "/feature-max-indirect-segments")
	f.maxIndirect, _ = strconv.Atoi(strings.TrimSpace(mi))
	gc, _ := st.Read(f.be + "/" + diskspec.KeyGrantCopy)
	mode := "maps the guest's pages"
	if strings.TrimSpace(gc) == "1" {
		mode = "copies the guest's pages (grant-copy)"
	}
	return f.r.check(true, "[%s] connected: %d sectors, %d indirect segments; the backend %s", f.vdev, f.sectors, f.maxIndirect, mode)
}

// send puts one request on the ring and notifies.
func (f *front) send(req blkif.Request) {
	blkif.X86_64.EncodeRequest(f.ring.NextRequest(), &req)
	f.ring.Produce(1)
	if f.ring.Push() {
		f.ch.Notify()
	}
}

// answer waits for the next response (within Wait) and checks that it
// answers id.
func (f *front) answer(id uint64) (int16, error) {
	deadline := time.Now().Add(f.r.Wait)
	for f.ring.Unconsumed() == 0 {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no answer in %v", f.r.Wait)
		}
		if _, err := f.ch.Wait(100 * time.Millisecond); err != nil {
			return 0, err
		}
	}
	var rsp blkif.Response
	blkif.X86_64.DecodeResponse(f.ring.Response(), &rsp)
	f.ring.Consume(1)
	if rsp.ID != id {
		return rsp.Status, fmt.Errorf("the answer is for request %d, not %d", rsp.ID, id)
	}
	return rsp.Status, nil
}

// do sends req and waits for its answer.
func (f *front) do(req blkif.Request) (int16, error) {
	f.nextID++
	req.ID = f.nextID
	f.send(req)
	return f.answer(req.ID)
}

// expect sends req and checks its answer: OKAY when ok, an error status
// otherwise. A missing or misnumbered answer fails, and the vbd's
// remaining cases are skipped (the ring is out of step).
func (f *front) expect(what string, ok bool, req blkif.Request) bool {
	st, err := f.do(req)
	if err != nil {
		f.r.check(false, "[%s] %s: %v", f.vdev, what, err)
		return false
	}
	want := "an error"
	if ok {
		want = "OKAY"
	}
	f.r.check((st == blkif.RspOkay) == ok, "[%s] %s: status %d, want %s", f.vdev, what, st, want)
	return true
}

func one(ref xen.GrantRef, first, last uint8) [blkif.MaxSegmentsPerRequest]blkif.Segment {
	return [blkif.MaxSegmentsPerRequest]blkif.Segment{{Gref: uint32(ref), FirstSect: first, LastSect: last}}
}

// neverGranted is a reference beyond any guest's grant table. Not 0 nor
// 1: a PV guest's console and xenstore pages are granted to dom0 there
// (GNTTAB_RESERVED_CONSOLE, _XENSTORE), and a backend in dom0 would
// rightly use them.
const neverGranted xen.GrantRef = 1 << 24

// requests sends each bad request in turn (each must be answered with an
// error, the device serving on) between good ones, and storms the event
// channel. It reports false when the ring went out of step.
func (f *front) requests() bool {
	g := f.r.Domain.Granter()
	good := blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(f.data.Refs[0], 0, 7)}
	if !f.expect("a good read", true, good) {
		return false
	}
	ro, err := g.Grant(f.backend, 1, true)
	if !f.r.check(err == nil, "[%s] grant a read-only page (%v)", f.vdev, err) {
		return false
	}
	defer g.Revoke(ro)
	stranger, err := g.Grant(f.r.Stranger, 1, false)
	if !f.r.check(err == nil, "[%s] grant a page to domain %d, not the backend (%v)", f.vdev, f.r.Stranger, err) {
		return false
	}
	defer g.Revoke(stranger)
	ref := f.data.Refs[0]
	cases := []struct {
		what string
		req  blkif.Request
	}{
		{"a grant never made", blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(neverGranted, 0, 7)}},
		{fmt.Sprintf("a page granted to domain %d, not the backend", f.r.Stranger), blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(stranger.Refs[0], 0, 7)}},
		{"a read into a read-only grant", blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(ro.Refs[0], 0, 7)}},
		{"a write past the disk's end", blkif.Request{Operation: blkif.OpWrite, Sector: f.sectors - 7, NrSegments: 1, Seg: one(ref, 0, 7)}},
		{"a read wholly beyond the disk", blkif.Request{Operation: blkif.OpRead, Sector: f.sectors + 1024, NrSegments: 1, Seg: one(ref, 0, 7)}},
		{"a sector near 2^64", blkif.Request{Operation: blkif.OpWrite, Sector: ^uint64(0) - 3, NrSegments: 1, Seg: one(ref, 0, 7)}},
		{"a discard past the disk's end", blkif.Request{Operation: blkif.OpDiscard, Sector: 1, NrSectors: f.sectors}},
		{"nr_segments 12, over the request's 11", blkif.Request{Operation: blkif.OpRead, NrSegments: 12, Seg: one(ref, 0, 7)}},
		{"nr_segments 255", blkif.Request{Operation: blkif.OpWrite, NrSegments: 255, Seg: one(ref, 0, 7)}},
		{"nr_segments 0", blkif.Request{Operation: blkif.OpRead}},
		{"an indirect read of 4097 segments, over blkif's 8 pages", blkif.Request{Operation: blkif.OpIndirect, IndirectOp: blkif.OpRead, NrSegments: blkif.MaxIndirectSegments + 1}},
		{"an indirect page never granted", blkif.Request{Operation: blkif.OpIndirect, IndirectOp: blkif.OpRead, NrSegments: 1, IndirectGrefs: [8]uint32{uint32(neverGranted)}}},
		{"first_sect after last_sect", blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(ref, 5, 4)}},
		{"last_sect 8, past the page", blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(ref, 0, 8)}},
		{"unknown operation 0x42", blkif.Request{Operation: 0x42, NrSegments: 1, Seg: one(ref, 0, 7)}},
		{"reserved operation 4", blkif.Request{Operation: blkif.OpReserved1}},
		{"an extra slot alone (0x7f)", blkif.Request{Operation: blkif.OpExtraData}},
	}
	if f.maxIndirect < blkif.MaxIndirectSegments {
		cases = append(cases, struct {
			what string
			req  blkif.Request
		}{fmt.Sprintf("an indirect read of %d segments, over the backend's %d", f.maxIndirect+1, f.maxIndirect),
			blkif.Request{Operation: blkif.OpIndirect, IndirectOp: blkif.OpRead, NrSegments: uint16(f.maxIndirect + 1), IndirectGrefs: [8]uint32{uint32(ref)}}})
	}
	for _, c := range cases {
		if !f.expect(c.what, false, c.req) {
			return false
		}
	}
	return f.revoked() && f.storm() && f.expect("a good read after every bad request", true, good) &&
		f.stillConnected()
}

// revoked: a grant used, revoked, used again (the backend keeps nothing
// mapped between requests: no feature-persistent); then one revoked
// while its read is in flight, which must be answered, whichever of the
// revocation and the backend's access came first.
func (f *front) revoked() bool {
	g := f.r.Domain.Granter()
	p, err := g.Grant(f.backend, 1, false)
	if !f.r.check(err == nil, "[%s] grant a page (%v)", f.vdev, err) {
		return false
	}
	read := blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(p.Refs[0], 0, 7)}
	if !f.expect("a read into a fresh grant", true, read) {
		g.Revoke(p)
		return false
	}
	err = g.Revoke(p)
	if !f.r.check(err == nil, "[%s] the grant revoked after its read was answered (%v)", f.vdev, err) {
		return false
	}
	if !f.expect("a read into the revoked grant", false, read) {
		return false
	}

	if p, err = g.Grant(f.backend, 1, false); !f.r.check(err == nil, "[%s] grant a page (%v)", f.vdev, err) {
		return false
	}
	f.nextID++
	id := f.nextID
	f.send(blkif.Request{ID: id, Operation: blkif.OpRead, NrSegments: 8, Seg: [11]blkif.Segment{
		{Gref: uint32(p.Refs[0]), LastSect: 7}, {Gref: uint32(p.Refs[0]), LastSect: 7}, {Gref: uint32(p.Refs[0]), LastSect: 7},
		{Gref: uint32(p.Refs[0]), LastSect: 7}, {Gref: uint32(p.Refs[0]), LastSect: 7}, {Gref: uint32(p.Refs[0]), LastSect: 7},
		{Gref: uint32(p.Refs[0]), LastSect: 7}, {Gref: uint32(p.Refs[0]), LastSect: 7}}})
	// A hypervisor may refuse to end a grant the backend maps (the
	// simulated one does; Linux defers the end): then it ends after the
	// answer, the backend having unmapped the page before publishing it.
	rerr := g.Revoke(p)
	st, err := f.answer(id)
	if !f.r.check(err == nil, "[%s] a read whose grant was revoked in flight is answered: status %d, the revocation: %v (%v)", f.vdev, st, rerr, err) {
		return false
	}
	if rerr != nil {
		err = g.Revoke(p)
		return f.r.check(err == nil, "[%s] the grant ends once the read is answered (%v)", f.vdev, err)
	}
	return true
}

// storm notifies the backend without a request, StormNotifies times or
// for StormTime; a good read must still be answered.
func (f *front) storm() bool {
	start := time.Now()
	n := 0
	for ; n < StormNotifies && time.Since(start) < StormTime; n++ {
		if err := f.ch.Notify(); err != nil {
			return f.r.check(false, "[%s] notify %d: %v", f.vdev, n, err)
		}
	}
	f.r.check(true, "[%s] an event storm: %d notifications in %v", f.vdev, n, time.Since(start).Round(time.Millisecond))
	return f.expect("a good read after the storm", true,
		blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: one(f.data.Refs[0], 0, 7)})
}

// stillConnected: after bad requests the backend is Connected with no
// error node: they failed alone.
func (f *front) stillConnected() bool {
	st := f.r.Domain.Store()
	s, _ := st.Read(f.be + "/state")
	msg, err := st.Read(f.be + "/error")
	return f.r.check(strings.TrimSpace(s) == xenbus.Connected.Value() && (err != nil || msg == ""),
		"[%s] bad requests failed alone: the backend is in state %q, its error node %q", f.vdev, s, msg)
}

// breakIndexes publishes a req_prod no frontend may: moved back behind
// what the backend consumed, or more than a ring ahead of the responses.
func (f *front) breakIndexes(e End) {
	prod := f.ring.ReqProdPvt() // every request so far answered
	bad := prod - 2
	if e == EndPastRing {
		bad = prod + f.ring.Size() + 1
	}
	f.reqProd.Store(bad)
	f.ch.Notify()
	f.r.check(true, "[%s] req_prod set to %d (%s; %d requests made)", f.vdev, bad, e, prod)
}

// noRingRef publishes a ring-ref, an event channel and the protocol,
// removes the ring-ref, then says Initialised.
func (f *front) noRingRef() {
	st, dom := f.r.Domain.Store(), f.r.Domain
	var err error
	if f.ringPage, err = dom.Granter().Grant(f.backend, 1, false); err != nil {
		f.r.check(false, "[%s] grant the ring: %v", f.vdev, err)
		return
	}
	if f.ch, err = dom.Events().AllocUnbound(f.backend); err != nil {
		f.r.check(false, "[%s] event channel: %v", f.vdev, err)
		return
	}
	st.Write(f.fe+"/ring-ref", strconv.Itoa(int(f.ringPage.Refs[0])))
	st.Write(f.fe+"/event-channel", strconv.Itoa(int(f.ch.Port())))
	st.Write(f.fe+"/protocol", blkif.ProtocolX86_64)
	err = st.Remove(f.fe + "/ring-ref")
	if err == nil {
		err = st.Write(f.fe+"/state", xenbus.Initialised.Value())
	}
	f.r.check(err == nil, "[%s] ring-ref removed, then Initialised (%v)", f.vdev, err)
}

// vanish removes the guest's frontend directory while the backend waits
// for it.
func (f *front) vanish() {
	st := f.r.Domain.Store()
	err := st.Write(f.fe+"/protocol", blkif.ProtocolX86_64)
	if err == nil {
		err = st.Remove(f.fe)
	}
	f.r.check(err == nil, "[%s] the frontend directory removed in InitWait (%v)", f.vdev, err)
}
