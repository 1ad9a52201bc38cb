package scsi

// OpDirection is the direction of the data an operation code moves, when
// the operation code alone decides it: known is false for the rest
// (vendor codes, VERIFY with or without BYTCHK, anything this table does
// not name), whose direction only the command's other fields or the
// device know. A data-out or data-in command may still move nothing (a
// transfer length of zero); a DirNone command never moves data.
// Transports use it to refuse a request whose own direction contradicts
// its CDB before any engine sees it.
func OpDirection(op byte) (d Direction, known bool) {
	d = opDirections[op]
	return d &^ dirKnown, d&dirKnown != 0
}

// dirKnown marks the entries of opDirections that are set.
const dirKnown Direction = 0x80

var opDirections = func() (t [256]Direction) {
	for _, op := range []byte{OpTestUnitReady, OpStartStopUnit, OpPreventAllowRemoval,
		OpSynchronizeCache10, OpSynchronizeCache16} {
		t[op] = DirNone | dirKnown
	}
	for _, op := range []byte{OpRequestSense, OpRead6, OpInquiry, OpModeSense6, OpReadCapacity10,
		OpRead10, OpReadBuffer, OpLogSense, OpModeSense10, OpPersistentReserveIn, OpRead16,
		OpServiceActionIn16, OpReportLuns, OpMaintenanceIn, OpRead12} {
		t[op] = DirFromDevice | dirKnown
	}
	for _, op := range []byte{OpWrite6, OpModeSelect6, OpSendDiagnostic, OpWrite10, OpWriteVerify10,
		OpWriteBuffer, OpWriteSame10, OpUnmap, OpModeSelect10, OpPersistentReserveOut,
		OpCompareAndWrite, OpWrite16, OpWriteVerify16, OpWriteSame16, OpServiceActionOut16,
		OpMaintenanceOut, OpWrite12} {
		t[op] = DirToDevice | dirKnown
	}
	return t
}()
