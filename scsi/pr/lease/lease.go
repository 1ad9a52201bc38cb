// Package lease decides when a host may trust its cached copy of a logical
// unit's reservation state that other hosts change too (a shared pr.Store,
// such as etcd), and how long a change that takes an admission away must
// wait before it completes to its guest. It is a pure core: no clock, no
// I/O, no goroutines; the caller passes the time (an instant on its own
// monotonic clock) and carries out what it is told.
//
// The rule (docs/PROTOCOL.md, "Fencing across hosts"): a linearizable read
// (or a successful compare-and-swap) of the shared state, sent at instant
// s, proves that the cache holds every change committed before s, so the
// cache may judge admissions until s+Term. After Term without such a proof
// the host fails closed. A host that commits a change revoking some
// admission (a PREEMPT, a RESERVE, a CLEAR) holds the command's
// completion for Hold after the commit answered: by then every other
// host either has proved its cache fresh after the commit, and so sees the
// change, or has stopped admitting.
package lease

import (
	"fmt"
	"time"
)

// Config is a lease's two durations.
type Config struct {
	// Term is how long a confirmation keeps the cache fresh, counted
	// from the instant the confirming read was sent.
	Term time.Duration
	// Margin covers the difference of two hosts' clock rates and the
	// interval between an admission's clock read and its submission;
	// Hold is Term+Margin.
	Margin time.Duration
}

// DefaultConfig is the lease serve uses unless told otherwise.
var DefaultConfig = Config{Term: 2 * time.Second, Margin: 250 * time.Millisecond}

// Hold is how long a revoking change's completion is held after its
// commit answered.
func (c Config) Hold() time.Duration { return c.Term + c.Margin }

// Lease is one unit's cache freshness on one host. The zero instant is
// the caller's epoch; a Lease that was never confirmed is stale. Not safe
// for concurrent use: its owner serialises calls (the unit's mutex).
type Lease struct {
	cfg     Config
	version uint64        // the cached state's version (0: nothing cached)
	until   time.Duration // fresh at instants strictly before until
	closed  bool          // fail-closed was reported (Check) and not yet lifted
}

// New returns a stale lease with nothing cached.
func New(cfg Config) *Lease { return &Lease{cfg: cfg} }

// Version is the version of the state the cache holds.
func (l *Lease) Version() uint64 { return l.version }

// Observe reports whether a state at version v (from the watch) is newer
// than the cache's; if so the caller installs it. Seeing a change proves
// nothing about what was committed after it: the lease is not extended.
func (l *Lease) Observe(v uint64) bool {
	if v <= l.version {
		return false
	}
	l.version = v
	return true
}

// Confirmed records that a linearizable read sent at instant sent found
// the state at version v: the caller installs the state read when install
// is true (the cache was behind). The cache is then fresh until sent+Term.
// A read that found an older version than the cache holds still proves
// freshness: the cache's newer state was committed too (the watch only
// delivers committed changes).
func (l *Lease) Confirmed(sent time.Duration, v uint64) (install bool) {
	install = l.Observe(v)
	if u := sent + l.cfg.Term; u > l.until {
		l.until = u
	}
	return install
}

// Committed records this host's own compare-and-swap, sent at instant
// sent and answered with version v: it succeeded against the cache's
// version, so the cache was current when it took effect, which proves
// freshness as a read would.
func (l *Lease) Committed(sent time.Duration, v uint64) {
	l.Confirmed(sent, v)
}

// Fresh reports whether the cache may judge an admission at instant now.
func (l *Lease) Fresh(now time.Duration) bool { return now < l.until }

// Until is the instant the lease runs out (0: never confirmed).
func (l *Lease) Until() time.Duration { return l.until }

// HoldUntil is the instant before which a revoking change whose commit
// answered at instant answered may not complete to its guest.
func (l *Lease) HoldUntil(answered time.Duration) time.Duration {
	return answered + l.cfg.Hold()
}

// Transition is what Check reports: a change of the fail-closed state,
// to be logged and counted once.
type Transition int

const (
	Unchanged  Transition = iota
	FailClosed            // the lease ran out: admissions that depend on the reservation are refused
	Recovered             // a confirmation renewed an expired lease
)

func (t Transition) String() string {
	switch t {
	case Unchanged:
		return "unchanged"
	case FailClosed:
		return "fail-closed"
	case Recovered:
		return "recovered"
	}
	return fmt.Sprintf("Transition(%d)", int(t))
}

// Check reports, once per change, whether the lease ran out or came back
// at instant now. Admissions do not need it (Fresh judges them); it is
// for the log and the metrics.
func (l *Lease) Check(now time.Duration) Transition {
	fresh := l.Fresh(now)
	switch {
	case !fresh && !l.closed:
		l.closed = true
		return FailClosed
	case fresh && l.closed:
		l.closed = false
		return Recovered
	}
	return Unchanged
}

// Closed reports whether the last Check found the lease run out.
func (l *Lease) Closed() bool { return l.closed }
