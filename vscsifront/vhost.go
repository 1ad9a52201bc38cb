// Package vscsifront is a PV SCSI frontend (xen/io/vscsiif.h): it
// attaches to a vhost of any vscsiif backend (xenblk's vscsiback, or
// Linux's xen-scsiback), sends SCSI commands on its ring with the data in
// persistently granted pages, and exposes each LUN the backend offers as
// a SCSI target (LUN.ExecSCSI, what control and `xenblk scsi` use) and as
// a storage.Device (LUN.Device: READ(16)/WRITE(16), for the NBD and FUSE
// exports).
//
// A Vhost is vscsibus's frontend Driver: a vscsibus.Runner with a
// vscsibus.Frontend machine drives its handshake and LUN list (Runner).
package vscsifront

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/adaptpoll"
	"github.com/xenblk/xenblk/internal/reaper"
	"github.com/xenblk/xenblk/internal/slotlife"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

var (
	// ErrClosed: the vhost was removed.
	ErrClosed = errors.New("vscsifront: vhost removed")
	// ErrGone: the LUN was removed from the vhost.
	ErrGone = errors.New("vscsifront: LUN removed")
	// ErrCDBLength: a CDB that is empty or longer than a request's
	// cmnd; it is refused before it reaches the ring.
	ErrCDBLength = errors.New("vscsifront: CDB length out of 1..16")
	// ErrTooLarge: the data is more than one request carries.
	ErrTooLarge = errors.New("vscsifront: data larger than one request carries")
	// ErrResetLost: the connection went away before the reset was answered.
	ErrResetLost = errors.New("vscsifront: connection lost before the reset was answered")
)

// HostError is a command the transport did not deliver to the device:
// the host status of its rslt is not OK (a LUN the backend does not
// serve is vscsiif.HostNoConnect).
type HostError struct {
	Host vscsiif.Host
	Rslt int32
}

func (e *HostError) Error() string {
	return fmt.Sprintf("vscsifront: host status %d (rslt %#x)", e.Host, e.Rslt)
}

// Config is one vhost's frontend.
type Config struct {
	// Domain is the frontend's own domain; Backend the backend's, to
	// which the ring and the data pages are granted.
	Domain  xen.Domain
	Backend xen.DomID
	// MaxSegments is the most data pages one command may carry (with
	// SG_GRANT, when the backend offers it; else vscsiif.SGTableSize).
	// 0 means DefaultMaxSegments.
	MaxSegments int
	// PoolPages is the number of data pages granted to the backend once,
	// shared by the commands in flight; 0 means 4 × MaxSegments.
	PoolPages int
	// QueueDepth is the most commands the vhost holds at once: on the
	// ring, and queued for it while the ring is full (each command's
	// slot, whose index is its rqid); 0 means DefaultQueueDepth. A
	// caller beyond it waits for a slot.
	QueueDepth int
	// OnLUNs, if not nil, is called after a LUN was added or removed,
	// from the Runner's goroutine; it must not block.
	OnLUNs func()
	Log    *slog.Logger
}

// DefaultMaxSegments is 1 MiB of data a command, as control.MaxData.
const DefaultMaxSegments = 256

// DefaultQueueDepth is four rings of commands: vscsiif's one-page ring
// holds 15 (16 slots, one kept for task management), and a caller that
// finds the ring full then waits once, for its answer, behind the
// commands queued before it, not first for a slot and then for the
// answer. maxQueueDepth keeps every rqid, the task management one above
// the commands', in vscsiif's 16 bits with room to spare.
const (
	DefaultQueueDepth = 64
	maxQueueDepth     = 4096
)

// Vhost is the frontend of one vhost: its ring, its granted pages, the
// commands in flight, and its LUNs. Its Driver methods are the Runner's
// to call; ExecSCSI and the devices may be used from any goroutine.
type Vhost struct {
	cfg     Config
	log     *slog.Logger
	abi     blkif.ABI
	tmfID   int // the rqid of task management functions, past every slot's
	listPer int // SG_GRANT list pages per command slot

	mu   sync.Mutex
	cond *sync.Cond // a slot or pool pages came free, or the vhost died
	// waiting counts the callers waiting in acquire; wantMax is the most
	// pages any of them asked for since none was waiting.
	waiting, wantMax int
	slots            []slot
	free             []int
	// pending holds the submitted slots, oldest first: the commands
	// waiting for room on the ring, or for a ring at all while
	// disconnected. A slot is in it exactly while it is submitted.
	pending  idQueue
	pool     *xen.Granted
	freePage []int
	lists    *xen.Granted
	// segments is the negotiated most data segments of a command.
	segments  int
	ringMem   *xen.Granted
	front     *ring.Front
	ch        xen.Channel
	connected bool
	// dead: removed; every command has its outcome, new ones fail.
	dead     bool
	released bool // the pools are revoked (or being)
	stop     chan struct{}
	reaped   chan struct{}
	// pollWindow is how long the reaper polls for answers (reaper).
	pollWindow adaptpoll.Window
	closed     chan struct{} // closed by Remove
	lost       chan struct{} // the event channel failed under the reaper

	// Task management: one at a time on slot tmfID, the rest queued.
	tmfQ    []tmf
	tmfBusy bool
	tmfCur  tmf
	// Resets: one caller at a time (resetMu); its answer comes on
	// resetDone, tagged with its seq.
	resetMu   sync.Mutex
	resetSeq  uint64
	resetDone chan resetOutcome

	luns map[int]*LUN
}

// tmf is a task management request waiting for the tmf slot.
type tmf struct {
	act  uint8
	addr vscsibus.VDev
	ref  int    // ActSCSIAbort: the slot to abort
	gen  uint32 // of that slot's life
	seq  uint64 // ActSCSIReset: the waiting caller's
}

type resetOutcome struct {
	seq  uint64
	rslt int32
	lost bool
}

// New grants a vhost's data pool and list pages to the backend. The
// ring comes with Connect.
func New(cfg Config) (*Vhost, error) {
	if cfg.MaxSegments <= 0 {
		cfg.MaxSegments = DefaultMaxSegments
	}
	cfg.MaxSegments = max(min(cfg.MaxSegments, vscsiif.MaxSGGrant), vscsiif.SGTableSize)
	if cfg.PoolPages <= 0 {
		cfg.PoolPages = 4 * cfg.MaxSegments
	}
	if cfg.QueueDepth <= 0 {
		cfg.QueueDepth = DefaultQueueDepth
	}
	cfg.QueueDepth = min(cfg.QueueDepth, maxQueueDepth)
	cfg.PoolPages = max(cfg.PoolPages, cfg.MaxSegments)
	v := &Vhost{cfg: cfg, log: cfg.Log, abi: blkif.Native, segments: vscsiif.SGTableSize,
		closed: make(chan struct{}), lost: make(chan struct{}, 1), resetDone: make(chan resetOutcome, 1),
		luns: map[int]*LUN{}}
	if v.log == nil {
		v.log = slog.Default()
	}
	v.cond = sync.NewCond(&v.mu)
	v.pollWindow.Init(reapPollWindow)
	v.tmfID = cfg.QueueDepth
	v.slots = make([]slot, cfg.QueueDepth)
	v.pending = newIDQueue(cfg.QueueDepth)
	// At most one abort per orphan (a slot is not reused while its
	// abort is queued) and one reset.
	v.tmfQ = make([]tmf, 0, cfg.QueueDepth+1)
	v.listPer = 0
	if cfg.MaxSegments > vscsiif.SGTableSize {
		v.listPer = (cfg.MaxSegments + vscsiif.SGPerPage - 1) / vscsiif.SGPerPage
	}
	gr := cfg.Domain.Granter()
	var err error
	if v.pool, err = gr.Grant(cfg.Backend, cfg.PoolPages, false); err != nil {
		return nil, fmt.Errorf("vscsifront: grant data pool: %w", err)
	}
	if v.listPer > 0 {
		if v.lists, err = gr.Grant(cfg.Backend, v.listPer*len(v.slots), false); err != nil {
			_ = gr.Revoke(v.pool)
			return nil, fmt.Errorf("vscsifront: grant segment list pages: %w", err)
		}
	}
	for i := cfg.PoolPages - 1; i >= 0; i-- {
		v.freePage = append(v.freePage, i)
	}
	for i := len(v.slots) - 1; i >= 0; i-- {
		v.slots[i] = slot{state: slotlife.Free, done: make(chan struct{}, 1), pages: make([]int, 0, cfg.MaxSegments)}
		v.free = append(v.free, i)
	}
	return v, nil
}

// MaxSegments is the most data pages a command of this frontend can
// carry: what the Runner's Frontend machine is built with.
func (v *Vhost) MaxSegments() int { return v.cfg.MaxSegments }

// MaxTransfer is the most data bytes one command carries now: the
// segments negotiated with the backend (vscsiif.SGTableSize before the
// first Attach, or when it offers no SG_GRANT).
func (v *Vhost) MaxTransfer() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.segments * xen.PageSize
}

// Runner returns the vscsibus runner of this vhost's frontend: Self is
// the frontend's directory (device/vscsi/N), Peer the backend's.
func (v *Vhost) Runner(st xen.Store, self, peer string) *vscsibus.Runner {
	return &vscsibus.Runner{Store: st, Self: self, Peer: peer, Machine: vscsibus.NewFrontend(v.cfg.MaxSegments),
		Driver: v, Lost: v.lost, Log: v.cfg.Log}
}

// LUNs lists the LUNs the vhost holds, by vscsi-devs index.
func (v *Vhost) LUNs() map[int]*LUN {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[int]*LUN, len(v.luns))
	for n, l := range v.luns {
		out[n] = l
	}
	return out
}

// LUNAt is the LUN held at channel:target:lun, if any.
func (v *Vhost) LUNAt(channel, target, lun uint16) (*LUN, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, l := range v.luns {
		if a := l.addr; a.Channel == channel && a.Target == target && a.LUN == lun {
			return l, true
		}
	}
	return nil, false
}

// Connect grants a fresh ring page and allocates an event channel
// (vscsibus.Driver). Commands in flight keep their slots; Attach issues
// them again.
func (v *Vhost) Connect(vscsibus.Ring) (vscsibus.Ring, error) {
	v.Disconnect()
	gr := v.cfg.Domain.Granter()
	rm, err := gr.Grant(v.cfg.Backend, 1, false)
	if err != nil {
		return vscsibus.Ring{}, fmt.Errorf("grant ring: %w", err)
	}
	f, err := ring.InitFront(rm.Mem, vscsiif.SlotSize(v.abi))
	if err != nil {
		_ = gr.Revoke(rm)
		return vscsibus.Ring{}, err
	}
	ch, err := v.cfg.Domain.Events().AllocUnbound(v.cfg.Backend)
	if err != nil {
		_ = gr.Revoke(rm)
		return vscsibus.Ring{}, fmt.Errorf("allocate event channel: %w", err)
	}
	v.mu.Lock()
	v.ringMem, v.front, v.ch = rm, f, ch
	v.mu.Unlock()
	return vscsibus.Ring{Ref: rm.Refs[0], Port: ch.Port(), ABI: v.abi}, nil
}

// Attach starts I/O on the connected ring with at most segments data
// pages a command (vscsibus.Driver): what was in flight is issued again.
func (v *Vhost) Attach(segments int) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.front == nil {
		return errors.New("vscsifront: attach without a ring")
	}
	v.segments = min(segments, v.cfg.MaxSegments)
	if v.connected {
		return nil
	}
	v.stop, v.reaped = make(chan struct{}), make(chan struct{})
	v.issueOnAttach()
	go v.reaper(v.stop, v.reaped, v.ch)
	return nil
}

// issueOnAttach makes the ring just connected live: the task management
// queued goes first, then the pending commands, oldest first, as far as
// the ring has room; mu held, the ring set.
func (v *Vhost) issueOnAttach() {
	v.connected = true
	v.kickTMF()
	v.issuePending()
	v.flush()
	v.cond.Broadcast()
}

// Refresh takes the backend's new segment limit (vscsibus.Driver). A
// command already submitted over it fails with ErrTooLarge when issued.
func (v *Vhost) Refresh(segments int) error {
	v.mu.Lock()
	v.segments = min(segments, v.cfg.MaxSegments)
	v.mu.Unlock()
	return nil
}

// Disconnect stops the reaper and drops the ring (vscsibus.Driver).
// Issued commands go back to submitted, ahead of those that were waiting
// for room, for the next Attach; task
// management on the ring is dropped (a waiting reset fails with
// ErrResetLost). Orphans are freed once the ring's grant could be
// revoked: the backend then has let go of the vhost, so nothing writes
// their pages any more; else they stay orphaned, their pages lost to the
// pool rather than reused under a writer.
func (v *Vhost) Disconnect() {
	v.mu.Lock()
	stop, reaped, ch, rm := v.stop, v.reaped, v.ch, v.ringMem
	v.connected = false
	v.stop, v.reaped, v.ch, v.ringMem, v.front = nil, nil, nil, nil, nil
	for id := len(v.slots) - 1; id >= 0; id-- {
		s := &v.slots[id]
		if s.abortOut { // its abort goes with the ring
			s.abortOut = false
		}
		if _, ok := slotTable.On(s.state, slotlife.Disconnect); ok {
			v.to(id, slotlife.Disconnect)
			if s.state == slotlife.Submitted {
				v.pending.pushFront(id)
			}
		}
	}
	if v.tmfBusy && v.tmfCur.act == vscsiif.ActSCSIReset {
		v.resetAnswered(resetOutcome{seq: v.tmfCur.seq, lost: true})
	}
	for _, t := range v.tmfQ {
		if t.act == vscsiif.ActSCSIReset {
			v.resetAnswered(resetOutcome{seq: t.seq, lost: true})
		}
	}
	v.tmfBusy, v.tmfQ = false, v.tmfQ[:0]
	v.mu.Unlock()
	reaper.Stop(stop, reaped, ch)
	if rm == nil {
		return
	}
	if !v.revoke(rm) {
		v.log.Warn("ring still mapped by the backend; cancelled commands keep their pages")
		return
	}
	v.mu.Lock()
	for id := range v.slots {
		if v.slots[id].state == slotlife.Orphaned {
			v.to(id, slotlife.Release)
		}
	}
	v.mu.Unlock()
}

// revoke revokes g, retrying briefly while the backend still maps it
// (it unmaps a moment after it closes); false if it never let go.
func (v *Vhost) revoke(g *xen.Granted) bool {
	for i := 0; ; i++ {
		err := v.cfg.Domain.Granter().Revoke(g)
		if err == nil {
			return true
		}
		if !errors.Is(err, xen.ErrGrantInUse) || i == 50 {
			v.log.Warn("cannot revoke grant", "err", err)
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// AttachLUN adds a LUN the backend offers (vscsibus.Driver). Nothing
// travels: the LUN answers its own INQUIRY when asked.
func (v *Vhost) AttachLUN(l vscsibus.LUN, done func(error)) {
	v.mu.Lock()
	if v.dead {
		v.mu.Unlock()
		done(ErrClosed)
		return
	}
	v.luns[l.Index] = &LUN{v: v, index: l.Index, addr: l.VDev}
	v.mu.Unlock()
	done(nil)
	v.changed()
}

// DetachLUN removes a LUN (vscsibus.Driver): its commands from now on
// fail with ErrGone; those in flight have the backend's answer.
func (v *Vhost) DetachLUN(index int) {
	v.mu.Lock()
	if l := v.luns[index]; l != nil {
		l.gone.Store(true)
		delete(v.luns, index)
	}
	v.mu.Unlock()
	v.changed()
}

func (v *Vhost) changed() {
	if v.cfg.OnLUNs != nil {
		v.cfg.OnLUNs()
	}
}

// Remove ends the vhost for good (vscsibus.Driver): every command
// without an outcome fails with ErrClosed at once, every LUN is gone,
// the ring is dropped, and the pools are revoked once no caller holds a
// slot.
func (v *Vhost) Remove() {
	v.mu.Lock()
	if v.dead {
		v.mu.Unlock()
		v.Disconnect()
		return
	}
	v.dead = true
	close(v.closed)
	for id := range v.slots {
		if _, ok := slotTable.On(v.slots[id].state, slotlife.Abort); ok {
			v.to(id, slotlife.Abort)
		}
	}
	v.pending.reset()
	for n, l := range v.luns {
		l.gone.Store(true)
		delete(v.luns, n)
	}
	v.cond.Broadcast()
	v.mu.Unlock()
	v.changed()
	v.Disconnect()
	v.mu.Lock()
	release := v.releaseDueLocked()
	v.mu.Unlock()
	if release {
		v.releasePools()
	}
}

// releaseDueLocked reports whether the pools are to be revoked now (the
// vhost is dead and no caller holds a slot), and marks them so; mu held.
func (v *Vhost) releaseDueLocked() bool {
	if !v.dead || v.released {
		return false
	}
	for i := range v.slots {
		if owned(v.slots[i].state) {
			return false
		}
	}
	v.released = true
	return true
}

func (v *Vhost) releasePools() {
	v.revoke(v.pool)
	if v.lists != nil {
		v.revoke(v.lists)
	}
}

// to moves slot id by ev; mu held. A slot come back to free returns its
// pages; one come to an outcome hands it to its owner. An event the
// state does not take is a bug in this package (a response for no
// command in flight is refused before it gets here): it panics.
func (v *Vhost) to(id int, ev slotlife.Event) {
	s := &v.slots[id]
	from := s.state
	next, ok := slotTable.On(from, ev)
	if !ok {
		panic(fmt.Sprintf("vscsifront: slot %d: %v on a %v slot", id, ev, from))
	}
	s.state = next
	switch {
	case next == slotlife.Free:
		v.freePage = append(v.freePage, s.pages...)
		s.pages = s.pages[:0]
		s.answered, s.abortOut = false, false
		v.free = append(v.free, id)
		v.wake()
	case (next == slotlife.Answered || next == slotlife.Aborted) && from != next:
		select {
		case s.done <- struct{}{}:
		default:
		}
	}
}

// reaper takes responses off the ring until stopped: the one goroutine
// that collects them, and sleeps on the event channel. A channel that
// fails under it means the backend went away: the Runner hears it on
// Lost.
//
// After a look that found answers and left commands on the ring (the
// pending ones it issued, or others), it polls the ring for their
// answers, within an adaptive window, before arming rsp_event: the
// backend answering meanwhile sees a stale event index and sends no
// notification, and neither end pays the event channel's wake-up.
func (v *Vhost) reaper(stop, reaped chan struct{}, ch xen.Channel) {
	defer close(reaped)
	for {
		v.mu.Lock()
		if v.front == nil {
			v.mu.Unlock()
			return
		}
		if v.collect() > 0 && v.front.ReqProdPvt() != v.front.RspCons() {
			if w := v.pollWindow.Next(); w > 0 {
				v.mu.Unlock()
				if v.pollRing(stop, w) {
					v.pollWindow.Hit()
					continue
				}
				v.pollWindow.Miss()
				v.mu.Lock()
				if v.front == nil {
					v.mu.Unlock()
					return
				}
			}
		}
		more := v.front.FinalCheck()
		v.mu.Unlock()
		if more {
			continue
		}
		if again, lost := reaper.Sleep(ch, stop); !again {
			if lost {
				select {
				case v.lost <- struct{}{}:
				default:
				}
			}
			return
		}
	}
}

// pollRing looks at the ring, yielding the processor between looks,
// until a response is there, window passes or stop closes; it reports
// whether a response is there. It looks only when mu is free: a busy mu
// is a submitter, and the look after it sees what came meanwhile.
func (v *Vhost) pollRing(stop chan struct{}, window time.Duration) bool {
	return reaper.Poll(stop, time.Now().Add(window), func() bool {
		if !v.mu.TryLock() {
			return false
		}
		found := v.front != nil && v.front.Unconsumed() > 0
		v.mu.Unlock()
		return found
	})
}

// reapPollWindow is the most the reaper polls for answers before it
// sleeps on the event channel.
const reapPollWindow = 20 * time.Microsecond

// collect takes every response published off the ring and returns how
// many; mu held, front set. A response for no request in flight is
// logged and dropped.
func (v *Vhost) collect() int {
	var rsp vscsiif.Response
	if v.front.Overrun() {
		v.log.Warn("backend published more responses than requests")
	}
	n := 0
	for v.front.Unconsumed() > 0 {
		vscsiif.DecodeResponse(v.abi, v.front.Response(), &rsp)
		v.front.Consume(1)
		v.complete(&rsp)
		n++
	}
	if n > 0 && v.connected && v.issuePending() {
		v.flush()
	}
	return n
}

func (v *Vhost) complete(rsp *vscsiif.Response) {
	id := int(rsp.RqID)
	if id == v.tmfID && v.tmfBusy {
		v.tmfAnswered(rsp.Rslt)
		return
	}
	if id >= len(v.slots) {
		v.log.Warn("response with unknown rqid", "rqid", id)
		return
	}
	s := &v.slots[id]
	switch s.state {
	case slotlife.Issued:
		s.rsp = *rsp
		v.to(id, slotlife.Answer)
	case slotlife.Orphaned:
		if s.answered {
			v.log.Warn("second response for a cancelled command", "rqid", id)
			return
		}
		s.answered = true
		if !s.abortOut {
			v.to(id, slotlife.Release)
		}
	default:
		v.log.Warn("response for a command not in flight", "rqid", id, "state", s.state.String())
	}
}

// flush publishes what was pushed, notifying if the backend asked; mu
// held, front set.
func (v *Vhost) flush() {
	if v.front.Push() {
		_ = v.ch.Notify()
	}
}

// ringRoom is how many more commands the ring takes now: its free
// slots, less the one kept for task management while none is on the
// ring, so that an abort or a reset never waits behind commands; mu
// held, connected.
func (v *Vhost) ringRoom() int {
	room := int(v.front.Free())
	if !v.tmfBusy {
		room--
	}
	return room
}

// issuePending pushes the oldest pending commands while the ring has
// room for them, and reports whether it wrote any (the caller flushes);
// mu held, connected.
func (v *Vhost) issuePending() (pushed bool) {
	for v.pending.len() > 0 && v.ringRoom() > 0 {
		if v.push(v.pending.popFront()) {
			pushed = true
		}
	}
	return pushed
}

// push writes slot id's request on the ring and reports whether it did;
// mu held, connected, the ring has room. A command over the segments the
// backend takes now (it changed them since) is answered at once, as
// ErrTooLarge, instead.
func (v *Vhost) push(id int) bool {
	s := &v.slots[id]
	if len(s.pages) > v.segments {
		v.answerLocally(id, tooLarge)
		return false
	}
	v.fillSegments(id)
	vscsiif.EncodeRequest(v.abi, v.front.NextRequest(), &s.req)
	v.front.Produce(1)
	v.to(id, slotlife.Push)
	return true
}

// answerLocally answers slot id, submitted and no longer pending, with a
// response made up here; mu held.
func (v *Vhost) answerLocally(id int, rslt int32) {
	s := &v.slots[id]
	s.rsp = vscsiif.Response{RqID: uint16(id), Rslt: rslt}
	if rslt == rsltReset {
		// As the backend answers a command its reset cleared: nothing
		// transferred.
		s.rsp.ResidualLen = uint32(s.dataLen)
	}
	v.to(id, slotlife.Answer)
}

// tooLarge marks a response made up by push: no backend sends a host
// status this high.
const tooLarge = int32(0xff) << 16

// rsltReset is the answer of a command a LUN RESET cleared: host RESET,
// as vscsiback answers those on the ring (Linux's midlayer retries them).
var rsltReset = vscsiif.Result(vscsiif.HostReset, 0)

// fillSegments sets slot id's segments from its pages: in seg[] when
// they fit, else as SG_GRANT lists in the slot's list pages.
func (v *Vhost) fillSegments(id int) {
	s := &v.slots[id]
	r := &s.req
	if len(s.pages) <= vscsiif.SGTableSize {
		for i, p := range s.pages {
			r.Seg[i] = vscsiif.Segment{Gref: uint32(v.pool.Refs[p]), Length: v.segLen(s, i)}
		}
		r.NrSegments = uint8(len(s.pages))
		return
	}
	lists := 0
	for i := 0; i < len(s.pages); i += vscsiif.SGPerPage {
		k := min(len(s.pages)-i, vscsiif.SGPerPage)
		li := id*v.listPer + lists
		page := v.lists.Mem[li*xen.PageSize : (li+1)*xen.PageSize]
		for j := range k {
			vscsiif.EncodeSegment(page[j*vscsiif.SegmentSize:], vscsiif.Segment{Gref: uint32(v.pool.Refs[s.pages[i+j]]), Length: v.segLen(s, i+j)})
		}
		r.Seg[lists] = vscsiif.Segment{Gref: uint32(v.lists.Refs[li]), Length: uint16(k * vscsiif.SegmentSize)}
		lists++
	}
	r.NrSegments = vscsiif.SGGrant | uint8(lists)
}

// segLen is the length of data page i of slot s: whole pages but the
// last, which holds the rest of the data.
func (v *Vhost) segLen(s *slot, i int) uint16 {
	if i < len(s.pages)-1 {
		return xen.PageSize
	}
	return uint16(s.dataLen - i*xen.PageSize)
}

// acquire takes a free slot and npages pool pages, waiting while there
// are none until ctx ends or the vhost is removed.
func (v *Vhost) acquire(ctx context.Context, npages int) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var stop func() bool
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	woken := false
	defer func() {
		if woken {
			// Whatever woke this caller and it did not take is another's.
			v.wake()
		}
	}()
	for {
		if v.dead {
			return 0, ErrClosed
		}
		if npages > v.segments {
			return 0, fmt.Errorf("%w: %d pages, the backend takes %d", ErrTooLarge, npages, v.segments)
		}
		if len(v.free) > 0 && len(v.freePage) >= npages {
			id := v.free[len(v.free)-1]
			v.free = v.free[:len(v.free)-1]
			v.to(id, slotlife.Take)
			s := &v.slots[id]
			s.gen++
			select {
			case <-s.done: // a stale token of the slot's earlier life
			default:
			}
			for range npages {
				s.pages = append(s.pages, v.freePage[len(v.freePage)-1])
				v.freePage = v.freePage[:len(v.freePage)-1]
			}
			woken = false
			return id, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if stop == nil && ctx.Done() != nil {
			// The broadcast takes mu, so it cannot slip in between the
			// check above and Wait's unlocking of mu.
			stop = context.AfterFunc(ctx, func() {
				v.mu.Lock()
				v.cond.Broadcast()
				v.mu.Unlock()
			})
		}
		v.waiting++
		v.wantMax = max(v.wantMax, npages)
		v.cond.Wait()
		if v.waiting--; v.waiting == 0 {
			v.wantMax = 0
		}
		woken = true
	}
}

// wake tells the callers waiting in acquire that a slot came free, with
// its pages: one of them when whichever it is can take it (none asked
// for more pages than are free), else all, each to look. Every caller
// woken that does not take a slot wakes again as it leaves, so a free
// slot is never left with callers asleep. mu held.
func (v *Vhost) wake() {
	switch {
	case v.waiting == 0:
	case len(v.freePage) >= v.wantMax:
		v.cond.Signal()
	default:
		v.cond.Broadcast()
	}
}

// submit hands slot id's complete request to the ring behind the
// commands pending before it: on the ring at once if it has room, else
// pending until answers free some (collect issues it) or, disconnected,
// until the next Attach.
func (v *Vhost) submit(id int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.to(id, slotlife.Submit)
	if v.slots[id].state != slotlife.Submitted {
		return // aborted while filled
	}
	if v.dead {
		v.to(id, slotlife.Abort)
		return
	}
	v.pending.pushBack(id)
	if v.connected && v.issuePending() {
		v.flush()
	}
}

// wait waits for slot id's outcome; false if ctx ended first and the
// slot is given up (freed, or orphaned with an abort queued).
func (v *Vhost) wait(ctx context.Context, id int) bool {
	s := &v.slots[id]
	if ctx.Done() == nil {
		// Nothing to give up on: the one way out is the outcome (an
		// answer, or the vhost's removal), as below.
		<-s.done
		return true
	}
	select {
	case <-s.done:
		return true
	case <-ctx.Done():
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	switch s.state {
	case slotlife.Answered, slotlife.Aborted:
		<-s.done // sent under mu with the state
		return true
	case slotlife.Issued:
		v.to(id, slotlife.GiveUp)
		v.queueTMF(tmf{act: vscsiif.ActSCSIAbort, addr: s.addr, ref: id, gen: s.gen})
	case slotlife.Submitted:
		// Pending: the backend never saw it, so it ends here, and its
		// slot is free at once.
		v.pending.removeIf(func(p int) bool { return p == id })
		v.to(id, slotlife.GiveUp)
	default:
		v.to(id, slotlife.GiveUp)
	}
	return false
}

// release frees slot id, whose owner is done with its outcome.
func (v *Vhost) release(id int) {
	v.mu.Lock()
	v.to(id, slotlife.Release)
	release := v.releaseDueLocked()
	v.mu.Unlock()
	if release {
		v.releasePools()
	}
}

// queueTMF queues a task management request and sends it if the tmf
// slot is free; mu held.
func (v *Vhost) queueTMF(t tmf) {
	if len(v.tmfQ) == cap(v.tmfQ) {
		// Cannot happen: at most one abort per orphan and one reset.
		v.log.Warn("task management queue full: dropped", "act", t.act)
		return
	}
	v.tmfQ = append(v.tmfQ, t)
	v.kickTMF()
	if v.connected {
		v.flush()
	}
}

// kickTMF sends the next task management request while the tmf slot is
// free; mu held. An abort whose command was answered meanwhile is
// dropped.
func (v *Vhost) kickTMF() {
	for v.connected && !v.tmfBusy && len(v.tmfQ) > 0 {
		t := v.tmfQ[0]
		copy(v.tmfQ, v.tmfQ[1:])
		v.tmfQ = v.tmfQ[:len(v.tmfQ)-1]
		if t.act == vscsiif.ActSCSIAbort {
			s := &v.slots[t.ref]
			if s.gen != t.gen || s.state != slotlife.Orphaned || s.answered {
				continue
			}
			s.abortOut = true
		}
		r := vscsiif.Request{RqID: uint16(v.tmfID), Act: t.act, Channel: t.addr.Channel, ID: t.addr.Target,
			LUN: t.addr.LUN, RefRqID: uint16(t.ref), DataDirection: vscsiif.DirNone}
		vscsiif.EncodeRequest(v.abi, v.front.NextRequest(), &r)
		v.front.Produce(1)
		v.tmfBusy, v.tmfCur = true, t
	}
}

// tmfAnswered takes the answer of the task management request on the
// ring; mu held.
func (v *Vhost) tmfAnswered(rslt int32) {
	t := v.tmfCur
	v.tmfBusy = false
	switch t.act {
	case vscsiif.ActSCSIAbort:
		s := &v.slots[t.ref]
		if s.gen == t.gen && s.state == slotlife.Orphaned {
			s.abortOut = false
			if s.answered {
				v.to(t.ref, slotlife.Release)
			}
		}
		v.log.Debug("abort answered", "rqid", t.ref, "rslt", rslt)
	case vscsiif.ActSCSIReset:
		v.resetAnswered(resetOutcome{seq: t.seq, rslt: rslt})
	}
	if v.connected {
		v.kickTMF()
		v.flush()
	}
}

// queueReset queues a LUN RESET for addr and returns its seq, after
// clearing the commands for addr still pending; mu held.
func (v *Vhost) queueReset(addr vscsibus.VDev) uint64 {
	v.resetSeq++
	v.clearPending(addr)
	v.queueTMF(tmf{act: vscsiif.ActSCSIReset, addr: addr, seq: v.resetSeq})
	return v.resetSeq
}

// clearPending answers the pending commands for addr as its reset
// clears them (rsltReset), as the backend would have had they found room
// on the ring before the reset: a reset ends every command sent to the
// LUN before it (SAM's task set), and one held here must not reach the
// LUN after the reset, which its sender was told cleared it. mu held.
func (v *Vhost) clearPending(addr vscsibus.VDev) {
	v.pending.removeIf(func(id int) bool {
		if v.slots[id].addr != addr {
			return false
		}
		v.answerLocally(id, rsltReset)
		return true
	})
}

// resetAnswered hands a reset's outcome to its caller, replacing one
// nobody took (a caller that gave up); mu held.
func (v *Vhost) resetAnswered(o resetOutcome) {
	select {
	case <-v.resetDone:
	default:
	}
	v.resetDone <- o
}

// reset sends a LUN RESET for addr and waits for its answer.
func (v *Vhost) reset(ctx context.Context, addr vscsibus.VDev) error {
	v.resetMu.Lock()
	defer v.resetMu.Unlock()
	v.mu.Lock()
	if v.dead {
		v.mu.Unlock()
		return ErrClosed
	}
	seq := v.queueReset(addr)
	v.mu.Unlock()
	for {
		select {
		case o := <-v.resetDone:
			if o.seq != seq {
				continue
			}
			switch {
			case o.lost:
				return ErrResetLost
			case o.rslt != vscsiif.ResetSuccess:
				return fmt.Errorf("vscsifront: LUN RESET failed (rslt %#x)", o.rslt)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-v.closed:
			return ErrClosed
		}
	}
}
