package pr

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/xenblk/xenblk/scsi"
)

// ErrVersionConflict: the stored state changed since it was loaded.
var ErrVersionConflict = errors.New("pr: stored state changed (version conflict)")

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
	state   State
	version uint64
	log     *slog.Logger
}

// Open loads a unit's state as a power on finds it (State.PowerOn): the
// registrations and the reservation survive only if the last registration
// asked for APTPL (SPC-4 5.9.4), PRgeneration is zero, pending unit
// attentions and SPC-2 reservations are gone. The stored state is not
// rewritten; the next change stores the powered-on state under the
// version loaded here.
func Open(store Store, lu string, log *slog.Logger) (*Unit, error) {
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
	return u, nil
}

// State returns a copy of the current state (for tools and tests).
func (u *Unit) State() State {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state.Clone()
}

// Conflict implements scsi.Reservations.
func (u *Unit) Conflict(n scsi.Nexus, cdb []byte) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state.Conflict(n, cdb)
}

// UnitAttention implements scsi.Reservations.
func (u *Unit) UnitAttention(n scsi.Nexus) (scsi.Code, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state.takeAttention(n)
}

// Execute implements scsi.Reservations.
func (u *Unit) Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result, descriptor bool) {
	res.Reset(len(cmd.Data))
	var out Outcome
	cdb := cmd.CDB
	switch {
	case cdb[0] == scsi.OpPersistentReserveIn && len(cdb) >= 10:
		u.mu.Lock()
		out = u.state.In(n, cdb)
		u.mu.Unlock()
		if out.Status == scsi.StatusGood {
			alloc := int(binary.BigEndian.Uint16(cdb[7:9]))
			m := copy(cmd.Data[:min(alloc, len(cmd.Data))], out.Data)
			res.Resid = len(cmd.Data) - m
			return
		}
	case cdb[0] == scsi.OpPersistentReserveOut && len(cdb) >= 10:
		plen := int(binary.BigEndian.Uint32(cdb[5:9]))
		if plen > len(cmd.Data) {
			out = check(scsi.ParamListLengthError)
			break
		}
		param := make([]byte, plen) // copied once: the guest may rewrite its buffer
		copy(param, cmd.Data)
		out = u.apply(func(s *State) Outcome { return s.Out(n, cdb, param) })
		res.Resid = len(cmd.Data) - plen
	case cdb[0] == scsi.OpReserve6 || cdb[0] == scsi.OpReserve10:
		out = u.apply(func(s *State) Outcome { return s.Legacy6or10(n, true) })
	case cdb[0] == scsi.OpRelease6 || cdb[0] == scsi.OpRelease10:
		out = u.apply(func(s *State) Outcome { return s.Legacy6or10(n, false) })
	default:
		out = check(scsi.InvalidOpcode)
	}
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
		u.apply(func(s *State) Outcome {
			s.Legacy = nil
			return good
		})
	}
}

// apply runs fn on a copy of the state and, if it succeeded and changed
// something, stores the copy before making it current: a command is
// acknowledged only once its effect is durable. A version conflict (a
// shared store updated elsewhere) reloads and retries.
func (u *Unit) apply(fn func(*State) Outcome) Outcome {
	u.mu.Lock()
	defer u.mu.Unlock()
	for attempt := 0; attempt < 5; attempt++ {
		next := u.state.Clone()
		out := fn(&next)
		if out.Status != scsi.StatusGood {
			return out
		}
		b, err := Encode(next)
		if err != nil {
			return check(scsi.InternalTargetFailure)
		}
		v, err := u.store.CompareAndSwap(u.lu, u.version, b)
		if errors.Is(err, ErrVersionConflict) {
			if b, v, err := u.store.Load(u.lu); err == nil && b != nil {
				if s, err := Decode(b); err == nil {
					u.state, u.version = s, v
					continue
				}
			}
			return check(scsi.InternalTargetFailure)
		}
		if err != nil {
			u.log.Error("cannot store reservation state; command refused", "lu", u.lu, "err", err)
			return check(scsi.InternalTargetFailure)
		}
		u.state, u.version = next, v
		return out
	}
	return check(scsi.InternalTargetFailure)
}
