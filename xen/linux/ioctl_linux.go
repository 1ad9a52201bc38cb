package linux

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues one ioctl whose argument is the buffer arg (nil: none) and
// returns the ioctl's non-negative return value (evtchn's binds return the
// port there). arg is always memory outside the Go heap or a Go slice the
// call keeps alive; the kernel never keeps the pointer past the call.
func ioctl(fd int, req uint, arg []byte) (int, error) {
	var p unsafe.Pointer
	if len(arg) > 0 {
		p = unsafe.Pointer(&arg[0])
	}
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(p))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(r), nil
	}
}
