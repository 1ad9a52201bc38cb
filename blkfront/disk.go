// Package blkfront is xenblk's blkif frontend: it attaches to a backend
// (ours or Linux's blkback) through the xenbus handshake and exposes the
// disk as a Go API safe for many goroutines. Data moves through a pool of
// pages granted to the backend once and reused (so a backend offering
// feature-persistent keeps them mapped), in direct requests of up to 11
// segments or indirect requests of up to the backend's limit; multi-queue
// spreads requests over rings. A backend that dies is noticed through its
// event channel; the frontend reconnects when a backend offers InitWait
// again and re-issues what was in flight.
package blkfront

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// ErrClosed: the disk was closed or detached.
var ErrClosed = errors.New("blkfront: disk closed")

// ErrIO: the backend answered BLKIF_RSP_ERROR.
var ErrIO = errors.New("blkfront: backend reported an I/O error")

// ErrNotSupported: the backend answered BLKIF_RSP_EOPNOTSUPP or does not
// offer the feature.
var ErrNotSupported = errors.New("blkfront: operation not supported by the backend")

// Config chooses how to use the backend. Zero values take defaults: as
// many queues as the backend offers up to 2, a ring of up to 4 pages,
// indirect segments up to 256 (1 MiB requests), persistent grants on.
type Config struct {
	Domain xen.Domain // the guest's domain
	Dir    string     // the frontend directory, /local/domain/N/device/vbd/DEV
	// Queues asks for 1 to MaxQueues rings (0: DefaultQueues). A backend
	// offering fewer (multi-queue-max-queues) gets as many as it offers,
	// as Linux's blkfront does; Info().Queues says how many were used.
	Queues int
	// RingPageOrder caps the ring size asked for (default 2).
	RingPageOrder int
	// MaxIndirectSegments caps indirect requests (default 256; -1 disables).
	MaxIndirectSegments int
	// NoSCSI declines the SCSI extension even if the backend offers it.
	NoSCSI bool
	// NoPoll makes every wait for a response sleep on the event channel
	// at once: no busy-polling of the ring (which pays only while a
	// spare CPU is there to spin on).
	NoPoll bool
	Log    *slog.Logger
}

// DefaultQueues is how many queues a Config with Queues 0 asks for.
const DefaultQueues = 2

// MaxQueues bounds Config.Queues. More rings than processors buy nothing,
// and each queue holds at least a few hundred grant entries of the
// domain's table (ring, indirect pages, one largest request's data).
const MaxQueues = 16

// Info is what the backend told us about the disk.
type Info struct {
	Sectors            uint64 // 512-byte units
	SectorSize         uint32 // logical block size
	PhysicalSectorSize uint32
	ReadOnly           bool
	CDROM              bool
	Removable          bool
	Flush              bool
	Barrier            bool
	Discard            bool
	DiscardSecure      bool
	DiscardGranularity uint32
	DiscardAlignment   uint32
	Persistent         bool
	IndirectSegments   int
	Queues             int
	RingPageOrder      int
	// ExtraRequest: the SCSI extension is negotiated (ExecSCSI works).
	ExtraRequest bool
	// Reservations: the backend serves blkif.OpReservation (PR* methods).
	Reservations bool
}

// Size is the disk size in bytes.
func (i Info) Size() int64 { return int64(i.Sectors) * blkif.SectorSize }

// Disk is an attached virtual disk.
type Disk struct {
	cfg     Config
	dom     xen.Domain
	dir     string
	backDir string
	backDom xen.DomID
	log     *slog.Logger

	info   atomic.Pointer[Info]
	queues []*queue
	next   atomic.Uint32 // round-robin queue choice

	lost      chan struct{}
	connected chan struct{} // closed at the first Connected
	// setupFailed carries the first connection's Connect or Attach error
	// to Open, which fails with it at once (the handshake alone would
	// only go Closed and wait). Buffered(1); later errors are dropped.
	setupFailed chan error
	connOnce    sync.Once
	closed      atomic.Bool
	cancel      context.CancelFunc
	runDone     chan struct{}
	runErr      error
	segsPerReq  int // data pages per request (11 or the indirect limit)
}

// Open attaches the frontend at cfg.Dir and returns once the disk is
// Connected (or ctx ends). The handshake keeps running in the background,
// reconnecting after a backend restart, until Close.
func Open(ctx context.Context, cfg Config) (*Disk, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.RingPageOrder == 0 {
		cfg.RingPageOrder = 2
	}
	if cfg.MaxIndirectSegments == 0 {
		cfg.MaxIndirectSegments = 256
	}
	if cfg.Queues < 0 || cfg.Queues > MaxQueues {
		return nil, fmt.Errorf("blkfront: %d queues asked; want 1 to %d", cfg.Queues, MaxQueues)
	}
	if cfg.Queues == 0 {
		cfg.Queues = DefaultQueues
	}
	st := cfg.Domain.Store()
	backDir, err := st.Read(cfg.Dir + "/backend")
	if err != nil {
		return nil, fmt.Errorf("blkfront: %s has no backend node (is the vbd attached?): %w", cfg.Dir, err)
	}
	bid, err := st.Read(cfg.Dir + "/backend-id")
	if err != nil {
		return nil, fmt.Errorf("blkfront: %s has no backend-id: %w", cfg.Dir, err)
	}
	b, err := strconv.ParseUint(strings.TrimSpace(bid), 10, 16)
	if err != nil {
		return nil, fmt.Errorf("blkfront: backend-id %q: %w", bid, err)
	}
	d := &Disk{cfg: cfg, dom: cfg.Domain, dir: cfg.Dir, backDir: backDir, backDom: xen.DomID(b),
		log: cfg.Log.With("vbd", cfg.Dir), lost: make(chan struct{}, 1), connected: make(chan struct{}), setupFailed: make(chan error, 1), runDone: make(chan struct{})}
	runCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	r := &xenbus.Runner{Store: st, Self: d.dir, Peer: backDir, Machine: xenbus.NewFrontend(), Driver: driver{d}, Lost: d.lost, Log: d.log,
		OnStep: d.onStep}
	go func() {
		d.runErr = r.Run(runCtx)
		// Gone for good: every request ends (with ErrClosed) and every
		// slot waiter wakes to fail. The queues are built and dropped
		// only by the handshake (Connect), which has returned.
		d.closed.Store(true)
		for _, q := range d.queues {
			q.abortAll()
		}
		close(d.runDone)
	}()
	select {
	case <-d.connected:
		return d, nil
	case err := <-d.setupFailed:
		d.Close()
		return nil, fmt.Errorf("blkfront: connect %s to the backend at %s: %w", d.dir, backDir, err)
	case <-d.runDone:
		return nil, fmt.Errorf("blkfront: %s closed before connecting: %v", d.dir, d.runErr)
	case <-ctx.Done():
		d.Close()
		return nil, fmt.Errorf("blkfront: waiting for the backend at %s (%s): %w", backDir, d.backendSays(), ctx.Err())
	}
}

// onStep hears the handshake after each event. Before the first
// Connected, Closed against a Closing or Closed backend is the end: the
// backend refused us (blkback's Closing, the reason in its error node)
// or is closed from an earlier frontend, and neither end moves again
// (a backend comes back from Closed only on seeing us Initialising).
// Open fails with why, at once. Closed against a backend in InitWait is
// not the end: that InitWait's event connects us (or our own Connect
// failed, and said why).
func (d *Disk) onStep(self, peer xenbus.State) {
	if self != xenbus.Closed || peer != xenbus.Closing && peer != xenbus.Closed {
		return
	}
	// The machine's view of the backend may be older than the store's:
	// a backend already back in InitWait has an event on its way to us.
	state, says := d.backendState()
	if state == xenbus.Closing || state == xenbus.Closed {
		d.failSetup(fmt.Errorf("the handshake went Closed; the backend is %s", says))
	}
}

// backendSays describes the backend's state node and its error node (the
// reason a backend gives for refusing a frontend, where xenblk's writes it).
func (d *Disk) backendSays() string {
	_, says := d.backendState()
	return says
}

// backendState reads the backend's state node (Unknown if absent) and
// describes it with its error node.
func (d *Disk) backendState() (xenbus.State, string) {
	st := d.dom.Store()
	state, name := xenbus.Unknown, "absent"
	if v, err := st.Read(d.backDir + "/state"); err == nil {
		state = xenbus.ParseState(strings.TrimSpace(v))
		name = state.String()
	}
	if e, err := st.Read(d.backDir + "/error"); err == nil && strings.TrimSpace(e) != "" {
		return state, fmt.Sprintf("%s, and reports: %s", name, strings.TrimSpace(e))
	}
	return state, name + ", with no error node"
}

// Close detaches: Closing, wait for the backend to close, Closed.
func (d *Disk) Close() error {
	d.cancel()
	<-d.runDone
	for _, q := range d.queues {
		q.release()
	}
	return nil
}

// Done is closed when the disk is gone for good: detached (the toolstack
// removed the vbd), closed, or its handshake failed for want of a store.
// The frontend keeps waiting through a backend restart; that is not gone.
func (d *Disk) Done() <-chan struct{} { return d.runDone }

// Err is, once Done is closed, why: nil for a detach, otherwise what
// stopped the handshake (the store connection was lost; after Close, the
// backend not answering in time).
func (d *Disk) Err() error {
	select {
	case <-d.runDone:
		return d.runErr
	default:
		return nil
	}
}

func (d *Disk) isClosed() bool { return d.closed.Load() }

// Info returns what the backend advertised, as of the last (re)connect.
func (d *Disk) Info() Info { return *d.info.Load() }

// Size is the disk size in bytes.
func (d *Disk) Size() int64 { return d.info.Load().Size() }

func (d *Disk) peerLost() {
	select {
	case d.lost <- struct{}{}:
	default:
	}
}

// readBackend reads the backend's advertised features.
func (d *Disk) readBackend() (*Info, error) {
	in := &Info{}
	if err := readFeatures(d.dom.Store(), d.backDir, in, false); err != nil {
		return nil, err
	}
	return in, nil
}

// failSetup hands err to Open if the disk never connected yet.
func (d *Disk) failSetup(err error) {
	if err == nil {
		return
	}
	select {
	case <-d.connected:
		return // a reconnect's failure: the handshake deals with it
	default:
	}
	select {
	case d.setupFailed <- err:
	default:
	}
}

func (d *Disk) connect() error {
	// Every queue of a dead connection reports the loss; the machine
	// already acted on the first report, so the rest are stale now.
	drain(d.lost)
	in, err := d.readBackend()
	if err != nil {
		return err
	}
	// Negotiate.
	// min(asked, offered), as Linux's blkfront; a backend offering none
	// (or nonsense) is single-queue.
	nq := max(min(d.cfg.Queues, in.Queues), 1)
	if nq < d.cfg.Queues && d.queues == nil {
		d.log.Info("the backend offers fewer queues than asked; using what it offers", "asked", d.cfg.Queues, "offered", in.Queues)
	}
	order := d.cfg.RingPageOrder
	if order > in.RingPageOrder {
		order = in.RingPageOrder
	}
	segs := blkif.MaxSegmentsPerRequest
	indirect := 0
	if d.cfg.MaxIndirectSegments > 0 && in.IndirectSegments > blkif.MaxSegmentsPerRequest {
		indirect = min(in.IndirectSegments, d.cfg.MaxIndirectSegments, blkif.MaxIndirectSegments)
		segs = indirect
	}
	in.Queues, in.RingPageOrder, in.IndirectSegments = nq, order, indirect
	in.ExtraRequest = in.ExtraRequest && !d.cfg.NoSCSI
	if cur := d.info.Load(); cur != nil {
		// A reconnect: callers go on checking ranges against the geometry
		// the last connection gave until the backend, Connected again,
		// says otherwise (refreshGeometry). A fresh Info would say a
		// sector size of 0 and a disk of none in between.
		in.Sectors, in.SectorSize, in.PhysicalSectorSize = cur.Sectors, cur.SectorSize, cur.PhysicalSectorSize
		in.ReadOnly, in.CDROM, in.Removable = cur.ReadOnly, cur.CDROM, cur.Removable
	}
	abi := blkif.Native

	var pubs []ringPub
	switch {
	case d.queues == nil:
		// First connection: size the queues. Reconnects keep them (and
		// their in-flight slots) if the negotiated shape is the same.
		if pubs, err = d.buildQueues(nq, order, abi, segs, indirect); err != nil {
			return err
		}
	case len(d.queues) != nq || d.segsPerReq != segs:
		return fmt.Errorf("the restarted backend offers a different shape (%d queues, %d segments; had %d, %d)", nq, segs, len(d.queues), d.segsPerReq)
	default:
		if pubs, err = d.connectQueues(order, abi); err != nil {
			return err
		}
	}
	d.info.Store(in)
	return d.dom.Store().Transaction(func(tx xen.Tx) error {
		w := func(k, v string) error { return tx.Write(d.dir+"/"+k, v) }
		if err := w(blkif.KeyProtocol, abi.String()); err != nil {
			return err
		}
		if err := w(blkif.KeyFeaturePersistent, "1"); err != nil {
			return err
		}
		if in.ExtraRequest {
			if err := w(blkif.KeyFeatureExtraRequest, strconv.Itoa(blkif.ExtraRequestVersion)); err != nil {
				return err
			}
		}
		if order > 0 {
			if err := w(blkif.KeyRingPageOrder, strconv.Itoa(order)); err != nil {
				return err
			}
		}
		if nq > 1 {
			if err := w(blkif.KeyNumQueues, strconv.Itoa(nq)); err != nil {
				return err
			}
		}
		for i, p := range pubs {
			dir := ""
			if nq > 1 {
				dir = fmt.Sprintf("queue-%d/", i)
			}
			for k, ref := range p.refs {
				key := blkif.KeyRingRef
				if order > 0 {
					key = fmt.Sprintf("%s%d", blkif.KeyRingRef, k)
				}
				if err := w(dir+key, strconv.FormatUint(uint64(ref), 10)); err != nil {
					return err
				}
			}
			if err := w(dir+blkif.KeyEventChannel, strconv.FormatUint(uint64(p.port), 10)); err != nil {
				return err
			}
		}
		return nil
	})
}

// ringPub is what one queue publishes for the backend: its ring's grant
// refs and its event channel.
type ringPub struct {
	refs []xen.GrantRef
	port xen.Port
}

// maxPoolPages caps a queue's data pool: beyond it, a deeper pool buys no
// throughput and costs grant entries.
const maxPoolPages = 4096

// buildQueues makes the first connection's queues and grants their rings.
// A queue's data pool wants a page for every segment its ring can carry
// (up to maxPoolPages). When the domain's grant table (or, on Linux,
// gntalloc's limit) has no room for that, every pool halves until they
// all fit, down to one largest request's worth (segs pages): fewer
// requests in flight, but a working disk. When even that does not fit,
// it fails at once saying how many entries it needed. The grant table's
// free size is not known on real Xen, so trying is the measure.
func (d *Disk) buildQueues(nq, order int, abi blkif.ABI, segs, indirect int) ([]ringPub, error) {
	nslots := int(minRingSlots(order, abi))
	ipages := blkif.IndirectPages(indirect)
	want := max(min(nslots*segs, maxPoolPages), segs)
	for pool := want; ; pool = max(pool/2, segs) {
		pubs, err := d.tryQueues(nq, nslots, pool, ipages, order, abi)
		if err == nil {
			if pool < want {
				d.log.Warn("the grant table has no room for full data pools; fewer requests in flight",
					"queues", nq, "pool-pages", pool, "wanted", want)
			}
			d.segsPerReq = segs
			return pubs, nil
		}
		if !errors.Is(err, xen.ErrGrantTableFull) {
			return nil, err
		}
		if pool == segs {
			each := 1<<order + nslots*ipages + segs
			return nil, fmt.Errorf("%d queue(s) need at least %d grant entries (%d each: %d ring, %d indirect and %d data pages), more than the domain can grant; use fewer queues: %w",
				nq, nq*each, each, 1<<order, nslots*ipages, segs, err)
		}
	}
}

// tryQueues builds nq queues with pool data pages each and grants their
// rings; on failure it revokes whatever it granted.
func (d *Disk) tryQueues(nq, nslots, pool, ipages, order int, abi blkif.ABI) ([]ringPub, error) {
	for i := 0; i < nq; i++ {
		q, err := newQueue(d, i, nslots, pool, ipages)
		if err != nil {
			d.releaseQueues()
			return nil, err
		}
		d.queues = append(d.queues, q)
	}
	pubs, err := d.connectQueues(order, abi)
	if err != nil {
		d.releaseQueues()
		return nil, err
	}
	return pubs, nil
}

func (d *Disk) releaseQueues() {
	for _, q := range d.queues {
		q.release()
	}
	d.queues = nil
}

// connectQueues grants every queue a fresh ring and event channel; on
// failure the queues that got theirs drop them again.
func (d *Disk) connectQueues(order int, abi blkif.ABI) ([]ringPub, error) {
	pubs := make([]ringPub, len(d.queues))
	for i, q := range d.queues {
		refs, port, err := q.connect(order, abi)
		if err != nil {
			for _, q := range d.queues[:i] {
				q.disconnect()
			}
			return nil, err
		}
		pubs[i] = ringPub{refs, port}
	}
	return pubs, nil
}

func minRingSlots(order int, abi blkif.ABI) uint32 {
	n := uint32(1)
	for n*2*uint32(abi.SlotSize())+64 <= uint32(xen.PageSize<<order) {
		n *= 2
	}
	return n
}

// attach reads the disk's geometry and starts I/O, re-issuing what was in
// flight.
func (d *Disk) attach() error {
	if err := d.refreshGeometry(); err != nil {
		d.failSetup(err)
		return err
	}
	for _, q := range d.queues {
		q.start()
	}
	d.connOnce.Do(func() { close(d.connected) })
	in := d.Info()
	d.log.Info("connected", "bytes", in.Size(), "sector-size", in.SectorSize, "queues", in.Queues,
		"indirect", in.IndirectSegments, "persistent", in.Persistent, "flush", in.Flush, "discard", in.Discard)
	return nil
}

// refresh re-reads the size after an online resize.
func (d *Disk) refresh() error {
	old := d.Size()
	if err := d.refreshGeometry(); err != nil {
		return err
	}
	if d.Size() != old {
		d.log.Info("disk resized", "from", old, "to", d.Size())
	}
	return nil
}

func (d *Disk) refreshGeometry() error {
	st := d.dom.Store()
	cur := d.info.Load()
	if cur == nil {
		return errors.New("not connected")
	}
	in := *cur
	num := func(key string, def uint64) (uint64, error) {
		return xenbus.ReadNumber(st, d.backDir+"/"+key, def)
	}
	var err error
	if in.Sectors, err = num(blkif.KeySectors, 0); err != nil {
		return fmt.Errorf("backend's sectors: %w", err)
	}
	ss, err := num(blkif.KeySectorSize, 512)
	if err != nil {
		return fmt.Errorf("backend's sector-size: %w", err)
	}
	if ss < 512 || ss&(ss-1) != 0 || ss > 4096 {
		return fmt.Errorf("backend's sector-size %d is not a power of two in 512..4096", ss)
	}
	in.SectorSize = uint32(ss)
	pss, err := num(blkif.KeyPhysicalSectorSize, ss)
	if err != nil {
		return err
	}
	in.PhysicalSectorSize = uint32(pss)
	info, err := num(blkif.KeyInfo, 0)
	if err != nil {
		return err
	}
	in.ReadOnly = info&blkif.VdiskReadOnly != 0
	in.CDROM = info&blkif.VdiskCDROM != 0
	in.Removable = info&blkif.VdiskRemovable != 0
	if mode, err := st.Read(d.backDir + "/mode"); err == nil && strings.HasPrefix(mode, "r") {
		in.ReadOnly = true
	}
	if err := readFeatures(st, d.backDir, &in, true); err != nil {
		return err
	}
	d.info.Store(&in)
	return nil
}

// disconnect stops I/O; requests in flight wait for the reconnect.
func (d *Disk) disconnect() {
	for _, q := range d.queues {
		q.disconnect()
	}
}

// remove: the device is gone; waiting callers fail.
func (d *Disk) remove() {
	d.closed.Store(true)
	for _, q := range d.queues {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// drain empties a notification channel without blocking.
func drain(c chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
