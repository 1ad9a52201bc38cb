package scsi

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Policy is a per-device allowlist of SCSI commands, by opcode and, for
// opcodes with service actions, by service action. The zero Policy denies
// everything. A Policy is immutable once built and safe for concurrent use;
// Allows allocates nothing.
//
// Text form (the xl disk spec's scsi-policy= value and policy files use the
// same items): a comma- or whitespace-separated list applied left to right.
//
//	default       the backend type's default set (emulated or passthrough)
//	emulated      every command the emulation implements
//	passthrough   the conservative pass-through set
//	none          deny everything (start of a strict list)
//	+0x28         allow an opcode (every service action of it)
//	-0x42         deny an opcode
//	+0x9e/0x10    allow one service action of an opcode
//	-0xa3/0x0c    deny one service action
//
// A policy file holds the same items, one or more per line; '#' starts a
// comment. Example:
//
//	# cluster disk: pass-through plus UNMAP, no WRITE BUFFER
//	passthrough
//	+0x42
//	-0x3b
type Policy struct {
	op [256]opRule
	// sa holds per-service-action decisions for opcodes whose rule is
	// rulePerAction; a missing entry denies.
	sa map[uint16]bool
}

type opRule uint8

const (
	ruleDeny opRule = iota
	ruleAllow
	rulePerAction
)

func saKey(op byte, sa uint16) uint16 { return uint16(op)<<5 | sa&0x1f }

// Decision is why Allows said no.
type Decision uint8

const (
	Allowed          Decision = iota
	DeniedOpcode              // report INVALID COMMAND OPERATION CODE
	DeniedServiceAct          // report INVALID FIELD IN CDB (byte 1)
)

// Allows decides on cdb (which must hold at least the opcode).
func (p *Policy) Allows(cdb []byte) Decision {
	if len(cdb) == 0 {
		return DeniedOpcode
	}
	switch p.op[cdb[0]] {
	case ruleAllow:
		return Allowed
	case rulePerAction:
		if p.sa[saKey(cdb[0], ServiceAction(cdb))] {
			return Allowed
		}
		return DeniedServiceAct
	}
	return DeniedOpcode
}

// AllowsAction decides on an opcode and service action without a CDB.
func (p *Policy) AllowsAction(op byte, sa uint16) bool {
	switch p.op[op] {
	case ruleAllow:
		return true
	case rulePerAction:
		return p.sa[saKey(op, sa)]
	}
	return false
}

// Allow adds an opcode (all service actions) to p.
func (p *Policy) Allow(op byte) { p.op[op] = ruleAllow; p.dropActions(op) }

// Deny removes an opcode (all service actions) from p.
func (p *Policy) Deny(op byte) { p.op[op] = ruleDeny; p.dropActions(op) }

// AllowAction allows one service action of op.
func (p *Policy) AllowAction(op byte, sa uint16) { p.setAction(op, sa, true) }

// DenyAction denies one service action of op.
func (p *Policy) DenyAction(op byte, sa uint16) { p.setAction(op, sa, false) }

func (p *Policy) setAction(op byte, sa uint16, allow bool) {
	if p.sa == nil {
		p.sa = make(map[uint16]bool)
	}
	if p.op[op] != rulePerAction {
		// Expand the opcode-wide rule into all 32 actions first.
		all := p.op[op] == ruleAllow
		for a := uint16(0); a < 32; a++ {
			p.sa[saKey(op, a)] = all
		}
		p.op[op] = rulePerAction
	}
	p.sa[saKey(op, sa)] = allow
}

func (p *Policy) dropActions(op byte) {
	for a := uint16(0); a < 32; a++ {
		delete(p.sa, saKey(op, a))
	}
}

// Clone returns an independent copy of p.
func (p *Policy) Clone() *Policy {
	q := &Policy{op: p.op}
	if p.sa != nil {
		q.sa = make(map[uint16]bool, len(p.sa))
		for k, v := range p.sa {
			q.sa[k] = v
		}
	}
	return q
}

// String renders p in the text form (a canonical list from "none").
func (p *Policy) String() string {
	var b strings.Builder
	b.WriteString("none")
	for op := 0; op < 256; op++ {
		switch p.op[op] {
		case ruleAllow:
			fmt.Fprintf(&b, ",+0x%02x", op)
		case rulePerAction:
			for a := uint16(0); a < 32; a++ {
				if p.sa[saKey(byte(op), a)] {
					fmt.Fprintf(&b, ",+0x%02x/0x%02x", op, a)
				}
			}
		}
	}
	return b.String()
}

// EmulatedPolicy is every command scsi/emulate implements, including the
// reservation commands.
func EmulatedPolicy() *Policy {
	p := &Policy{}
	for _, op := range []byte{
		OpTestUnitReady, OpRequestSense, OpRead6, OpWrite6, OpInquiry, OpModeSelect6,
		OpReserve6, OpRelease6, OpModeSense6, OpStartStopUnit, OpReadCapacity10,
		OpRead10, OpWrite10, OpVerify10, OpSynchronizeCache10, OpWriteSame10, OpUnmap,
		OpModeSelect10, OpReserve10, OpRelease10, OpModeSense10, OpPersistentReserveIn,
		OpPersistentReserveOut, OpRead16, OpCompareAndWrite, OpWrite16, OpVerify16,
		OpSynchronizeCache16, OpWriteSame16, OpReportLuns, OpRead12, OpWrite12, OpVerify12,
	} {
		p.Allow(op)
	}
	p.AllowAction(OpServiceActionIn16, SAReadCapacity16)
	p.AllowAction(OpServiceActionIn16, SAGetLBAStatus)
	p.AllowAction(OpMaintenanceIn, SAReportSupportedOpcodes)
	return p
}

// PassthroughPolicy is the conservative set allowed to reach a real disk:
// reads, writes, inquiry, capacity, cache sync, sense and reservations.
// Nothing that changes firmware, mode pages or the medium's format.
func PassthroughPolicy() *Policy {
	p := &Policy{}
	for _, op := range []byte{
		OpTestUnitReady, OpRequestSense, OpRead6, OpWrite6, OpInquiry, OpModeSense6,
		OpReadCapacity10, OpRead10, OpWrite10, OpSynchronizeCache10, OpModeSense10,
		OpReserve6, OpRelease6, OpReserve10, OpRelease10,
		OpPersistentReserveIn, OpPersistentReserveOut, OpRead16, OpWrite16,
		OpSynchronizeCache16, OpReportLuns, OpRead12, OpWrite12,
	} {
		p.Allow(op)
	}
	p.AllowAction(OpServiceActionIn16, SAReadCapacity16)
	p.AllowAction(OpMaintenanceIn, SAReportSupportedOpcodes)
	return p
}

// ParsePolicy builds a policy from its text form; base is what "default"
// means for this device.
func ParsePolicy(text string, base *Policy) (*Policy, error) {
	p := &Policy{}
	fields := strings.FieldsFunc(text, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	for _, f := range fields {
		if err := p.apply(f, base); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// ReadPolicyFile parses a policy file (see Policy); base is what "default"
// means for this device. Errors name the line.
func ReadPolicyFile(r io.Reader, base *Policy) (*Policy, error) {
	p := &Policy{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		for _, f := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			if err := p.apply(f, base); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Policy) apply(item string, base *Policy) error {
	switch item {
	case "default":
		if base == nil {
			return fmt.Errorf("scsi policy: %q has no meaning here; list opcodes explicitly", item)
		}
		*p = *base.Clone()
		return nil
	case "emulated":
		*p = *EmulatedPolicy()
		return nil
	case "passthrough":
		*p = *PassthroughPolicy()
		return nil
	case "none":
		*p = Policy{}
		return nil
	}
	if len(item) < 2 || (item[0] != '+' && item[0] != '-') {
		return fmt.Errorf("scsi policy: bad item %q: want default, emulated, passthrough, none, +OP, -OP, +OP/SA or -OP/SA (e.g. +0x35)", item)
	}
	allow := item[0] == '+'
	opText, saText, hasSA := strings.Cut(item[1:], "/")
	op, err := strconv.ParseUint(opText, 0, 8)
	if err != nil {
		return fmt.Errorf("scsi policy: bad opcode in %q: want 0x00..0xff", item)
	}
	if !hasSA {
		if allow {
			p.Allow(byte(op))
		} else {
			p.Deny(byte(op))
		}
		return nil
	}
	if !HasServiceAction(byte(op)) {
		return fmt.Errorf("scsi policy: %q: opcode %#02x has no service actions", item, op)
	}
	sa, err := strconv.ParseUint(saText, 0, 5)
	if err != nil {
		return fmt.Errorf("scsi policy: bad service action in %q: want 0x00..0x1f", item)
	}
	if allow {
		p.AllowAction(byte(op), uint16(sa))
	} else {
		p.DenyAction(byte(op), uint16(sa))
	}
	return nil
}
