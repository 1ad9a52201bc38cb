// Package blkback is xenblk's blkif backend: it serves a storage.Device to
// a Xen frontend over the block protocol. A VBD is one virtual block
// device: the handshake's steps (publish features, connect rings,
// disconnect), taken by its xenbus.Runner, plus one goroutine per
// negotiated queue that consumes requests and answers them. The rules
// of the field hold throughout: every request is copied out of the ring
// once and validated on the copy; a bad request gets an error response and
// a log line; a ring-level violation disconnects this device only.
package blkback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// Config is what a backend offers. Zero values take the defaults below.
type Config struct {
	Domain xen.Domain // the backend's own domain
	// MaxQueues advertised in multi-queue-max-queues (default
	// DefaultMaxQueues).
	MaxQueues int
	// MaxRingPageOrder advertised in max-ring-page-order (default 4;
	// negative: single-page rings only).
	MaxRingPageOrder int
	// MaxIndirectSegments advertised (default 4096; negative disables).
	MaxIndirectSegments int
	// PersistentGrants per queue (default 1056, Linux's figure; negative
	// disables feature-persistent).
	PersistentGrants int
	// GrantCopy serves every vbd in grant-copy mode (grantcopy.go), as a
	// vbd's own grant-copy=1 node does for that vbd: the guest's data
	// pages are copied, never mapped, and feature-persistent is not
	// offered.
	GrantCopy bool
	// Poll bounds the adaptive busy-poll of the ring after work, before
	// sleeping on the event channel: 0 means the default window (20 us),
	// negative never polls.
	Poll time.Duration
	// SCSI, when set, offers the SCSI extension (feature-extra-request).
	SCSI SCSIProvider
	// NoFlush and NoBarrier withhold feature-flush-cache and
	// feature-barrier (a backend without a volatile cache, or testing a
	// frontend against a minimal backend).
	NoFlush, NoBarrier bool
	// JournalDir keeps each ring's consumed requests in a file that
	// outlives the process (journal_linux.go), so that a backend killed
	// and restarted resumes a frontend's rings safely. Empty: no journal
	// (a restart then trusts the ring slots past rsp_prod).
	JournalDir string
	Log        *slog.Logger
}

// DefaultMaxQueues is how many queues a backend offers unless its Config
// says otherwise.
const DefaultMaxQueues = 4

func (c *Config) defaults() {
	if c.MaxQueues == 0 {
		c.MaxQueues = DefaultMaxQueues
	}
	if c.MaxRingPageOrder == 0 {
		c.MaxRingPageOrder = blkif.MaxRingPageOrder
	}
	if c.MaxIndirectSegments == 0 {
		c.MaxIndirectSegments = maxIndirectSegments
	}
	if c.MaxIndirectSegments > maxIndirectSegments {
		c.MaxIndirectSegments = maxIndirectSegments
	}
	if c.PersistentGrants == 0 {
		c.PersistentGrants = 1056
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// VBD is one vbd served by this backend.
type VBD struct {
	cfg      Config
	dir      string // our backend directory
	frontDir string
	frontDom xen.DomID
	nexus    scsi.Nexus // every queue's (vbd.Nexus)
	store    storage.Device
	readOnly bool
	cdrom    bool
	// resume: the vbd was Connected when we found it (a predecessor
	// died serving it); only the first connection may resume its rings.
	resume bool
	// hotplug: the toolstack runs a hotplug script for this vbd (libxl
	// wrote a script node); no frontend is connected before the script
	// reports (xenbus.NewHotplugBackend).
	hotplug  bool
	log      *slog.Logger
	lost     chan struct{}
	abandon  chan struct{}
	removed  chan struct{}
	onRemove func()
	scsi     SCSIExecutor
	// grantCopy: the vbd's queues copy the guest's pages instead of
	// mapping them (Config.GrantCopy, or the vbd's grant-copy node).
	grantCopy bool

	mu     sync.Mutex
	queues []*queue
	stop   chan struct{}
	wg     sync.WaitGroup
	// stopping: queues Disconnect is stopping; pastStats: the counters of
	// every queue stopped (Stats sums all three).
	stopping  []*queue
	pastStats Stats
}

// NewVBD prepares a vbd whose backend directory is dir. The storage is
// owned by the VBD from now on and closed when it is removed.
func NewVBD(cfg Config, dir string, dev storage.Device) (*VBD, error) {
	cfg.defaults()
	st := cfg.Domain.Store()
	frontDir, err := st.Read(dir + "/" + vbd.KeyFrontend)
	if err != nil {
		return nil, fmt.Errorf("blkback: %s has no frontend node: %w", dir, err)
	}
	fid, err := st.Read(dir + "/" + vbd.KeyFrontendID)
	if err != nil {
		return nil, fmt.Errorf("blkback: %s has no frontend-id: %w", dir, err)
	}
	fd, err := strconv.ParseUint(strings.TrimSpace(fid), 10, 16)
	if err != nil {
		return nil, fmt.Errorf("blkback: %s/frontend-id %q: %w", dir, fid, err)
	}
	nexus, err := vbd.Nexus(st, dir, xen.DomID(fd))
	if err != nil {
		return nil, fmt.Errorf("blkback: %w", err)
	}
	grantCopy, err := vbd.GrantCopy(st, dir)
	if err != nil {
		return nil, fmt.Errorf("blkback: %w", err)
	}
	d := &VBD{cfg: cfg, dir: dir, frontDir: frontDir, frontDom: xen.DomID(fd), nexus: nexus, store: dev,
		grantCopy: grantCopy || cfg.GrantCopy,
		log:       cfg.Log.With("vbd", dir), lost: make(chan struct{}, 1), abandon: make(chan struct{}), removed: make(chan struct{})}
	if mode, err := st.Read(dir + "/" + vbd.KeyMode); err == nil && strings.HasPrefix(mode, "r") {
		d.readOnly = true
	}
	// Connected before we published anything: a predecessor served this
	// vbd and died; its rings may be resumed from its journal.
	if state, err := st.Read(dir + "/state"); err == nil && strings.TrimSpace(state) == "4" {
		d.resume = true
	}
	if _, err := st.Read(dir + "/" + vbd.KeyScript); err == nil {
		d.hotplug = true
	}
	if dt, err := st.Read(dir + "/" + vbd.KeyDeviceType); err == nil && dt == "cdrom" {
		d.cdrom, d.readOnly = true, true
	}
	if dev.Info().ReadOnly {
		d.readOnly = true
	}
	if cfg.SCSI != nil {
		x, err := cfg.SCSI(dir, dev)
		if err != nil {
			return nil, fmt.Errorf("blkback: SCSI engine for %s: %w", dir, err)
		}
		d.scsi = x
	}
	return d, nil
}

// Run performs the handshake and serves the device until it is removed or
// ctx is cancelled.
func (d *VBD) Run(ctx context.Context) error {
	defer close(d.removed)
	m := xenbus.NewBackend()
	if d.hotplug {
		m = xenbus.NewHotplugBackend()
	}
	r := &xenbus.Runner{
		Store:   d.cfg.Domain.Store(),
		Self:    d.dir,
		Peer:    d.frontDir,
		Machine: m,
		Hotplug: d.hotplug,
		Driver:  driver{d},
		Lost:    d.lost,
		Abandon: d.abandon,
		Log:     d.log,
	}
	return r.Run(ctx)
}

// crash stops serving as a killed process would: the queues stop, the
// event channels close and the rings are unmapped, but nothing is written
// to the store. A new backend started on the same directory re-attaches to
// the frontend's rings and answers what was left unanswered.
func (d *VBD) crash() {
	close(d.abandon)
	<-d.removed
	d.disconnect()
}

// Done is closed when Run has returned.
func (d *VBD) Done() <-chan struct{} { return d.removed }

func (d *VBD) info() uint32 {
	var info uint32
	if d.readOnly {
		info |= blkif.VdiskReadOnly
	}
	if d.cdrom {
		info |= blkif.VdiskCDROM | blkif.VdiskRemovable
	}
	return info
}

// publish writes the features and the disk's geometry.
func (d *VBD) publish() error {
	in := d.store.Info()
	lbs := in.LogicalBlockSize
	if lbs == 0 {
		lbs = 512
	}
	pbs := in.PhysicalBlockSize
	if pbs < lbs {
		pbs = lbs
	}
	kv := [][2]string{
		{blkif.KeyFeatureFlushCache, boolKey(!d.cfg.NoFlush)},
		{blkif.KeyFeatureBarrier, boolKey(!d.cfg.NoBarrier)},
		{blkif.KeyMaxQueues, strconv.Itoa(d.cfg.MaxQueues)},
		{blkif.KeyMaxRingPageOrder, strconv.Itoa(max(d.cfg.MaxRingPageOrder, 0))},
		{blkif.KeySectors, strconv.FormatInt(in.Size>>sectorShift, 10)},
		{blkif.KeyInfo, strconv.Itoa(int(d.info()))},
		{blkif.KeySectorSize, strconv.Itoa(int(lbs))},
		{blkif.KeyPhysicalSectorSize, strconv.Itoa(int(pbs))},
	}
	if d.cfg.MaxIndirectSegments > 0 {
		kv = append(kv, [2]string{blkif.KeyMaxIndirectSegs, strconv.Itoa(d.cfg.MaxIndirectSegments)})
	}
	if d.offer().persistent {
		kv = append(kv, [2]string{blkif.KeyFeaturePersistent, "1"})
	}
	if d.scsi != nil {
		kv = append(kv, [2]string{blkif.KeyFeatureExtraRequest, strconv.Itoa(blkif.ExtraRequestVersion)},
			[2]string{blkif.KeyFeatureReservations, "1"})
	}
	kv = append(kv, d.characteristics(in)...)
	discard := in.CanDiscard && !d.readOnly
	if v, err := d.cfg.Domain.Store().Read(d.dir + "/" + vbd.KeyDiscardEnable); err == nil && v == "0" {
		discard = false
	}
	if discard {
		gran := in.DiscardGranularity
		if gran == 0 {
			gran = lbs
		}
		kv = append(kv,
			[2]string{blkif.KeyFeatureDiscard, "1"},
			[2]string{blkif.KeyDiscardGranularity, strconv.Itoa(int(gran))},
			[2]string{blkif.KeyDiscardAlignment, strconv.Itoa(int(in.DiscardAlignment))},
			[2]string{blkif.KeyDiscardSecure, boolKey(in.CanSecureDiscard)},
		)
	} else {
		kv = append(kv, [2]string{blkif.KeyFeatureDiscard, "0"})
	}
	return d.cfg.Domain.Store().Transaction(func(tx xen.Tx) error {
		for _, e := range kv {
			if err := tx.Write(d.dir+"/"+e[0], e[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

func boolKey(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// limits snapshots what this connection may do.
func (d *VBD) limits() *limits {
	in := d.store.Info()
	lbs := in.LogicalBlockSize
	if lbs == 0 {
		lbs = 512
	}
	l := &limits{
		logicalBlock:  lbs,
		readOnly:      d.readOnly,
		barrier:       !d.cfg.NoBarrier,
		flush:         !d.cfg.NoFlush,
		discard:       in.CanDiscard && !d.readOnly,
		secureDiscard: in.CanSecureDiscard,
	}
	l.sectors.Store(uint64(in.Size) >> sectorShift)
	if v, err := d.cfg.Domain.Store().Read(d.dir + "/" + vbd.KeyDiscardEnable); err == nil && v == "0" {
		l.discard = false
	}
	if d.cfg.MaxIndirectSegments > 0 {
		l.indirectSegments = d.cfg.MaxIndirectSegments
	}
	return l
}

// connect negotiates the connection from the frontend's keys
// (negotiate.go), maps every ring, binds every event channel and starts
// the queues.
func (d *VBD) connect() error {
	// Every queue of a dead connection reports the loss; only the first
	// report counted, the rest are stale now.
	for len(d.lost) > 0 {
		<-d.lost
	}
	st := d.cfg.Domain.Store()
	c, err := negotiate(d.offer(), func(key string) (string, error) { return st.Read(d.frontDir + "/" + key) })
	if err != nil {
		return fmt.Errorf("frontend %s: %w", d.frontDir, err)
	}
	var extras SCSIExecutor
	if c.extraRequest {
		extras = d.scsi
	}
	lim := d.limits()
	var queues []*queue
	for i, spec := range c.rings {
		q, err := d.connectQueue(i, spec, c, lim)
		if err != nil {
			for _, q := range queues {
				q.close()
			}
			return fmt.Errorf("queue %d: %w", i, err)
		}
		q.scsi = extras
		// The reservation operation needs no frontend opt-in (like
		// flush): a frontend that saw the feature may send it.
		q.pr = d.scsi
		q.fence, _ = d.scsi.(scsi.Fencer)
		q.nexus = d.nexus
		queues = append(queues, q)
	}
	d.resume = false
	d.start(queues)
	d.log.Info("connected", "queues", len(queues), "abi", c.abi, "ring-page-order", c.order, "persistent", c.persistent, "grant-copy", d.grantCopy,
		"indirect", lim.indirectSegments, "sectors", lim.sectors.Load(), "scsi", extras != nil)
	return nil
}

// start runs one goroutine per queue until Disconnect. A queue that
// fails reports the loss of the frontend (and, for a ring-level protocol
// violation, writes the reason in the vbd's error node).
func (d *VBD) start(queues []*queue) {
	st := d.cfg.Domain.Store()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queues = queues
	d.stop = make(chan struct{})
	stop := d.stop
	for _, q := range queues {
		d.wg.Add(1)
		go func(q *queue) {
			defer d.wg.Done()
			if err := q.run(stop); err != nil {
				select {
				case <-stop:
					return
				default:
				}
				if errors.Is(err, errFatal) {
					d.log.Error("disconnecting device", "queue", q.index, "err", err)
					_ = st.Write(d.dir+"/error", err.Error())
				} else {
					d.log.Info("frontend went away", "queue", q.index, "err", err)
				}
				select {
				case d.lost <- struct{}{}:
				default:
				}
			}
		}(q)
	}
}

// connectQueue maps ring i of connection c and binds its event channel.
func (d *VBD) connectQueue(i int, spec ringSpec, c connection, lim *limits) (*queue, error) {
	m, err := d.cfg.Domain.Mapper().Map(d.frontDom, spec.refs, false)
	if err != nil {
		return nil, fmt.Errorf("map ring: %w", err)
	}
	r, err := ring.AttachBack(m.Bytes(), c.abi.SlotSize())
	if err != nil {
		_ = m.Unmap()
		return nil, err
	}
	ch, err := d.cfg.Domain.Events().BindInterdomain(d.frontDom, spec.port)
	if err != nil {
		_ = m.Unmap()
		return nil, fmt.Errorf("bind event channel %d: %w", spec.port, err)
	}
	q := &queue{index: i, dev: d, front: d.frontDom, abi: c.abi, ringMap: m, ring: r, ch: ch, lim: lim,
		store: d.store, log: d.log.With("queue", i), poll: d.cfg.Poll, replayEnd: r.ReqCons()}
	if d.cfg.JournalDir != "" {
		if err := q.openJournal(d.cfg.JournalDir, journalID{d.frontDom, spec.refs[0]}); err != nil {
			// Serving without a journal only weakens a later restart.
			q.log.Warn("no request journal; a restart will trust the ring", "err", err)
		}
	}
	if c.persistent {
		q.persistent = newPersistentGrants(d.cfg.PersistentGrants)
	}
	if d.grantCopy {
		q.cp = newCopyArea(d.frontDom, d.cfg.Domain.Mapper())
	}
	return q, nil
}

// openJournal opens the queue's journal. On the first connection after
// a restart (d.resume) a journal kept for this very ring names the
// requests the predecessor consumed and left unanswered; they are replayed
// from it. Otherwise it starts over at the ring's published rsp_prod.
func (q *queue) openJournal(base string, id journalID) error {
	d := q.dev
	j, err := openJournal(journalPath(base, d.dir, q.index), q.ring.Size(), q.ring.SlotSize())
	if err != nil {
		return err
	}
	start := q.ring.ReqCons() // the published rsp_prod
	if d.resume && j.matches(id) && j.rspPublished() == start {
		consumed := j.reqCons()
		if consumed-start <= q.ring.Size() {
			q.replayEnd = consumed
			q.log.Info("resuming the ring", "unanswered", consumed-start)
			q.journal = j
			return nil
		}
	}
	if n, _ := q.ring.Unconsumed(); d.resume && n > 0 {
		q.log.Warn("resuming a ring without its journal: trusting the slots past rsp_prod")
	}
	j.reset(id, start)
	q.journal = j
	return nil
}

func (q *queue) close() {
	_ = q.ch.Close()
	if q.journal != nil {
		q.journal.close()
	}
	if q.persistent != nil {
		q.persistent.clear()
	}
	_ = q.ringMap.Unmap()
}

// disconnect stops the queues and unmaps everything.
func (d *VBD) disconnect() {
	d.mu.Lock()
	queues, stop := d.queues, d.stop
	d.queues, d.stop = nil, nil
	d.stopping = queues // still counted by Stats until folded below
	d.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	for _, q := range queues {
		_ = q.ch.Close() // wakes a queue asleep in Wait
	}
	d.wg.Wait()
	d.mu.Lock()
	for _, q := range queues {
		q.stats.addTo(&d.pastStats)
	}
	d.stopping = nil
	d.mu.Unlock()
	for _, q := range queues {
		q.close()
	}
	d.log.Info("disconnected")
}

// remove forgets the device and closes its storage.
func (d *VBD) remove() {
	_ = d.store.Close()
	if c, ok := d.scsi.(io.Closer); ok {
		// An engine holding something of its own (an SG_IO disk).
		_ = c.Close()
	}
	if d.cfg.JournalDir != "" {
		// The vbd is gone for good: nothing will resume its rings.
		for i := 0; i < d.cfg.MaxQueues; i++ {
			_ = os.Remove(journalPath(d.cfg.JournalDir, d.dir, i))
		}
	}
	if d.onRemove != nil {
		d.onRemove()
	}
	d.log.Info("removed")
}

// Resize tells the frontend about a new size (online resize): it rewrites
// `sectors` and then the Connected state, which blkfront answers by
// re-reading the size.
func (d *VBD) Resize() error {
	st := d.cfg.Domain.Store()
	sectors := strconv.FormatInt(d.store.Info().Size>>sectorShift, 10)
	d.mu.Lock()
	for _, q := range d.queues {
		q.lim.sectors.Store(uint64(d.store.Info().Size) >> sectorShift)
	}
	d.mu.Unlock()
	if err := st.Write(d.dir+"/"+blkif.KeySectors, sectors); err != nil {
		return err
	}
	state, err := st.Read(d.dir + "/state")
	if err != nil {
		return err
	}
	return st.Write(d.dir+"/state", state)
}
