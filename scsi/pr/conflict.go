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
