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

	lost       chan struct{}
	connected  chan struct{} // closed at the first Connected
	connOnce   sync.Once
	closed     atomic.Bool
	cancel     context.CancelFunc
	runDone    chan struct{}
	runErr     error
	segsPerReq int // data pages per request (11 or the indirect limit)
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
		log: cfg.Log.With("vbd", cfg.Dir), lost: make(chan struct{}, 1), connected: make(chan struct{}), runDone: make(chan struct{})}
	runCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	r := &xenbus.Runner{Store: st, Self: d.dir, Peer: backDir, Machine: xenbus.NewFrontend(), Driver: d, Lost: d.lost, Log: d.log}
	go func() {
		d.runErr = r.Run(runCtx)
		d.closed.Store(true)
		for _, q := range d.queues {
			q.mu.Lock()
			q.cond.Broadcast()
			q.mu.Unlock()
		}
		close(d.runDone)
	}()
	select {
	case <-d.connected:
		return d, nil
	case <-d.runDone:
		return nil, fmt.Errorf("blkfront: %s closed before connecting: %v", d.dir, d.runErr)
	case <-ctx.Done():
		d.Close()
		return nil, fmt.Errorf("blkfront: waiting for the backend at %s: %w", backDir, ctx.Err())
	}
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
	st := d.dom.Store()
	get := func(key string, def int64) (int64, error) {
		v, err := st.Read(d.backDir + "/" + key)
		if errors.Is(err, xen.ErrNotFound) {
			return def, nil
		}
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("backend's %s is %q, not a number", key, v)
		}
		return n, nil
	}
	in := &Info{}
	var err error
	vals := map[string]*int64{}
	for _, k := range []string{blkif.KeyFeatureFlushCache, blkif.KeyFeatureBarrier, blkif.KeyFeatureDiscard, blkif.KeyDiscardSecure,
		blkif.KeyFeaturePersistent, blkif.KeyMaxIndirectSegs, blkif.KeyMaxQueues, blkif.KeyMaxRingPageOrder, blkif.KeyDiscardGranularity, blkif.KeyDiscardAlignment,
		blkif.KeyFeatureExtraRequest, blkif.KeyFeatureReservations} {
		v := new(int64)
		def := int64(0)
		if k == blkif.KeyMaxQueues {
			def = 1
		}
		if *v, err = get(k, def); err != nil {
			return nil, err
		}
		vals[k] = v
	}
	in.Flush = *vals[blkif.KeyFeatureFlushCache] == 1
	in.Barrier = *vals[blkif.KeyFeatureBarrier] == 1
	in.Discard = *vals[blkif.KeyFeatureDiscard] == 1
	in.DiscardSecure = *vals[blkif.KeyDiscardSecure] == 1
	in.DiscardGranularity = uint32(*vals[blkif.KeyDiscardGranularity])
	in.DiscardAlignment = uint32(*vals[blkif.KeyDiscardAlignment])
	in.Persistent = *vals[blkif.KeyFeaturePersistent] == 1
	in.IndirectSegments = int(*vals[blkif.KeyMaxIndirectSegs])
	in.Queues = int(*vals[blkif.KeyMaxQueues])
	in.RingPageOrder = int(*vals[blkif.KeyMaxRingPageOrder])
	in.ExtraRequest = *vals[blkif.KeyFeatureExtraRequest] >= blkif.ExtraRequestVersion
	in.Reservations = *vals[blkif.KeyFeatureReservations] == 1
	return in, nil
}

// Publish: a frontend has no static nodes to publish (xenbus Driver).
func (d *Disk) Publish() error { return nil }

// Connect builds (once) the queues and grants fresh rings, then publishes
// them in one transaction (xenbus Driver).
func (d *Disk) Connect() error {
	// Every queue of a dead connection reports the loss; the machine
	// already acted on the first report, so the rest are stale now.
	drain(d.lost)
	in, err := d.readBackend()
	if err != nil {
		return err
	}
	// Negotiate.
	nq := d.cfg.Queues
	if nq == 0 {
		nq = 2
	}
	if nq > in.Queues {
		nq = in.Queues
	}
	if nq < 1 {
		nq = 1
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
	abi := blkif.Native

	if d.queues == nil {
		// First connection: size the queues. Reconnects keep them (and
		// their in-flight slots) if the negotiated shape is the same.
		nslots := int(minRingSlots(order, abi))
		pool := min(nslots*segs, 4096)
		if pool < segs {
			pool = segs
		}
		for i := 0; i < nq; i++ {
			q, err := newQueue(d, i, nslots, pool, blkif.IndirectPages(indirect))
			if err != nil {
				for _, q := range d.queues {
					q.release()
				}
				d.queues = nil
				return err
			}
			d.queues = append(d.queues, q)
		}
		d.segsPerReq = segs
	} else if len(d.queues) != nq || d.segsPerReq != segs {
		return fmt.Errorf("the restarted backend offers a different shape (%d queues, %d segments; had %d, %d)", nq, segs, len(d.queues), d.segsPerReq)
	}
	type pub struct {
		refs []xen.GrantRef
		port xen.Port
	}
	pubs := make([]pub, nq)
	for i, q := range d.queues {
		refs, port, err := q.connect(order, abi)
		if err != nil {
			for _, q := range d.queues[:i] {
				q.disconnect()
			}
			return err
		}
		pubs[i] = pub{refs, port}
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

func minRingSlots(order int, abi blkif.ABI) uint32 {
	n := uint32(1)
	for n*2*uint32(abi.SlotSize())+64 <= uint32(xen.PageSize<<order) {
		n *= 2
	}
	return n
}

// Attach reads the disk's geometry and starts I/O, re-issuing what was in
// flight (xenbus Driver).
func (d *Disk) Attach() error {
	if err := d.refreshGeometry(); err != nil {
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

// Refresh re-reads the size after an online resize (xenbus Driver).
func (d *Disk) Refresh() error {
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
		v, err := st.Read(d.backDir + "/" + key)
		if errors.Is(err, xen.ErrNotFound) {
			return def, nil
		}
		if err != nil {
			return 0, err
		}
		return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	}
	var err error
	if in.Sectors, err = num(blkif.KeySectors, 0); err != nil {
		return fmt.Errorf("backend's sectors: %w", err)
	}
	ss, err := num(blkif.KeySectorSize, 512)
	if err != nil || ss < 512 || ss&(ss-1) != 0 || ss > 4096 {
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
	// Linux's blkback publishes these only when it connects, not at
	// InitWait; Linux's blkfront reads them here too. A key that is
	// present now wins over what was read before the rings were set up.
	for _, f := range []struct {
		key string
		set func(v uint64)
	}{
		{blkif.KeyFeatureFlushCache, func(v uint64) { in.Flush = v == 1 }},
		{blkif.KeyFeatureBarrier, func(v uint64) { in.Barrier = v == 1 }},
		{blkif.KeyFeatureDiscard, func(v uint64) { in.Discard = v == 1 }},
		{blkif.KeyDiscardSecure, func(v uint64) { in.DiscardSecure = v == 1 }},
		{blkif.KeyDiscardGranularity, func(v uint64) { in.DiscardGranularity = uint32(v) }},
		{blkif.KeyDiscardAlignment, func(v uint64) { in.DiscardAlignment = uint32(v) }},
		{blkif.KeyFeaturePersistent, func(v uint64) { in.Persistent = v == 1 }},
	} {
		if _, err := st.Read(d.backDir + "/" + f.key); err != nil {
			continue
		}
		v, err := num(f.key, 0)
		if err != nil {
			return fmt.Errorf("backend's %s: %w", f.key, err)
		}
		f.set(v)
	}
	d.info.Store(&in)
	return nil
}

// Disconnect stops I/O; requests in flight wait for the reconnect
// (xenbus Driver).
func (d *Disk) Disconnect() {
	for _, q := range d.queues {
		q.disconnect()
	}
}

// Remove: the device is gone; waiting callers fail (xenbus Driver).
func (d *Disk) Remove() {
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
