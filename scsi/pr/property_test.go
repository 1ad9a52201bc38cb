package pr

import (
	"encoding/binary"
	"reflect"
	"testing"

	"pgregory.net/rapid"

	"github.com/xenblk/xenblk/scsi"
)

// TestInvariants drives the engine with random PR OUT sequences from three
// nexuses and checks, after every command: at most one reservation and its
// holder is a registrant (for *AR, some registrant exists); no nexus is
// registered twice and no key is zero; the generation never decreases and
// changes only on a GOOD command; a state that claims to be idle (the
// engine's lock-free admission) refuses no nexus any command; the state
// round-trips through the store encoding.
func TestInvariants(t *testing.T) {
	names := []string{"A", "B", "C"}
	types := []Type{1, 3, 5, 6, 7, 8}
	rapid.Check(t, func(rt *rapid.T) {
		var s State
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			n := nexuses[rapid.SampledFrom(names).Draw(rt, "nexus")]
			sa := OutAction(rapid.IntRange(0, 7).Draw(rt, "sa"))
			typ := rapid.SampledFrom(types).Draw(rt, "type")
			key := rapid.Uint64Range(0, 3).Draw(rt, "key")
			saKey := rapid.Uint64Range(0, 3).Draw(rt, "saKey")
			aptpl := rapid.Bool().Draw(rt, "aptpl")
			cdb, param := prOut(sa, typ, key, saKey, aptpl)
			var dest scsi.Nexus
			typeBefore := s.Type
			if sa == OutRegisterAndMove {
				// A well-formed move to a random nexus (possibly the
				// caller), with or without UNREG; mostly from the holder
				// with its key, so that moves succeed often enough.
				if s.Reserved && rapid.IntRange(0, 3).Draw(rt, "fromHolder") > 0 {
					n = s.Holder
					if i := s.find(n); i >= 0 {
						binary.BigEndian.PutUint64(param, s.Registrations[i].Key)
					}
				}
				dest = nexuses[rapid.SampledFrom(names).Draw(rt, "dest")]
				param[17], param[20] = 0, 0
				if aptpl {
					param[17] |= 1
				}
				if rapid.Bool().Draw(rt, "unreg") {
					param[17] |= 2
				}
				param[19] = RelativeTargetPort
				tid := TransportID(dest)
				param[23] = byte(len(tid))
				param = append(param, tid...)
				cdb[8] = byte(len(param))
			}
			before := s.Generation
			out := s.Out(n, cdb, param)
			if s.Generation < before {
				rt.Fatalf("generation went back %d -> %d", before, s.Generation)
			}
			if out.Status != scsi.StatusGood && s.Generation != before {
				rt.Fatalf("failed command (status %#x) bumped the generation", out.Status)
			}
			if sa == OutRegisterAndMove && out.Status == scsi.StatusGood {
				if !s.Reserved || s.Holder != dest || s.Type != typeBefore {
					rt.Fatalf("after a move to %+v: reserved=%v holder=%+v type %d (was %d)", dest, s.Reserved, s.Holder, s.Type, typeBefore)
				}
				if j := s.find(dest); j < 0 || s.Registrations[j].Key != saKey {
					rt.Fatalf("destination not registered with %#x: %+v", saKey, s.Registrations)
				}
			}
			if (sa == OutReserve || sa == OutRelease) && s.Generation != before {
				rt.Fatalf("RESERVE/RELEASE bumped the generation")
			}
			seen := map[string]bool{}
			for _, r := range s.Registrations {
				if r.Key == 0 {
					rt.Fatalf("registration with key 0: %+v", r)
				}
				if seen[nexusKey(r.Nexus)] {
					rt.Fatalf("nexus registered twice: %+v", s.Registrations)
				}
				seen[nexusKey(r.Nexus)] = true
			}
			if s.Reserved {
				if !s.Type.Valid() {
					rt.Fatalf("reserved with invalid type %d", s.Type)
				}
				if len(s.Registrations) == 0 {
					rt.Fatalf("reservation without registrants")
				}
				if !s.Type.allRegistrants() && s.find(s.Holder) < 0 {
					rt.Fatalf("holder %+v is not a registrant", s.Holder)
				}
			}
			if s.idle() {
				if n, op, ok := refusedWhileIdle(&s); ok {
					rt.Fatalf("idle state refuses %+v opcode %#02x: %+v", n, op, s)
				}
			}
			b, err := Encode(s)
			if err != nil {
				rt.Fatal(err)
			}
			back, err := Decode(b)
			if err != nil {
				rt.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(back), normalize(s)) {
				rt.Fatalf("round trip:\n%+v\n%+v", s, back)
			}
		}
	})
}

// normalize makes empty and nil collections compare equal.
func normalize(s State) State {
	if len(s.Registrations) == 0 {
		s.Registrations = nil
	}
	if len(s.Attentions) == 0 {
		s.Attentions = nil
	}
	return s
}

// refusedWhileIdle looks for a nexus and an opcode s refuses.
func refusedWhileIdle(s *State) (scsi.Nexus, byte, bool) {
	var cdb [16]byte
	for _, n := range nexuses {
		for op := range 256 {
			cdb[0] = byte(op)
			if s.Conflict(n, cdb[:]) {
				return n, byte(op), true
			}
		}
	}
	return scsi.Nexus{}, 0, false
}

// TestIdleIsNothingHeldNothingPending: a state is idle exactly when no
// reservation (persistent or SPC-2) is held and no unit attention is
// pending; registrations alone leave it idle, and an idle state refuses
// nothing.
func TestIdleIsNothingHeldNothingPending(t *testing.T) {
	a, b := nexuses["A"], nexuses["B"]
	regs := []Registration{{Nexus: a, Key: 1}, {Nexus: b, Key: 2}}
	for _, c := range []struct {
		name string
		s    State
		idle bool
	}{
		{"empty", State{}, true},
		{"registrations only", State{Registrations: regs}, true},
		{"an attention consumed", State{Attentions: map[string][]scsi.Code{}}, true},
		{"persistent reservation", State{Registrations: regs, Reserved: true, Type: TypeWriteExclusive, Holder: a}, false},
		{"SPC-2 reservation", State{Legacy: &a}, false},
		{"attention pending", State{Attentions: map[string][]scsi.Code{nexusKey(b): {scsi.RegistrationsPreempted}}}, false},
	} {
		if got := c.s.idle(); got != c.idle {
			t.Errorf("%s: idle %v, want %v", c.name, got, c.idle)
		}
		if n, op, ok := refusedWhileIdle(&c.s); c.idle && ok {
			t.Errorf("%s: idle, yet refuses %+v opcode %#02x", c.name, n, op)
		}
	}
}
