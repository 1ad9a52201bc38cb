package sgio

import (
	"runtime"
	"testing"
	"unsafe"
)

// TestSgIOHdrLayout pins struct sg_io_hdr's layout (<scsi/sg.h>) on 64-bit
// Linux, where the kernel reads it field by field.
func TestSgIOHdrLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skipf("SKIPPED LOUDLY: offsets below are the 64-bit ABI; this is %s", runtime.GOARCH)
	}
	var h sgIOHdr
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"dxfer_direction", unsafe.Offsetof(h.dxferDirection), 4},
		{"cmd_len", unsafe.Offsetof(h.cmdLen), 8},
		{"mx_sb_len", unsafe.Offsetof(h.mxSbLen), 9},
		{"iovec_count", unsafe.Offsetof(h.iovecCount), 10},
		{"dxfer_len", unsafe.Offsetof(h.dxferLen), 12},
		{"dxferp", unsafe.Offsetof(h.dxferp), 16},
		{"cmdp", unsafe.Offsetof(h.cmdp), 24},
		{"sbp", unsafe.Offsetof(h.sbp), 32},
		{"timeout", unsafe.Offsetof(h.timeout), 40},
		{"flags", unsafe.Offsetof(h.flags), 44},
		{"pack_id", unsafe.Offsetof(h.packID), 48},
		{"usr_ptr", unsafe.Offsetof(h.usrPtr), 56},
		{"status", unsafe.Offsetof(h.status), 64},
		{"sb_len_wr", unsafe.Offsetof(h.sbLenWr), 67},
		{"host_status", unsafe.Offsetof(h.hostStatus), 68},
		{"driver_status", unsafe.Offsetof(h.driverStatus), 70},
		{"resid", unsafe.Offsetof(h.resid), 72},
		{"duration", unsafe.Offsetof(h.duration), 76},
		{"info", unsafe.Offsetof(h.info), 80},
		{"sizeof", unsafe.Sizeof(h), 88},
	} {
		if c.got != c.want {
			t.Errorf("%s at %d, want %d", c.name, c.got, c.want)
		}
	}
}
