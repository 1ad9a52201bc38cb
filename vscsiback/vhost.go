package vscsiback

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// Config is one connected vhost: its ring and event channel, as the
// frontend published them, and what the backend offered.
type Config struct {
	// Domain is the backend's own domain.
	Domain xen.Domain
	// Front is the frontend's domain: the initiator of the vhost's nexus.
	Front xen.DomID
	// Vhost names the target port of the nexus (the vhost's backend
	// directory): reservations and unit attentions are kept per
	// (Front, Vhost), so two vhosts on one disk are two nexuses.
	Vhost string
	// RingRef and Port are the frontend's ring-ref (one page) and
	// event-channel.
	RingRef xen.GrantRef
	Port    xen.Port
	ABI     blkif.ABI
	// SGGrant is the feature-sg-grant the backend wrote: the most data
	// segments of an SG_GRANT request (bounded by maxSGGrant); 0 when
	// not offered.
	SGGrant int
	// Poll bounds the adaptive busy-poll of the ring after work, as
	// blkback's Config.Poll: 0 the default window, negative never.
	Poll time.Duration
	// Concurrency bounds the commands of one pass over the ring that run
	// at once (crew.go): 0 the ring's size, 1 one at a time in ring order.
	Concurrency int
	// CrewAfter is how long the vhost's commands must take, on average,
	// for its passes to run them at once (crew.go): 0 the default,
	// negative always.
	CrewAfter time.Duration
	Log       *slog.Logger

	// stats, when set, are counters kept across the vhost's connections
	// (its Server's); otherwise the Vhost counts on its own.
	stats *counters
}

// LUN is one logical unit attached to a vhost: the guest's address of it
// (v-dev's channel, target and lun; the host number is the vhost's) and
// the engine that serves it (scsiengine.Registry.Open's).
type LUN struct {
	Channel, Target, LUN uint16
	Engine               scsiengine.Engine
	// Nexus, when its Initiator is set (the LUN's initiator key), is the
	// nexus the LUN's commands run as instead of the vhost's: the same
	// on every host the guest runs on.
	Nexus scsi.Nexus
}

// ErrClosed is Run's answer once Close has been called.
var ErrClosed = errors.New("vscsiback: vhost closed")

// Vhost serves one vscsiif ring: one goroutine (Run) consumes requests,
// carries each out on the addressed LUN's engine and answers it. The LUN
// table is the vhost's xenstore machine's to change (SetLUNs) while Run
// serves.
type Vhost struct {
	cfg     Config
	q       *queue
	ringMap xen.Mapping
	luns    atomic.Pointer[[]LUN]

	mu      sync.Mutex
	closed  bool
	running bool
	done    chan struct{}
	once    sync.Once
}

// Connect maps the vhost's ring and binds its event channel. The vhost
// has no LUN until SetLUNs.
func Connect(cfg Config) (*Vhost, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.SGGrant > maxSGGrant {
		cfg.SGGrant = maxSGGrant
	}
	m, err := cfg.Domain.Mapper().Map(cfg.Front, []xen.GrantRef{cfg.RingRef}, false)
	if err != nil {
		return nil, fmt.Errorf("vscsiback: map ring-ref %d of domain %d: %w", cfg.RingRef, cfg.Front, err)
	}
	r, err := ring.AttachBack(m.Bytes(), vscsiif.SlotSize(cfg.ABI))
	if err != nil {
		_ = m.Unmap()
		return nil, fmt.Errorf("vscsiback: %w", err)
	}
	ch, err := cfg.Domain.Events().BindInterdomain(cfg.Front, cfg.Port)
	if err != nil {
		_ = m.Unmap()
		return nil, fmt.Errorf("vscsiback: bind event channel %d of domain %d: %w", cfg.Port, cfg.Front, err)
	}
	v := &Vhost{cfg: cfg, ringMap: m, done: make(chan struct{})}
	v.luns.Store(&[]LUN{})
	v.q = newQueue(v, r, ch)
	return v, nil
}

// SetLUNs replaces the vhost's LUN table. A pass over the ring already
// under way finishes with the table it started with; SetLUNs returns
// once it has, so a LUN removed gets no command after SetLUNs returns
// and its engine may be closed. luns is the Vhost's from now on.
func (v *Vhost) SetLUNs(luns []LUN) {
	v.luns.Store(&luns)
	// Taking the pass lock waits for the pass under way, if any; the
	// next one loads the new table.
	v.q.pass.Lock()
	v.q.pass.Unlock()
}

// Nexus is the I_T nexus this vhost's commands run as.
func (v *Vhost) Nexus() scsi.Nexus { return v.q.nexus }

// Run serves the ring until Close (it then returns nil), the event
// channel fails, or the frontend breaks the ring itself (a req_prod
// beyond what the ring holds), which stops only this vhost. A bad
// request is answered and logged and never ends Run.
func (v *Vhost) Run() error {
	v.mu.Lock()
	if v.closed || v.running {
		v.mu.Unlock()
		return ErrClosed
	}
	v.running = true
	v.mu.Unlock()
	defer close(v.done)
	err := v.q.run()
	v.mu.Lock()
	closed := v.closed
	v.mu.Unlock()
	if closed {
		return nil
	}
	return err
}

// Close stops Run (waiting for it to return), unbinds the event channel
// and unmaps the ring. Safe to call more than once.
func (v *Vhost) Close() error {
	v.once.Do(func() {
		v.mu.Lock()
		v.closed = true
		running := v.running
		v.mu.Unlock()
		_ = v.q.ch.Close() // wakes Run asleep in Wait
		if running {
			<-v.done
		}
		v.q.close()
		_ = v.ringMap.Unmap()
	})
	return nil
}
