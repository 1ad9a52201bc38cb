package pr

import (
	"log/slog"
	"time"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr/lease"
)

// OpenShared opens a unit whose store other hosts change too (etcd; its
// Load and CompareAndSwap must be linearizable). Unlike Open it does not
// power the state on: the logical unit lives on while any host serves
// it, so the registrations of guests on other hosts stay. The copy it
// keeps judges admissions while its lease (cfg) is fresh; the owner keeps
// it so with Follow and feeds it the store's watch with Observe.
func OpenShared(store Store, lu string, log *slog.Logger, cfg lease.Config) (*Unit, error) {
	if log == nil {
		log = slog.Default()
	}
	u := &Unit{lu: lu, store: store, shared: true, log: log, lease: lease.New(cfg), epoch: time.Now()}
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := u.reload(); err != nil {
		return nil, err
	}
	u.lease.Check(u.now())
	return u, nil
}

// now is the instant on the unit's monotonic clock. Reading it allocates
// nothing (the admission path reads it).
func (u *Unit) now() time.Duration { return time.Since(u.epoch) }

// Observe installs a state the shared store's watch delivered (a Change
// of this unit), if it is newer than the copy's. It does not renew the
// lease.
func (u *Unit) Observe(c Change) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.lease == nil || !u.lease.Observe(c.Version) {
		return
	}
	u.state, u.version = c.State.Clone(), c.Version
}

// Refresh reads the shared state linearizably, installs it if the copy
// was behind and renews the lease from the instant the read was sent. It
// logs the lease running out (the unit then fails closed) and coming
// back, once each. The read is made without the unit's lock: admissions
// are not held up by a store that is slow to answer.
func (u *Unit) Refresh() error {
	if u.lease == nil { // set at open, never changed
		return nil
	}
	sent := u.now()
	b, v, err := u.store.Load(u.lu)
	u.mu.Lock()
	defer u.mu.Unlock()
	if err == nil {
		err = u.install(sent, b, v)
	}
	switch u.lease.Check(u.now()) {
	case lease.FailClosed:
		u.SetFailClosed(true)
		u.log.Error("reservation store unconfirmed for a whole lease: refusing reads and writes that depend on the reservation",
			"lu", u.lu, "lease", u.lease.Until(), "err", err)
	case lease.Recovered:
		u.SetFailClosed(false)
		u.log.Info("reservation store confirmed again: admissions judged by the reservation", "lu", u.lu, "version", u.version)
	}
	return err
}

// Follow keeps a shared unit's lease fresh until stop is closed: a
// Refresh every quarter term, so that one or two lost reads do not fail
// the unit closed. It returns at once for a unit that is not shared.
func (u *Unit) Follow(stop <-chan struct{}, term time.Duration) {
	if u.lease == nil {
		return
	}
	t := time.NewTicker(max(term/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			_ = u.Refresh()
		}
	}
}

// holdUntil returns at the unit's instant t: a revoking change completes
// to its guest only once every other host has seen it or stopped
// admitting (lease.Lease.HoldUntil). The wait ends: t is at most one
// hold past the commit.
func (u *Unit) holdUntil(t time.Duration) {
	if d := t - u.now(); t > 0 && d > 0 {
		time.Sleep(d)
	}
}

// takeSharedAttention pops n's oldest unit attention from the shared
// state with a stored change. When the store does not answer, the
// attention is reported all the same and stays stored: a nexus may then
// see it twice, never not at all.
func (u *Unit) takeSharedAttention(n scsi.Nexus) (scsi.Code, bool) {
	var c scsi.Code
	var ok bool
	out, hold := u.apply(func(s *State) Outcome {
		if c, ok = s.takeAttention(n); !ok {
			return conflict // nothing to store
		}
		return good
	})
	u.holdUntil(hold)
	if out.Status != scsi.StatusGood && ok {
		u.log.Warn("unit attention reported but not stored as taken; it may be reported again", "lu", u.lu, "nexus", TransportName(n))
	}
	return c, ok
}

// hasAttention reports whether n has a unit attention pending, without
// allocating (the per-command path).
func (s *State) hasAttention(n scsi.Nexus) bool {
	if len(s.Attentions) == 0 {
		return false
	}
	var buf [64]byte
	return len(s.Attentions[string(appendNexusKey(buf[:0], n))]) > 0
}
