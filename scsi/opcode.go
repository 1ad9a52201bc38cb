package scsi

// Operation codes (SPC-4, SBC-3).
const (
	OpTestUnitReady        = 0x00
	OpRequestSense         = 0x03
	OpRead6                = 0x08
	OpWrite6               = 0x0a
	OpInquiry              = 0x12
	OpModeSelect6          = 0x15
	OpReserve6             = 0x16
	OpRelease6             = 0x17
	OpModeSense6           = 0x1a
	OpStartStopUnit        = 0x1b
	OpSendDiagnostic       = 0x1d
	OpPreventAllowRemoval  = 0x1e
	OpReadCapacity10       = 0x25
	OpRead10               = 0x28
	OpWrite10              = 0x2a
	OpWriteVerify10        = 0x2e
	OpVerify10             = 0x2f
	OpSynchronizeCache10   = 0x35
	OpWriteBuffer          = 0x3b
	OpReadBuffer           = 0x3c
	OpWriteSame10          = 0x41
	OpUnmap                = 0x42
	OpLogSense             = 0x4d
	OpModeSelect10         = 0x55
	OpReserve10            = 0x56
	OpRelease10            = 0x57
	OpModeSense10          = 0x5a
	OpPersistentReserveIn  = 0x5e
	OpPersistentReserveOut = 0x5f
	OpVariableLength       = 0x7f
	OpRead16               = 0x88
	OpCompareAndWrite      = 0x89
	OpWrite16              = 0x8a
	OpWriteVerify16        = 0x8e
	OpVerify16             = 0x8f
	OpSynchronizeCache16   = 0x91
	OpWriteSame16          = 0x93
	OpServiceActionIn16    = 0x9e
	OpServiceActionOut16   = 0x9f
	OpReportLuns           = 0xa0
	OpMaintenanceIn        = 0xa3
	OpMaintenanceOut       = 0xa4
	OpRead12               = 0xa8
	OpWrite12              = 0xaa
	OpVerify12             = 0xaf
)

// Service actions.
const (
	SAReadCapacity16         = 0x10 // SERVICE ACTION IN(16)
	SAGetLBAStatus           = 0x12 // SERVICE ACTION IN(16)
	SAReportSupportedOpcodes = 0x0c // MAINTENANCE IN
	SAReportSupportedTMFs    = 0x0d // MAINTENANCE IN
	SAReportTargetPortGroups = 0x0a // MAINTENANCE IN
)

// HasServiceAction reports whether op's CDB carries a service action in
// byte 1 bits 4..0, and so whether policy and support are per action.
func HasServiceAction(op byte) bool {
	switch op {
	case OpServiceActionIn16, OpServiceActionOut16, OpMaintenanceIn, OpMaintenanceOut,
		OpPersistentReserveIn, OpPersistentReserveOut:
		return true
	}
	return false
}

// ServiceAction returns the service action of cdb (0 when op has none or the
// CDB is too short).
func ServiceAction(cdb []byte) uint16 {
	if len(cdb) < 2 || !HasServiceAction(cdb[0]) {
		return 0
	}
	return uint16(cdb[1] & 0x1f)
}

// CDBLen is the CDB length implied by the opcode's group code (SPC-4 4.2.5.1),
// or 0 for a variable-length or vendor-specific group whose length the
// opcode alone does not determine.
func CDBLen(op byte) int {
	switch op >> 5 {
	case 0:
		return 6
	case 1, 2:
		return 10
	case 4:
		return 16
	case 5:
		return 12
	}
	return 0
}

// IsPersistentReservation reports whether op belongs to the reservation
// engine: PERSISTENT RESERVE IN/OUT and the legacy RESERVE/RELEASE.
func IsPersistentReservation(op byte) bool {
	switch op {
	case OpPersistentReserveIn, OpPersistentReserveOut, OpReserve6, OpRelease6, OpReserve10, OpRelease10:
		return true
	}
	return false
}

var opNames = map[byte]string{
	OpTestUnitReady: "TEST UNIT READY", OpRequestSense: "REQUEST SENSE",
	OpRead6: "READ(6)", OpWrite6: "WRITE(6)", OpInquiry: "INQUIRY",
	OpModeSelect6: "MODE SELECT(6)", OpReserve6: "RESERVE(6)", OpRelease6: "RELEASE(6)",
	OpModeSense6: "MODE SENSE(6)", OpStartStopUnit: "START STOP UNIT",
	OpSendDiagnostic: "SEND DIAGNOSTIC", OpPreventAllowRemoval: "PREVENT ALLOW MEDIUM REMOVAL",
	OpReadCapacity10: "READ CAPACITY(10)", OpRead10: "READ(10)", OpWrite10: "WRITE(10)",
	OpWriteVerify10: "WRITE AND VERIFY(10)", OpVerify10: "VERIFY(10)",
	OpSynchronizeCache10: "SYNCHRONIZE CACHE(10)", OpWriteBuffer: "WRITE BUFFER",
	OpReadBuffer: "READ BUFFER", OpWriteSame10: "WRITE SAME(10)", OpUnmap: "UNMAP",
	OpLogSense: "LOG SENSE", OpModeSelect10: "MODE SELECT(10)", OpReserve10: "RESERVE(10)",
	OpRelease10: "RELEASE(10)", OpModeSense10: "MODE SENSE(10)",
	OpPersistentReserveIn: "PERSISTENT RESERVE IN", OpPersistentReserveOut: "PERSISTENT RESERVE OUT",
	OpVariableLength: "VARIABLE LENGTH", OpRead16: "READ(16)", OpCompareAndWrite: "COMPARE AND WRITE",
	OpWrite16: "WRITE(16)", OpWriteVerify16: "WRITE AND VERIFY(16)", OpVerify16: "VERIFY(16)",
	OpSynchronizeCache16: "SYNCHRONIZE CACHE(16)", OpWriteSame16: "WRITE SAME(16)",
	OpServiceActionIn16: "SERVICE ACTION IN(16)", OpServiceActionOut16: "SERVICE ACTION OUT(16)",
	OpReportLuns: "REPORT LUNS", OpMaintenanceIn: "MAINTENANCE IN", OpMaintenanceOut: "MAINTENANCE OUT",
	OpRead12: "READ(12)", OpWrite12: "WRITE(12)", OpVerify12: "VERIFY(12)",
}

// OpName names an opcode for logs and tools ("0xc5" when unknown).
func OpName(op byte) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	const hex = "0123456789abcdef"
	return string([]byte{'0', 'x', hex[op>>4], hex[op&15]})
}
