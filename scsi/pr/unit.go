package pr

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr/lease"
)

// ErrVersionConflict: the stored state changed since it was loaded.
var ErrVersionConflict = errors.New("pr: stored state changed (version conflict)")

// ErrUnavailable (wrapped): a shared store did not answer within its
// deadline. A CompareAndSwap that fails so may still have stored its
// data; the next CompareAndSwap from the old version then conflicts.
var ErrUnavailable = errors.New("pr: reservation store unavailable")

// Store keeps one logical unit's encoded state under a version. It is the
// only persistence the engine sees, so a store shared between hosts (etcd)
// can replace the file store without touching the engine.
type Store interface {
	// Load returns the encoded state and its version; (nil, 0, nil) when
	// nothing is stored yet.
	Load(lu string) ([]byte, uint64, error)
	// CompareAndSwap stores data if the current version is old, durably
	// before it returns, and returns the new version.
	CompareAndSwap(lu string, old uint64, data []byte) (uint64, error)
}

// Change is a unit's state as some client of a shared store stored it.
// A Version of 0 with a zero State: the unit's key was deleted.
type Change struct {
	LU      string
	State   State
	Version uint64
}

// SharedStore is a Store several hosts use at once (etcd). A unit opened
// on it is not powered on (its state is live on the other hosts), and
// PERSISTENT RESERVE IN reads the stored state, not this host's copy.
type SharedStore interface {
	Store
	// Watch calls fn, from one goroutine and in version order, with
	// every change to any unit made through any client of the store
	// after version from (0: from now), until ctx ends; it returns
	// ctx's error, or an error that says why it cannot watch at all.
	// A unit's versions only grow; when the store has forgotten old
	// changes (compaction) fn gets each unit's latest state instead.
	Watch(ctx context.Context, from uint64, fn func(Change)) error
}

// stateVersion tags the encoding so a later layout can read old state.
const stateVersion = 1

type encoded struct {
	V     int
	State State
}

// Encode serialises a state.
func Encode(s State) ([]byte, error) { return json.Marshal(encoded{V: stateVersion, State: s}) }

// Decode reads a serialised state, refusing what it does not understand.
func Decode(b []byte) (State, error) {
	var e encoded
	if err := json.Unmarshal(b, &e); err != nil {
		return State{}, fmt.Errorf("pr: stored state: %w", err)
	}
	if e.V != stateVersion {
		return State{}, fmt.Errorf("pr: stored state version %d; this build reads %d", e.V, stateVersion)
	}
	for _, r := range e.State.Registrations {
		if r.Key == 0 {
			return State{}, errors.New("pr: stored state has a zero key")
		}
	}
	return e.State, nil
}

// Unit is one logical unit's reservations: the state machine, its store,
// and the scsi.Reservations hook the SCSI engines call. Safe for
// concurrent use; every nexus of every guest sharing the disk goes
// through the same Unit.
type Unit struct {
	mu      sync.Mutex
	lu      string
	store   Store
	shared  bool // other hosts change the stored state too (OpenShared)
	state   State
	version uint64
	log     *slog.Logger
	stats   unitStats
	// lease judges the copy of a shared unit (nil otherwise); its
	// instants count from epoch on the monotonic clock. Guarded by mu.
	lease *lease.Lease
	epoch time.Time
	// idle: the unit is local (not shared), nothing is reserved
	// (persistently or SPC-2) and no unit attention is pending, so every
	// command is admitted and none has an attention to report: Conflict
	// and UnitAttention answer from it without the lock. It is stored
	// under mu after every change of state (settle), before the command
	// that made the change completes, so a command that starts after a
	// reservation or an attention was established sees it false and
	// takes the lock. A shared unit is never idle: its state also
	// changes under it from other hosts, and its lease must be judged.
	idle atomic.Bool
}

// unitStats are Stats' counters, atomics so that metrics read them
// without the unit's lock.
type unitStats struct {
	in, out, conflicts, failures atomic.Uint64
	failClosed                   atomic.Bool
}

// Stats are a unit's reservation counters, for metrics.
type Stats struct {
	// In and Out count PERSISTENT RESERVE IN and the commands that change
	// state (PR OUT, RESERVE, RELEASE, logical unit resets), whatever
	// their status.
	In, Out uint64
	// Conflicts counts compare-and-swaps that found the stored state
	// changed by another client, each followed by a reload and a retry.
	Conflicts uint64
	// Failures counts commands refused because the store failed or did
	// not answer in time.
	Failures uint64
	// FailClosed: admissions that depend on the reservation are being
	// refused because this host's view of a shared store has expired
	// (Refresh sets it, as it logs the transitions).
	FailClosed bool
}

// Stats returns the unit's counters.
func (u *Unit) Stats() Stats {
	s := &u.stats
	return Stats{In: s.in.Load(), Out: s.out.Load(), Conflicts: s.conflicts.Load(), Failures: s.failures.Load(), FailClosed: s.failClosed.Load()}
}

// SetFailClosed records whether the unit fails closed (Stats.FailClosed).
func (u *Unit) SetFailClosed(on bool) { u.stats.failClosed.Store(on) }

// LU is the unit's identity, its name in the store.
func (u *Unit) LU() string { return u.lu }

// Open loads a unit's state as a power on finds it (State.PowerOn): the
// registrations and the reservation survive only if the last registration
// asked for APTPL (SPC-4 5.9.4), PRgeneration is zero, pending unit
// attentions and SPC-2 reservations are gone. The stored state is not
// rewritten; the next change stores the powered-on state under the
// version loaded here. A SharedStore's unit is opened with OpenShared
// and lease.DefaultConfig.
func Open(store Store, lu string, log *slog.Logger) (*Unit, error) {
	if _, shared := store.(SharedStore); shared {
		return OpenShared(store, lu, log, lease.DefaultConfig)
	}
	if log == nil {
		log = slog.Default()
	}
	u := &Unit{lu: lu, store: store, log: log}
	b, v, err := store.Load(lu)
	if err != nil {
		return nil, err
	}
	u.version = v
	if b != nil {
		s, err := Decode(b)
		if err != nil {
			return nil, err
		}
		u.state = s.PowerOn()
	}
	u.settle()
	return u, nil
}

// settle records whether the unit is idle after a change of its state;
// u.mu held.
func (u *Unit) settle() { u.idle.Store(!u.shared && u.lease == nil && u.state.idle()) }

// State returns a copy of the current state (for tools and tests).
func (u *Unit) State() State {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state.Clone()
}

// Conflict implements scsi.Reservations. On a shared store whose lease
// ran out, every command the reservation could refuse is refused: the
// copy can no longer say which nexus is fenced (fail closed).
func (u *Unit) Conflict(n scsi.Nexus, cdb []byte) bool {
	if u.idle.Load() {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.lease != nil && !u.lease.Fresh(u.now()) && len(cdb) > 0 && classify(cdb) != alwaysAllowed {
		return true
	}
	return u.state.Conflict(n, cdb)
}

// UnitAttention implements scsi.Reservations. On a shared store the
// attentions are part of the stored state (another host's PREEMPT queues
// them for this host's nexus), so taking one is a change stored like any
// other: it is then gone on every host, also for a guest that moves.
func (u *Unit) UnitAttention(n scsi.Nexus) (scsi.Code, bool) {
	if u.idle.Load() {
		return scsi.Code{}, false
	}
	u.mu.Lock()
	if !u.shared {
		defer u.mu.Unlock()
		c, ok := u.state.takeAttention(n)
		if ok {
			u.settle()
		}
		return c, ok
	}
	pending := u.state.hasAttention(n)
	u.mu.Unlock()
	if !pending {
		return scsi.Code{}, false
	}
	return u.takeSharedAttention(n)
}

// Execute implements scsi.Reservations.
func (u *Unit) Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result, descriptor bool) {
	res.Reset(len(cmd.Data))
	var out Outcome
	var hold time.Duration // a revoking change completes at this instant (shared store)
	cdb := cmd.CDB
	switch {
	case cdb[0] == scsi.OpPersistentReserveIn && len(cdb) >= 10:
		u.stats.in.Add(1)
		u.mu.Lock()
		if err := u.refresh(); err != nil {
			out = u.storeFailed(err)
		} else {
			out = u.state.In(n, cdb)
		}
		u.mu.Unlock()
		if out.Status == scsi.StatusGood {
			alloc := int(binary.BigEndian.Uint16(cdb[7:9]))
			m := copy(cmd.Data[:min(alloc, len(cmd.Data))], out.Data)
			res.Resid = len(cmd.Data) - m
			return
		}
	case cdb[0] == scsi.OpPersistentReserveOut && len(cdb) >= 10:
		u.stats.out.Add(1)
		plen := int(binary.BigEndian.Uint32(cdb[5:9]))
		if plen > len(cmd.Data) {
			out = check(scsi.ParamListLengthError)
			break
		}
		param := make([]byte, plen) // copied once: the guest may rewrite its buffer
		copy(param, cmd.Data)
		out, hold = u.apply(func(s *State) Outcome { return s.Out(n, cdb, param) })
		res.Resid = len(cmd.Data) - plen
	case cdb[0] == scsi.OpReserve6 || cdb[0] == scsi.OpReserve10:
		u.stats.out.Add(1)
		out, hold = u.apply(func(s *State) Outcome { return s.Legacy6or10(n, true) })
	case cdb[0] == scsi.OpRelease6 || cdb[0] == scsi.OpRelease10:
		u.stats.out.Add(1)
		out, hold = u.apply(func(s *State) Outcome { return s.Legacy6or10(n, false) })
	default:
		out = check(scsi.InvalidOpcode)
	}
	u.holdUntil(hold)
	switch out.Status {
	case scsi.StatusGood:
	case scsi.StatusCheckCondition:
		res.SetCheck(scsi.Sense{Code: out.Sense}, descriptor)
	default:
		res.SetStatus(out.Status)
	}
}

// LogicalUnitReset implements scsi.LogicalUnitResetter: a logical unit
// reset ends an SPC-2 reservation (the change stored as any other);
// persistent reservations and registrations stay (SPC-4 5.13).
func (u *Unit) LogicalUnitReset(scsi.Nexus) {
	u.mu.Lock()
	held := u.state.Legacy != nil
	u.mu.Unlock()
	if held {
		u.stats.out.Add(1)
		_, hold := u.apply(func(s *State) Outcome {
			s.Legacy = nil
			return good
		})
		u.holdUntil(hold)
	}
}

// apply runs fn on a copy of the state and, if it succeeded, stores the
// copy before making it current: a command is acknowledged only once its
// effect is durable. A version conflict (a shared store updated
// elsewhere) reloads and retries, and so does a refusal decided on a copy
// a shared store has moved past: every outcome is one of the stored
// state, which makes PR commands linearizable across hosts. On a shared
// store, a stored change that revokes an admission (Revokes) returns the
// instant before which the command may not complete
// (lease.Lease.HoldUntil); 0 otherwise.
func (u *Unit) apply(fn func(*State) Outcome) (Outcome, time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for attempt := 0; attempt < 5; attempt++ {
		next := u.state.Clone()
		out := fn(&next)
		if out.Status != scsi.StatusGood {
			// Refused on this host's copy: with a shared store the copy
			// may be stale, and a refusal must hold on the stored state.
			v := u.version
			if err := u.refresh(); err != nil {
				return u.storeFailed(err), 0
			}
			if u.version != v {
				continue
			}
			return out, 0
		}
		b, err := Encode(next)
		if err != nil {
			return check(scsi.InternalTargetFailure), 0
		}
		sent := u.now()
		v, err := u.store.CompareAndSwap(u.lu, u.version, b)
		if errors.Is(err, ErrVersionConflict) {
			u.stats.conflicts.Add(1)
			if err := u.reload(); err != nil {
				return u.storeFailed(err), 0
			}
			continue
		}
		if err != nil {
			return u.storeFailed(err), 0
		}
		prev := u.state
		u.state, u.version = next, v
		u.settle()
		if u.lease == nil {
			return out, 0
		}
		u.lease.Committed(sent, v)
		if Revokes(&prev, &next) {
			return out, u.lease.HoldUntil(u.now())
		}
		return out, 0
	}
	u.stats.failures.Add(1)
	u.log.Error("reservation state kept changing under this command; command refused", "lu", u.lu)
	return check(scsi.InternalTargetFailure), 0
}

// reload makes the stored state current (decoding it only when its
// version moved). On a shared store the read renews the lease, and a
// copy the watch has already moved past is kept. Called with u.mu held.
func (u *Unit) reload() error {
	sent := u.now()
	b, v, err := u.store.Load(u.lu)
	if err != nil {
		return err
	}
	return u.install(sent, b, v)
}

// install takes what a read sent at instant sent found: the encoded
// state b at version v. It becomes the copy if its version moved (on a
// shared store: if it is newer than the copy, which the watch may have
// moved past it), and on a shared store the read renews the lease. A
// state that does not decode changes nothing. Called with u.mu held.
func (u *Unit) install(sent time.Duration, b []byte, v uint64) error {
	newer := v != u.version
	if u.lease != nil {
		newer = v > u.lease.Version()
	}
	s := State{}
	if newer && b != nil {
		var err error
		if s, err = Decode(b); err != nil {
			return err
		}
	}
	if u.lease != nil {
		u.lease.Confirmed(sent, v)
	}
	if newer {
		u.state, u.version = s, v
		u.settle()
	}
	return nil
}

// refresh reloads the state from a shared store, so that a PERSISTENT
// RESERVE IN answers what every host sees. Called with u.mu held.
func (u *Unit) refresh() error {
	if !u.shared {
		return nil
	}
	return u.reload()
}

// storeFailed is the status of a command the store could not serve: a
// shared store out of reach is a communication failure the guest may
// retry, anything else an internal failure.
func (u *Unit) storeFailed(err error) Outcome {
	u.stats.failures.Add(1)
	u.log.Error("cannot load or store reservation state; command refused", "lu", u.lu, "err", err)
	if errors.Is(err, ErrUnavailable) {
		return check(scsi.LogicalUnitCommunicationFailure)
	}
	return check(scsi.InternalTargetFailure)
}
