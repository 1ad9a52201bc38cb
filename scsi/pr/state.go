// Package pr is SPC-4 persistent reservations as a pure state machine:
// (State, nexus, command) -> (State, response), no I/O, no clock. Unit
// wraps it with a Store (versioned compare-and-swap) so the state survives
// restarts when APTPL asks, and can later be shared between hosts without
// touching the engine. The I_T nexus is (frontend domain, device): two
// guests given the same disk see each other's registrations.
package pr

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/xenblk/xenblk/scsi"
)

// Registration is one I_T nexus's key.
type Registration struct {
	Nexus scsi.Nexus
	Key   uint64
}

// State is everything a logical unit remembers about reservations. It is
// a value: the engine works on a copy and the caller keeps or drops it.
type State struct {
	Generation    uint32
	Registrations []Registration
	// Reserved: a persistent reservation exists, of Type, held by Holder
	// (for the all-registrants types every registrant holds it).
	Reserved bool
	Type     Type
	Holder   scsi.Nexus
	APTPL    bool
	// Legacy is the SPC-2 RESERVE(6/10) holder, if any.
	Legacy *scsi.Nexus `json:",omitempty"`
	// Attentions are pending unit attentions per nexus, oldest first.
	Attentions map[string][]scsi.Code `json:",omitempty"`
}

func nexusKey(n scsi.Nexus) string { return string(appendNexusKey(nil, n)) }

// appendNexusKey appends nexusKey(n) ("DOM/DEVICE", or "=INITIATOR/DEVICE"
// for a named initiator) to b: a lookup with it in a stack buffer
// allocates nothing (the per-command path).
func appendNexusKey(b []byte, n scsi.Nexus) []byte {
	if n.Initiator != "" {
		b = append(b, '=')
		b = append(b, n.Initiator...)
		b = append(b, '/')
		return append(b, n.Device...)
	}
	b = strconv.AppendUint(b, uint64(n.Dom), 10)
	b = append(b, '/')
	return append(b, n.Device...)
}

// Clone returns a deep copy.
func (s *State) Clone() State {
	c := *s
	c.Registrations = slices.Clone(s.Registrations)
	if s.Legacy != nil {
		l := *s.Legacy
		c.Legacy = &l
	}
	if s.Attentions != nil {
		c.Attentions = make(map[string][]scsi.Code, len(s.Attentions))
		for k, v := range s.Attentions {
			c.Attentions[k] = slices.Clone(v)
		}
	}
	return c
}

func (s *State) find(n scsi.Nexus) int {
	for i, r := range s.Registrations {
		if r.Nexus == n {
			return i
		}
	}
	return -1
}

// PowerOn is the state a logical unit comes up with after a power on
// (a backend started on a stored state). With APTPL the registrations,
// the reservation and APTPL survive (SPC-4 5.14.3), otherwise nothing
// does. PRgeneration restarts at zero either way: SPC-4 (READ KEYS) has it
// "set to zero by a power on"; the store's compare-and-swap version is
// separate and keeps counting. Unit attentions and SPC-2 reservations
// never survive (the SCSI engine raises POWER ON itself).
func (s *State) PowerOn() State {
	if !s.APTPL {
		return State{}
	}
	return State{Registrations: slices.Clone(s.Registrations), Reserved: s.Reserved, Type: s.Type, Holder: s.Holder, APTPL: true}
}

// isHolder: n holds the persistent reservation.
func (s *State) isHolder(n scsi.Nexus) bool {
	if !s.Reserved {
		return false
	}
	if s.Type.allRegistrants() {
		return s.find(n) >= 0
	}
	return s.Holder == n
}

func (s *State) attention(n scsi.Nexus, c scsi.Code) {
	if s.Attentions == nil {
		s.Attentions = map[string][]scsi.Code{}
	}
	k := nexusKey(n)
	if q := s.Attentions[k]; len(q) < 8 {
		s.Attentions[k] = append(q, c)
	}
}

// takeAttention pops n's oldest unit attention.
//
// Every command asks, so the common answer (none for n) allocates nothing.
func (s *State) takeAttention(n scsi.Nexus) (scsi.Code, bool) {
	if len(s.Attentions) == 0 {
		return scsi.Code{}, false
	}
	var buf [64]byte
	kb := appendNexusKey(buf[:0], n)
	q := s.Attentions[string(kb)] // a map index by string(bytes) does not allocate
	if len(q) == 0 {
		return scsi.Code{}, false
	}
	k := string(kb)
	c := q[0]
	if len(q) == 1 {
		delete(s.Attentions, k)
	} else {
		s.Attentions[k] = q[1:]
	}
	return c, true
}

// removeRegistration drops registration i; a non-all-registrants
// reservation held through it goes too (SPC-4 5.9.11), and for the
// all-registrants types the reservation goes with the last registrant.
func (s *State) removeRegistration(i int) {
	n := s.Registrations[i].Nexus
	s.Registrations = slices.Delete(s.Registrations, i, i+1)
	if !s.Reserved {
		return
	}
	if s.Type.allRegistrants() {
		if len(s.Registrations) == 0 {
			s.Reserved = false
		}
		return
	}
	if s.Holder == n {
		s.Reserved = false
		if s.Type.registrantsOnly() {
			for _, r := range s.Registrations {
				s.attention(r.Nexus, scsi.ReservationsReleased)
			}
		}
	}
}

// Outcome is a command's result as the engine decides it.
type Outcome struct {
	Status byte
	Sense  scsi.Code // when Status is CHECK CONDITION
	Data   []byte    // PR IN parameter data (before allocation-length truncation)
}

var (
	good     = Outcome{Status: scsi.StatusGood}
	conflict = Outcome{Status: scsi.StatusReservationConflict}
)

func check(c scsi.Code) Outcome { return Outcome{Status: scsi.StatusCheckCondition, Sense: c} }

// Out applies a PERSISTENT RESERVE OUT. cdb is the 10-byte CDB, param
// the parameter list (its length already checked against the CDB).
func (s *State) Out(n scsi.Nexus, cdb, param []byte) Outcome {
	c := ParseOutCDB(cdb)
	sa, scope, typ := c.Action, c.Scope, c.Type
	if sa == OutRegisterAndMove {
		if s.Legacy != nil && *s.Legacy != n {
			return conflict
		}
		return s.registerAndMove(n, c, param)
	}
	if sa > OutRegisterAndIgnore {
		return check(scsi.InvalidFieldInCDB)
	}
	p, ok := ParseOutParams(sa, param)
	if c.ParamLen != OutParamsLen || !ok {
		return check(scsi.ParamListLengthError)
	}
	key, saKey, aptpl := p.Key, p.SAKey, p.APTPL
	if p.SpecIPT || p.AllTgPt {
		// One target port per device; no initiator ports to specify.
		return check(scsi.InvalidFieldInParamList)
	}
	if s.Legacy != nil && *s.Legacy != n {
		return conflict
	}
	i := s.find(n)
	switch sa {
	case OutRegister, OutRegisterAndIgnore:
		if sa == OutRegister {
			if i < 0 && key != 0 {
				return conflict
			}
			if i >= 0 && s.Registrations[i].Key != key {
				return conflict
			}
		}
		switch {
		case saKey == 0 && i >= 0:
			s.removeRegistration(i)
		case saKey == 0:
			// Unregistered nexus registering key 0: nothing to do.
		case i >= 0:
			s.Registrations[i].Key = saKey
		default:
			s.Registrations = append(s.Registrations, Registration{Nexus: n, Key: saKey})
		}
		s.APTPL = aptpl
		s.Generation++
		return good
	}
	// Every other action needs a registered nexus with the right key.
	if i < 0 || s.Registrations[i].Key != key {
		return conflict
	}
	switch sa {
	case OutReserve:
		if scope != 0 || !typ.Valid() {
			return check(scsi.InvalidFieldInCDB)
		}
		if !s.Reserved {
			s.Reserved, s.Type, s.Holder = true, typ, n
			return good
		}
		if s.isHolder(n) && s.Type == typ {
			return good
		}
		return conflict
	case OutRelease:
		if !s.Reserved || !s.isHolder(n) {
			return good
		}
		if scope != 0 || s.Type != typ {
			return check(scsi.InvalidReleaseOfReservation)
		}
		s.Reserved = false
		if s.Type.registrantsOnly() || s.Type.allRegistrants() {
			for _, r := range s.Registrations {
				if r.Nexus != n {
					s.attention(r.Nexus, scsi.ReservationsReleased)
				}
			}
		}
		return good
	case OutClear:
		for _, r := range s.Registrations {
			if r.Nexus != n {
				s.attention(r.Nexus, scsi.ReservationsPreempted)
			}
		}
		s.Registrations, s.Reserved = nil, false
		s.Generation++
		return good
	case OutPreempt, OutPreemptAndAbort:
		if !typ.Valid() && s.Reserved {
			return check(scsi.InvalidFieldInCDB)
		}
		return s.preempt(n, saKey, typ)
	}
	return check(scsi.InvalidFieldInCDB)
}

// preempt implements SPC-4 5.9.11.4.
func (s *State) preempt(n scsi.Nexus, saKey uint64, typ Type) Outcome {
	removeKey := func() bool {
		removed := false
		for j := len(s.Registrations) - 1; j >= 0; j-- {
			r := s.Registrations[j]
			if r.Key == saKey && r.Nexus != n {
				s.Registrations = slices.Delete(s.Registrations, j, j+1)
				s.attention(r.Nexus, scsi.RegistrationsPreempted)
				removed = true
			}
		}
		return removed
	}
	switch {
	case !s.Reserved:
		if saKey == 0 {
			return check(scsi.InvalidFieldInParamList)
		}
		if !removeKey() {
			return conflict
		}
	case s.Type.allRegistrants():
		if saKey == 0 {
			for _, r := range s.Registrations {
				if r.Nexus != n {
					s.attention(r.Nexus, scsi.RegistrationsPreempted)
				}
			}
			s.Registrations = slices.DeleteFunc(s.Registrations, func(r Registration) bool { return r.Nexus != n })
			s.Type, s.Holder = typ, n
		} else if !removeKey() {
			return conflict
		}
	default:
		holderKey := uint64(0)
		if h := s.find(s.Holder); h >= 0 {
			holderKey = s.Registrations[h].Key
		}
		switch {
		case saKey == holderKey:
			removeKey()
			s.Type, s.Holder = typ, n
		case saKey == 0:
			return check(scsi.InvalidFieldInParamList)
		default:
			if !removeKey() {
				return conflict
			}
		}
	}
	s.Generation++
	return good
}

// RelativeTargetPort is the RELATIVE TARGET PORT IDENTIFIER of a vbd's only
// target port: the backend end of the blkif connection. READ FULL STATUS
// reports it and REGISTER AND MOVE must name it (0 is reserved by SPC-4).
const RelativeTargetPort = 1

// registerAndMove implements PR OUT REGISTER AND MOVE (SPC-4 5.12.8,
// 6.17.4): the holder registers another I_T nexus, named by a TransportID,
// with the service action reservation key and hands it the reservation
// with the same type and scope, optionally unregistering itself.
func (s *State) registerAndMove(n scsi.Nexus, c OutCommand, param []byte) Outcome {
	p, ok := ParseOutParams(OutRegisterAndMove, param)
	if c.ParamLen < OutParamsLen || !ok {
		return check(scsi.ParamListLengthError)
	}
	key, saKey, unreg, aptpl := p.Key, p.SAKey, p.Unreg, p.APTPL
	// The caller must hold a registration with the right key and the
	// reservation (table 52 "register behaviors for REGISTER AND MOVE").
	i := s.find(n)
	if i < 0 || s.Registrations[i].Key != key {
		return conflict
	}
	if !s.Reserved || s.Type.allRegistrants() {
		// Nothing to move, or a reservation every registrant holds.
		return check(scsi.InvalidFieldInCDB)
	}
	if !s.isHolder(n) {
		return conflict
	}
	if c.Scope != 0 {
		return check(scsi.InvalidFieldInCDB)
	}
	if uint64(p.TransportIDLen)+OutParamsLen != uint64(c.ParamLen) {
		return check(scsi.ParamListLengthError)
	}
	if saKey == 0 || p.RelativeTargetPort != RelativeTargetPort {
		return check(scsi.InvalidFieldInParamList)
	}
	dest, ok := ParseTransportID(p.TransportID)
	if !ok || dest == n {
		return check(scsi.InvalidFieldInParamList)
	}
	if j := s.find(dest); j >= 0 {
		s.Registrations[j].Key = saKey
	} else {
		s.Registrations = append(s.Registrations, Registration{Nexus: dest, Key: saKey})
	}
	// The reservation is released by the source and established for
	// dest with the same type and scope: no unit attention, since no
	// registrant lost anything it held.
	s.Holder = dest
	if unreg {
		s.Registrations = slices.Delete(s.Registrations, i, i+1)
	}
	s.APTPL = aptpl
	s.Generation++
	return good
}

// In answers a PERSISTENT RESERVE IN with its full parameter data.
func (s *State) In(n scsi.Nexus, cdb []byte) Outcome {
	switch ParseInCDB(cdb).Action {
	case InReadKeys:
		d := make([]byte, inHeaderLen, inHeaderLen+8*len(s.Registrations))
		for _, r := range s.Registrations {
			d = binary.BigEndian.AppendUint64(d, r.Key)
		}
		return s.inData(d)
	case InReadReservation:
		d := make([]byte, inHeaderLen, inHeaderLen+reservationLen)
		if s.Reserved {
			r := Reservation{Type: s.Type}
			if !s.Type.allRegistrants() {
				if h := s.find(s.Holder); h >= 0 {
					r.Key = s.Registrations[h].Key
				}
			}
			d = r.append(d)
		}
		return s.inData(d)
	case InReportCapabilities:
		c := Capabilities{
			CRH:   true, // RESERVE/RELEASE handled as SPC-3 has it
			PTPLC: true,
			TMV:   true,
			PTPLA: s.APTPL,
			TypeMask: MaskOf(TypeWriteExclusive, TypeExclusiveAccess, TypeWriteExclusiveRegOnly,
				TypeExclusiveAccessRegOnly, TypeWriteExclusiveAllRegs, TypeExclusiveAccessAllRegs),
		}
		return Outcome{Status: scsi.StatusGood, Data: c.Append(nil)}
	case InReadFullStatus:
		d := make([]byte, inHeaderLen)
		for _, r := range s.Registrations {
			sd := StatusDescriptor{Key: r.Key, RelativeTargetPort: RelativeTargetPort, TransportID: TransportID(r.Nexus)}
			if s.isHolder(r.Nexus) {
				sd.Holder, sd.Type = true, s.Type
			}
			d = appendStatusDescriptor(d, &sd)
		}
		return s.inData(d)
	}
	return check(scsi.InvalidFieldInCDB)
}

// inData fills the header of d, PR IN parameter data whose body follows
// its first inHeaderLen bytes, with s's generation and the body's length.
func (s *State) inData(d []byte) Outcome {
	binary.BigEndian.PutUint32(d[0:4], s.Generation)
	binary.BigEndian.PutUint32(d[4:8], uint32(len(d)-inHeaderLen))
	return Outcome{Status: scsi.StatusGood, Data: d}
}

// TransportID names a nexus in READ FULL STATUS and REGISTER AND MOVE: an
// iSCSI-format TransportID (protocol identifier 5, format 0) whose name is
// xen:dom<N>:<device> (xen:vm:<initiator>:<device> for a named
// initiator), NUL-terminated and padded with NULs to a multiple
// of 4 and at least 20 bytes (SPC-4 7.6.4.6).
func TransportID(n scsi.Nexus) []byte {
	name := TransportName(n)
	l := max((len(name)+1+3)&^3, 20)
	t := make([]byte, 4+l)
	t[0] = tidProtocolISCSI
	binary.BigEndian.PutUint16(t[2:], uint16(l))
	copy(t[4:], name)
	return t
}

// TransportName is the name a TransportID carries for n.
func TransportName(n scsi.Nexus) string {
	if n.Initiator != "" {
		return "xen:vm:" + n.Initiator + ":" + n.Device
	}
	return fmt.Sprintf("xen:dom%d:%s", n.Dom, n.Device)
}

const (
	tidProtocolISCSI = 0x05
	maxTransportID   = 4 + 224 // SPC-4: an iSCSI name is at most 223 bytes plus its NUL
)

// ParseTransportID reads a TransportID naming a xenblk nexus; the whole of
// b must be the TransportID. It accepts only what TransportID produces:
// iSCSI format 0, a length that is a multiple of 4 and covers b, and a
// NUL-terminated xen:dom<N>:<device> name followed only by NULs.
func ParseTransportID(b []byte) (scsi.Nexus, bool) {
	if len(b) < 24 || len(b) > maxTransportID || b[0] != tidProtocolISCSI || b[1] != 0 {
		return scsi.Nexus{}, false
	}
	l := int(binary.BigEndian.Uint16(b[2:]))
	if l%4 != 0 || 4+l != len(b) {
		return scsi.Nexus{}, false
	}
	body := b[4:]
	end := bytes.IndexByte(body, 0)
	if end < 0 || bytes.ContainsFunc(body[end:], func(r rune) bool { return r != 0 }) {
		return scsi.Nexus{}, false
	}
	return ParseTransportName(string(body[:end]))
}

// ParseTransportName reads xen:dom<N>:<device> or xen:vm:<initiator>:<device>
// (the device, a virtual device number, has no colon; the initiator may).
func ParseTransportName(name string) (scsi.Nexus, bool) {
	if rest, ok := strings.CutPrefix(name, "xen:vm:"); ok {
		i := strings.LastIndexByte(rest, ':')
		if i <= 0 || i == len(rest)-1 || !printable(rest) {
			return scsi.Nexus{}, false
		}
		return scsi.Nexus{Initiator: rest[:i], Device: rest[i+1:]}, true
	}
	rest, ok := strings.CutPrefix(name, "xen:dom")
	if !ok {
		return scsi.Nexus{}, false
	}
	dom, dev, ok := strings.Cut(rest, ":")
	if !ok || dev == "" || dom == "" || (len(dom) > 1 && dom[0] == '0') {
		return scsi.Nexus{}, false
	}
	d, err := strconv.ParseUint(dom, 10, 16)
	if err != nil {
		return scsi.Nexus{}, false
	}
	if !printable(dev) {
		return scsi.Nexus{}, false
	}
	return scsi.Nexus{Dom: uint16(d), Device: dev}, true
}

func printable(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// Legacy applies RESERVE(6/10) and RELEASE(6/10) (SPC-2). With persistent
// reservations in use they conflict, as SPC-3 allows and Windows expects.
func (s *State) Legacy6or10(n scsi.Nexus, reserve bool) Outcome {
	if len(s.Registrations) > 0 || s.Reserved {
		return conflict
	}
	if reserve {
		if s.Legacy != nil && *s.Legacy != n {
			return conflict
		}
		l := n
		s.Legacy = &l
		return good
	}
	if s.Legacy != nil && *s.Legacy == n {
		s.Legacy = nil
	}
	return good
}
