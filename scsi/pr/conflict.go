package pr

import "github.com/xenblk/xenblk/scsi"

// access classifies a command for SPC-4's table of commands allowed in the
// presence of reservations (5.9.1, table 62 "SPC commands that are allowed
// in the presence of various reservations", and SBC-3's table 13).
type access uint8

const (
	alwaysAllowed access = iota // INQUIRY, REPORT LUNS, TUR, PR IN/OUT, ...
	readAccess                  // reads the medium or its description
	writeAccess                 // changes the medium or the device's state
)

func classify(cdb []byte) access {
	switch cdb[0] {
	case scsi.OpInquiry, scsi.OpReportLuns, scsi.OpRequestSense, scsi.OpTestUnitReady,
		scsi.OpPersistentReserveIn, scsi.OpPersistentReserveOut,
		scsi.OpReadCapacity10, scsi.OpMaintenanceIn, scsi.OpRelease6, scsi.OpRelease10:
		return alwaysAllowed
	case scsi.OpServiceActionIn16:
		return alwaysAllowed // READ CAPACITY(16), GET LBA STATUS: allowed (SBC-3)
	case scsi.OpRead6, scsi.OpRead10, scsi.OpRead12, scsi.OpRead16,
		scsi.OpVerify10, scsi.OpVerify12, scsi.OpVerify16,
		scsi.OpModeSense6, scsi.OpModeSense10, scsi.OpLogSense, scsi.OpReadBuffer:
		return readAccess
	}
	return writeAccess
}

// idle reports whether s refuses no command and has no unit attention
// pending: Conflict is then false for every nexus and command.
func (s *State) idle() bool {
	return !s.Reserved && s.Legacy == nil && len(s.Attentions) == 0
}

// Conflict reports whether n must get RESERVATION CONFLICT for cdb.
func (s *State) Conflict(n scsi.Nexus, cdb []byte) bool {
	if len(cdb) == 0 {
		return false
	}
	a := classify(cdb)
	if s.Legacy != nil && *s.Legacy != n {
		// An SPC-2 reservation excludes everything but the few commands
		// every initiator needs.
		switch cdb[0] {
		case scsi.OpInquiry, scsi.OpReportLuns, scsi.OpRequestSense, scsi.OpRelease6, scsi.OpRelease10,
			scsi.OpPersistentReserveIn:
			return false
		}
		return true
	}
	if a == alwaysAllowed || !s.Reserved || s.isHolder(n) {
		return false
	}
	registered := s.find(n) >= 0
	switch s.Type {
	case TypeWriteExclusive:
		return a == writeAccess
	case TypeExclusiveAccess:
		return true
	case TypeWriteExclusiveRegOnly, TypeWriteExclusiveAllRegs:
		return !registered && a == writeAccess
	case TypeExclusiveAccessRegOnly, TypeExclusiveAccessAllRegs:
		return !registered
	}
	return false
}

// Revokes reports whether the change from old to next may refuse some
// nexus a command that old admitted: a reservation taken or changed, a
// registrant of a held reservation removed, an SPC-2 reservation taken.
// On a shared store such a change completes only after the lease's hold
// (docs/PROTOCOL.md, "Fencing across hosts"); any other change only
// widens what is admitted and completes at once. It may answer true for
// a change that refuses no one; never false for one that does.
func Revokes(old, next *State) bool {
	if next.Legacy != nil && (old.Legacy == nil || *old.Legacy != *next.Legacy) {
		return true
	}
	if !next.Reserved {
		return false
	}
	if !old.Reserved || old.Type != next.Type || old.Holder != next.Holder {
		return true
	}
	for _, r := range old.Registrations {
		if next.find(r.Nexus) < 0 {
			return true
		}
	}
	return false
}
