package scsi

import "testing"

func TestOpDirection(t *testing.T) {
	for _, c := range []struct {
		op    byte
		dir   Direction
		known bool
	}{
		{OpTestUnitReady, DirNone, true},
		{OpSynchronizeCache16, DirNone, true},
		{OpRead10, DirFromDevice, true},
		{OpInquiry, DirFromDevice, true},
		{OpReportLuns, DirFromDevice, true},
		{OpPersistentReserveIn, DirFromDevice, true},
		{OpServiceActionIn16, DirFromDevice, true}, // READ CAPACITY(16), GET LBA STATUS
		{OpWrite16, DirToDevice, true},
		{OpUnmap, DirToDevice, true},
		{OpPersistentReserveOut, DirToDevice, true},
		{OpCompareAndWrite, DirToDevice, true},
		// Decided by other fields of the CDB, or not a standard code.
		{OpVerify10, DirNone, false},
		{OpVerify16, DirNone, false},
		{OpReserve6, DirNone, false},
		{OpVariableLength, DirNone, false},
		{0xc0, DirNone, false},
		{0xff, DirNone, false},
	} {
		if d, known := OpDirection(c.op); d != c.dir || known != c.known {
			t.Errorf("OpDirection(%#02x) = %v, %v; want %v, %v", c.op, d, known, c.dir, c.known)
		}
	}
}
