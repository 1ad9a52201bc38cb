package pr

// The PERSISTENT RESERVE IN/OUT wire format (SPC-4 6.16, 6.17): service
// actions, reservation types, CDBs, parameter lists and parameter data.
// The engine, blkback's dedicated reservation operation, blkfront and the
// tools all speak it through these; nothing else spells its bytes.
// Decoders take bytes from another party: they never panic and read
// nothing past the end of what they are given.

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/xenblk/xenblk/scsi"
)

// Type is a persistent reservation type (SPC-4 table 212): the TYPE field
// of PERSISTENT RESERVE OUT and of the reservation descriptors. The
// dedicated blkif reservation operation carries the same codes.
type Type uint8

const (
	TypeWriteExclusive         Type = 1
	TypeExclusiveAccess        Type = 3
	TypeWriteExclusiveRegOnly  Type = 5
	TypeExclusiveAccessRegOnly Type = 6
	TypeWriteExclusiveAllRegs  Type = 7
	TypeExclusiveAccessAllRegs Type = 8
)

// types is the one table of reservation types: SPC's name and the short
// name Linux's blkpr(8) gives each.
var types = []struct {
	t            Type
	abbrev, name string
}{
	{TypeWriteExclusive, "we", "Write Exclusive"},
	{TypeExclusiveAccess, "ea", "Exclusive Access"},
	{TypeWriteExclusiveRegOnly, "we-ro", "Write Exclusive, registrants only"},
	{TypeExclusiveAccessRegOnly, "ea-ro", "Exclusive Access, registrants only"},
	{TypeWriteExclusiveAllRegs, "we-ar", "Write Exclusive, all registrants"},
	{TypeExclusiveAccessAllRegs, "ea-ar", "Exclusive Access, all registrants"},
}

// names returns t's entry in types; ok is false for a code SPC-4 does
// not define.
func (t Type) names() (abbrev, name string, ok bool) {
	for _, e := range types {
		if e.t == t {
			return e.abbrev, e.name, true
		}
	}
	return "", "", false
}

// String is SPC's name for t, as sg_persist prints it ("Write Exclusive,
// registrants only"); a code SPC-4 does not define reads "obsolete [N]".
func (t Type) String() string {
	if _, name, ok := t.names(); ok {
		return name
	}
	return fmt.Sprintf("obsolete [%d]", uint8(t))
}

// Abbrev is blkpr(8)'s short name for t ("we-ro"), or "type-N" for a
// code SPC-4 does not define.
func (t Type) Abbrev() string {
	if abbrev, _, ok := t.names(); ok {
		return abbrev
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// Valid reports whether SPC-4 defines t.
func (t Type) Valid() bool {
	_, _, ok := t.names()
	return ok
}

// ParseTypeAbbrev reads a blkpr(8) short name ("we-ro"), in any case.
func ParseTypeAbbrev(s string) (Type, bool) {
	for _, e := range types {
		if e.abbrev == strings.ToLower(s) {
			return e.t, true
		}
	}
	return 0, false
}

// TypeAbbrevs lists the short names, in SPC's order of the codes.
func TypeAbbrevs() []string {
	names := make([]string, len(types))
	for i, e := range types {
		names[i] = e.abbrev
	}
	return names
}

func (t Type) allRegistrants() bool {
	return t == TypeWriteExclusiveAllRegs || t == TypeExclusiveAccessAllRegs
}

func (t Type) registrantsOnly() bool {
	return t == TypeWriteExclusiveRegOnly || t == TypeExclusiveAccessRegOnly
}

// OutAction is a PERSISTENT RESERVE OUT service action (SPC-4 table 220).
type OutAction uint8

const (
	OutRegister               OutAction = 0
	OutReserve                OutAction = 1
	OutRelease                OutAction = 2
	OutClear                  OutAction = 3
	OutPreempt                OutAction = 4
	OutPreemptAndAbort        OutAction = 5
	OutRegisterAndIgnore      OutAction = 6
	OutRegisterAndMove        OutAction = 7
	OutReplaceLostReservation OutAction = 8
)

var outNames = [...]string{
	OutRegister: "register", OutReserve: "reserve", OutRelease: "release", OutClear: "clear",
	OutPreempt: "preempt", OutPreemptAndAbort: "preempt and abort",
	OutRegisterAndIgnore: "register and ignore existing key", OutRegisterAndMove: "register and move",
	OutReplaceLostReservation: "replace lost reservation",
}

// String is SPC's name for a, in lower case as sg_persist prints it.
func (a OutAction) String() string {
	if int(a) < len(outNames) {
		return outNames[a]
	}
	return fmt.Sprintf("service action 0x%02x", uint8(a))
}

// InAction is a PERSISTENT RESERVE IN service action (SPC-4 table 210).
type InAction uint8

const (
	InReadKeys           InAction = 0
	InReadReservation    InAction = 1
	InReportCapabilities InAction = 2
	InReadFullStatus     InAction = 3
)

var inNames = [...]string{
	InReadKeys: "read keys", InReadReservation: "read reservation",
	InReportCapabilities: "report capabilities", InReadFullStatus: "read full status",
}

// String is SPC's name for a, in lower case.
func (a InAction) String() string {
	if int(a) < len(inNames) {
		return inNames[a]
	}
	return fmt.Sprintf("service action 0x%02x", uint8(a))
}

// OutCommand is a PERSISTENT RESERVE OUT CDB (10 bytes).
type OutCommand struct {
	Action   OutAction
	Scope    uint8 // 0: LU_SCOPE, the only scope SPC-4 keeps
	Type     Type
	ParamLen uint32 // the parameter list's length
}

// CDB encodes c.
func (c OutCommand) CDB() [10]byte {
	var cdb [10]byte
	cdb[0], cdb[1], cdb[2] = scsi.OpPersistentReserveOut, byte(c.Action)&0x1f, c.Scope<<4|byte(c.Type)&0x0f
	binary.BigEndian.PutUint32(cdb[5:9], c.ParamLen)
	return cdb
}

// ParseOutCDB decodes a PERSISTENT RESERVE OUT CDB of at least 10 bytes.
func ParseOutCDB(cdb []byte) OutCommand {
	_ = cdb[9]
	return OutCommand{
		Action:   OutAction(cdb[1] & 0x1f),
		Scope:    cdb[2] >> 4,
		Type:     Type(cdb[2] & 0x0f),
		ParamLen: binary.BigEndian.Uint32(cdb[5:9]),
	}
}

// InCommand is a PERSISTENT RESERVE IN CDB (10 bytes).
type InCommand struct {
	Action   InAction
	AllocLen uint16
}

// CDB encodes c.
func (c InCommand) CDB() [10]byte {
	var cdb [10]byte
	cdb[0], cdb[1] = scsi.OpPersistentReserveIn, byte(c.Action)&0x1f
	binary.BigEndian.PutUint16(cdb[7:9], c.AllocLen)
	return cdb
}

// ParseInCDB decodes a PERSISTENT RESERVE IN CDB of at least 10 bytes.
func ParseInCDB(cdb []byte) InCommand {
	_ = cdb[9]
	return InCommand{Action: InAction(cdb[1] & 0x1f), AllocLen: binary.BigEndian.Uint16(cdb[7:9])}
}

// OutParamsLen is the length of the basic PERSISTENT RESERVE OUT parameter
// list, and of REGISTER AND MOVE's list before its TransportID.
const OutParamsLen = 24

// OutParams is a PERSISTENT RESERVE OUT parameter list: the basic list
// (SPC-4 6.17.3) or REGISTER AND MOVE's (6.17.4), which Action chooses.
type OutParams struct {
	Key, SAKey uint64
	APTPL      bool

	// The basic list only.
	SpecIPT, AllTgPt bool

	// REGISTER AND MOVE only: UNREG, the RELATIVE TARGET PORT IDENTIFIER
	// and the destination's TransportID. TransportIDLen is the length the
	// list declares (ParseOutParams sets it; Append writes
	// len(TransportID)), and TransportID is all that follows the header,
	// aliasing the parsed list.
	Unreg              bool
	RelativeTargetPort uint16
	TransportIDLen     uint32
	TransportID        []byte
}

// Append appends p encoded as action a's parameter list to b.
func (p *OutParams) Append(b []byte, a OutAction) []byte {
	var h [OutParamsLen]byte
	binary.BigEndian.PutUint64(h[0:8], p.Key)
	binary.BigEndian.PutUint64(h[8:16], p.SAKey)
	if a == OutRegisterAndMove {
		// UNREG and APTPL in byte 17, the relative target port, then the
		// TransportID's length.
		if p.APTPL {
			h[17] |= 0x01
		}
		if p.Unreg {
			h[17] |= 0x02
		}
		binary.BigEndian.PutUint16(h[18:20], p.RelativeTargetPort)
		binary.BigEndian.PutUint32(h[20:24], uint32(len(p.TransportID)))
		return append(append(b, h[:]...), p.TransportID...)
	}
	if p.SpecIPT {
		h[20] |= 0x08
	}
	if p.AllTgPt {
		h[20] |= 0x04
	}
	if p.APTPL {
		h[20] |= 0x01
	}
	return append(b, h[:]...)
}

// ParseOutParams decodes action a's parameter list; ok is false when the
// list is shorter than OutParamsLen. SPC orders the length checks against
// the CDB before any field, so callers check ParamLen first.
func ParseOutParams(a OutAction, param []byte) (p OutParams, ok bool) {
	if len(param) < OutParamsLen {
		return OutParams{}, false
	}
	p.Key = binary.BigEndian.Uint64(param[0:8])
	p.SAKey = binary.BigEndian.Uint64(param[8:16])
	if a == OutRegisterAndMove {
		p.Unreg, p.APTPL = param[17]&0x02 != 0, param[17]&0x01 != 0
		p.RelativeTargetPort = binary.BigEndian.Uint16(param[18:20])
		p.TransportIDLen = binary.BigEndian.Uint32(param[20:24])
		p.TransportID = param[OutParamsLen:]
		return p, true
	}
	flags := param[20]
	p.SpecIPT, p.AllTgPt, p.APTPL = flags&0x08 != 0, flags&0x04 != 0, flags&0x01 != 0
	return p, true
}

// inHeaderLen is the PRgeneration and ADDITIONAL LENGTH that start the
// parameter data of READ KEYS, READ RESERVATION and READ FULL STATUS.
const inHeaderLen = 8

// InData is the parameter data of READ KEYS, READ RESERVATION or READ
// FULL STATUS: the header and the body it declares, cut to what was
// returned.
type InData struct {
	Generation uint32
	Length     uint32 // ADDITIONAL LENGTH, as declared
	Body       []byte // at most Length bytes; aliases the parsed data
}

// ParseInData splits PR IN parameter data; ok is false when b is shorter
// than the header.
func ParseInData(b []byte) (d InData, ok bool) {
	if len(b) < inHeaderLen {
		return InData{}, false
	}
	d.Generation = binary.BigEndian.Uint32(b[0:4])
	d.Length = binary.BigEndian.Uint32(b[4:8])
	d.Body = b[inHeaderLen:]
	if uint64(d.Length) < uint64(len(d.Body)) {
		d.Body = d.Body[:d.Length]
	}
	return d, true
}

// Truncated reports whether the device declared more than was returned
// (the allocation length was too short).
func (d InData) Truncated() bool { return uint64(d.Length) > uint64(len(d.Body)) }

// AppendKeys appends READ KEYS' keys, those the body holds whole, to keys.
func (d InData) AppendKeys(keys []uint64) []uint64 {
	for b := d.Body; len(b) >= 8; b = b[8:] {
		keys = append(keys, binary.BigEndian.Uint64(b))
	}
	return keys
}

// Reservation is READ RESERVATION's reservation descriptor.
type Reservation struct {
	Key   uint64
	Scope uint8
	Type  Type
}

// reservationLen is the length of READ RESERVATION's descriptor.
const reservationLen = 16

// append appends r encoded as READ RESERVATION's descriptor to b.
func (r *Reservation) append(b []byte) []byte {
	var d [reservationLen]byte
	binary.BigEndian.PutUint64(d[0:8], r.Key)
	d[13] = r.Scope<<4 | byte(r.Type)&0x0f
	return append(b, d[:]...)
}

// Reservation decodes READ RESERVATION's descriptor; ok is false when
// no reservation is held (ADDITIONAL LENGTH 0) or the descriptor is not
// all there.
func (d InData) Reservation() (r Reservation, ok bool) {
	if len(d.Body) < reservationLen {
		return Reservation{}, false
	}
	return Reservation{
		Key:   binary.BigEndian.Uint64(d.Body[0:8]),
		Scope: d.Body[13] >> 4,
		Type:  Type(d.Body[13] & 0x0f),
	}, true
}

// StatusDescriptor is one READ FULL STATUS descriptor (SPC-4 6.16.5).
type StatusDescriptor struct {
	Key                uint64
	AllTargetPorts     bool // ALL_TG_PT
	Holder             bool // R_HOLDER
	Scope              uint8
	Type               Type
	RelativeTargetPort uint16
	TransportID        []byte // aliases the parsed data
}

// statusDescriptorLen is a descriptor's length before its TransportID.
const statusDescriptorLen = 24

// ParseStatusDescriptor decodes the descriptor b starts with and returns
// its length; ok is false when b holds less than the descriptor declares.
func ParseStatusDescriptor(b []byte) (sd StatusDescriptor, n int, ok bool) {
	if len(b) < statusDescriptorLen {
		return StatusDescriptor{}, 0, false
	}
	tid := uint64(binary.BigEndian.Uint32(b[20:24]))
	if tid > uint64(len(b)-statusDescriptorLen) {
		return StatusDescriptor{}, 0, false
	}
	n = statusDescriptorLen + int(tid)
	return StatusDescriptor{
		Key:                binary.BigEndian.Uint64(b[0:8]),
		AllTargetPorts:     b[12]&0x02 != 0,
		Holder:             b[12]&0x01 != 0,
		Scope:              b[13] >> 4,
		Type:               Type(b[13] & 0x0f),
		RelativeTargetPort: binary.BigEndian.Uint16(b[18:20]),
		TransportID:        b[statusDescriptorLen:n],
	}, n, true
}

// appendStatusDescriptor appends sd encoded to b.
func appendStatusDescriptor(b []byte, sd *StatusDescriptor) []byte {
	var h [statusDescriptorLen]byte
	binary.BigEndian.PutUint64(h[0:8], sd.Key)
	if sd.AllTargetPorts {
		h[12] |= 0x02
	}
	if sd.Holder {
		h[12] |= 0x01
	}
	h[13] = sd.Scope<<4 | byte(sd.Type)&0x0f
	binary.BigEndian.PutUint16(h[18:20], sd.RelativeTargetPort)
	binary.BigEndian.PutUint32(h[20:24], uint32(len(sd.TransportID)))
	return append(append(b, h[:]...), sd.TransportID...)
}

// Capabilities is REPORT CAPABILITIES' parameter data (SPC-4 6.16.4).
type Capabilities struct {
	CRH, SIPC, ATPC, PTPLC bool // what the unit can do
	TMV                    bool // TypeMask is valid
	AllowCommands          uint8
	PTPLA                  bool // persist through power loss is active
	TypeMask               uint16
}

// capabilitiesLen is REPORT CAPABILITIES' parameter data length.
const capabilitiesLen = 8

// typeMaskBit is t's bit in the TYPE MASK: bytes 4-5 as a big-endian
// word hold WR_EX_AR (7) down to WR_EX (1) at bits 15-9 and EX_AC_AR (8)
// at bit 0.
func typeMaskBit(t Type) uint16 { return 1 << ((8 + uint(t)) % 16) }

// Supports reports whether the TYPE MASK includes t.
func (c Capabilities) Supports(t Type) bool { return c.TypeMask&typeMaskBit(t) != 0 }

// MaskOf is the TYPE MASK of ts.
func MaskOf(ts ...Type) uint16 {
	var m uint16
	for _, t := range ts {
		m |= typeMaskBit(t)
	}
	return m
}

// ParseCapabilities decodes REPORT CAPABILITIES' data; ok is false when
// b is shorter than it.
func ParseCapabilities(b []byte) (c Capabilities, ok bool) {
	if len(b) < capabilitiesLen {
		return Capabilities{}, false
	}
	bit := func(v byte, n uint) bool { return v>>n&1 != 0 }
	return Capabilities{
		CRH: bit(b[2], 4), SIPC: bit(b[2], 3), ATPC: bit(b[2], 2), PTPLC: bit(b[2], 0),
		TMV: bit(b[3], 7), AllowCommands: b[3] >> 4 & 7, PTPLA: bit(b[3], 0),
		TypeMask: binary.BigEndian.Uint16(b[4:6]),
	}, true
}

// Append appends c encoded to b.
func (c *Capabilities) Append(b []byte) []byte {
	var d [capabilitiesLen]byte
	binary.BigEndian.PutUint16(d[0:2], capabilitiesLen)
	set := func(i int, n uint, v bool) {
		if v {
			d[i] |= 1 << n
		}
	}
	set(2, 4, c.CRH)
	set(2, 3, c.SIPC)
	set(2, 2, c.ATPC)
	set(2, 0, c.PTPLC)
	set(3, 7, c.TMV)
	d[3] |= (c.AllowCommands & 7) << 4
	set(3, 0, c.PTPLA)
	binary.BigEndian.PutUint16(d[4:6], c.TypeMask)
	return append(b, d[:]...)
}
