package sgio

import (
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/scsi"
)

// sgIOHdr is struct sg_io_hdr from <scsi/sg.h>. Go's natural alignment
// gives the C layout on every Linux ABI (88 bytes on 64-bit).
type sgIOHdr struct {
	interfaceID    int32
	dxferDirection int32
	cmdLen         uint8
	mxSbLen        uint8
	iovecCount     uint16
	dxferLen       uint32
	dxferp         unsafe.Pointer
	cmdp           unsafe.Pointer
	sbp            unsafe.Pointer
	timeout        uint32 // milliseconds
	flags          uint32
	packID         int32
	usrPtr         unsafe.Pointer
	status         uint8
	maskedStatus   uint8
	msgStatus      uint8
	sbLenWr        uint8
	hostStatus     uint16
	driverStatus   uint16
	resid          int32
	duration       uint32
	info           uint32
}

const (
	sgIO          = 0x2285
	sgDxferNone   = -1
	sgDxferToDev  = -2
	sgDxferFromDv = -3
)

// Disk is a whole SCSI disk opened for SG_IO.
type Disk struct {
	f    *os.File
	name string
}

// Open opens path for pass-through, refusing anything that is not a whole
// sd disk: files, partitions, device-mapper/LVM volumes, loop devices.
func Open(path string) (*Disk, error) {
	return openChecked(path, "/sys")
}

func openChecked(path, sysfs string) (*Disk, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("sgio: %w", err)
	}
	// Check the opened file, not the path, so a rename cannot swap it.
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("sgio: stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a block device; files only get emulated SCSI", ErrNotWholeDisk, path)
	}
	if err := checkWholeSCSIDisk(sysfs, path, unix.Major(st.Rdev), unix.Minor(st.Rdev)); err != nil {
		f.Close()
		return nil, err
	}
	return &Disk{f: f, name: path}, nil
}

// SGIO issues one request with the SG_IO ioctl.
func (d *Disk) SGIO(r *Request) error {
	if len(r.CDB) == 0 || len(r.CDB) > 255 || len(r.Sense) > 255 {
		return fmt.Errorf("sgio: bad request: CDB %d bytes, sense buffer %d", len(r.CDB), len(r.Sense))
	}
	h := sgIOHdr{
		interfaceID: 'S',
		cmdLen:      uint8(len(r.CDB)),
		mxSbLen:     uint8(len(r.Sense)),
		cmdp:        unsafe.Pointer(&r.CDB[0]),
		timeout:     uint32(r.Timeout / time.Millisecond),
	}
	switch {
	case len(r.Data) == 0 || r.Dir == scsi.DirNone:
		h.dxferDirection = sgDxferNone
	case r.Dir == scsi.DirToDevice:
		h.dxferDirection = sgDxferToDev
	default:
		h.dxferDirection = sgDxferFromDv
	}
	if h.dxferDirection != sgDxferNone {
		h.dxferLen = uint32(len(r.Data))
		h.dxferp = unsafe.Pointer(&r.Data[0])
	}
	if len(r.Sense) > 0 {
		h.sbp = unsafe.Pointer(&r.Sense[0])
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, d.f.Fd(), sgIO, uintptr(unsafe.Pointer(&h)))
	runtime.KeepAlive(r)
	if errno != 0 {
		return fmt.Errorf("sgio: SG_IO on %s: %w", d.name, errno)
	}
	r.Status = h.status
	r.HostStatus = h.hostStatus
	r.DriverStatus = h.driverStatus
	r.SenseLen = int(h.sbLenWr)
	r.Resid = int(h.resid)
	return nil
}

// Close closes the disk.
func (d *Disk) Close() error { return d.f.Close() }
