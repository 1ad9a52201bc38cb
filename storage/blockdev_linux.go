package storage

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BlockDev is a Linux block device (/dev/sdX, a partition, an LV, a loop
// device) served as a disk: size and sector sizes from the kernel, flush
// with fdatasync, discard with BLKDISCARD / BLKSECDISCARD, zeroing with
// BLKZEROOUT.
type BlockDev struct {
	f        *os.File
	path     string
	readOnly bool
	size     int64
	lbs, pbs uint32
	rot      uint16
	discard  bool
}

// BlockDevOptions say how to open a block device.
type BlockDevOptions struct {
	ReadOnly bool
	// Lock: whom else the device is shared with while open.
	Lock Lock
}

// OpenBlockDev opens path, which must be a block device, locked as
// opt.Lock says (the lock is on the device node: another node of the same
// device is another file to the kernel's locks).
func OpenBlockDev(path string, opt BlockDevOptions) (*BlockDev, error) {
	if opt.Lock > LockShared {
		return nil, fmt.Errorf("storage: lock mode %d (want LockExclusive or LockShared)", opt.Lock)
	}
	readOnly := opt.ReadOnly
	flags := os.O_RDWR
	if readOnly {
		flags = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("storage: open block device: %w", err)
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		f.Close()
		return nil, fmt.Errorf("storage: %s is not a block device", path)
	}
	if err := lockImage(f, path, readOnly, opt.Lock); err != nil {
		f.Close()
		return nil, err
	}
	fd := int(f.Fd())
	var size uint64
	if err := ioctlPtr(fd, unix.BLKGETSIZE64, unsafe.Pointer(&size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("storage: BLKGETSIZE64 %s: %w", path, err)
	}
	lbs, err := unix.IoctlGetInt(fd, unix.BLKSSZGET)
	if err != nil {
		lbs = 512
	}
	pbs, err := unix.IoctlGetInt(fd, unix.BLKPBSZGET)
	if err != nil || pbs < lbs {
		pbs = lbs
	}
	if lbs != 512 && lbs != 4096 {
		f.Close()
		return nil, fmt.Errorf("storage: %s has %d-byte sectors; blkif serves 512 or 4096", path, lbs)
	}
	d := &BlockDev{f: f, path: path, readOnly: readOnly, size: int64(size), lbs: uint32(lbs), pbs: uint32(pbs),
		rot: RotationRateForPath(path), discard: !readOnly}
	return d, nil
}

func ioctlPtr(fd int, req uint, p unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(p))
	if e != 0 {
		return e
	}
	return nil
}

func (d *BlockDev) Info() Info {
	return Info{Size: d.size, LogicalBlockSize: d.lbs, PhysicalBlockSize: d.pbs, ReadOnly: d.readOnly,
		RotationRate: d.rot, CanFlush: true, CanDiscard: d.discard, CanSecureDiscard: d.discard,
		DiscardGranularity: d.pbs}
}

func (d *BlockDev) ReadAt(p []byte, off int64) (int, error) {
	if err := CheckRange(off, int64(len(p)), d.size); err != nil {
		return 0, err
	}
	return d.f.ReadAt(p, off)
}

func (d *BlockDev) WriteAt(p []byte, off int64) (int, error) {
	if d.readOnly {
		return 0, ErrReadOnly
	}
	if err := CheckRange(off, int64(len(p)), d.size); err != nil {
		return 0, err
	}
	return d.f.WriteAt(p, off)
}

// NewBatch makes an io_uring batch on the device, the one a File uses:
// one submission per batch instead of a pread or pwrite per operation.
// ErrNotSupported when the kernel will not make a ring here.
func (d *BlockDev) NewBatch(ops, bufs int) (Batch, error) {
	return newRingBatch(ringTarget{dev: d, fd: int(d.f.Fd()), path: d.path, size: d.size, readOnly: d.readOnly}, ops, bufs)
}

func (d *BlockDev) Flush() error { return unix.Fdatasync(int(d.f.Fd())) }

func (d *BlockDev) rangeIoctl(req uint, off, n int64) error {
	if d.readOnly {
		return ErrReadOnly
	}
	if err := CheckRange(off, n, d.size); err != nil {
		return err
	}
	r := [2]uint64{uint64(off), uint64(n)}
	if err := ioctlPtr(int(d.f.Fd()), req, unsafe.Pointer(&r)); err != nil {
		if err == unix.EOPNOTSUPP || err == unix.ENOTTY || err == unix.EINVAL {
			return fmt.Errorf("%w: %v", ErrNotSupported, err)
		}
		return err
	}
	return nil
}

// Discard issues BLKDISCARD, or BLKSECDISCARD when secure.
func (d *BlockDev) Discard(off, n int64, secure bool) error {
	if secure {
		return d.rangeIoctl(unix.BLKSECDISCARD, off, n)
	}
	return d.rangeIoctl(unix.BLKDISCARD, off, n)
}

// WriteZeroes issues BLKZEROOUT for the whole sectors of the range and
// writes zeros into the partial sectors at its ends.
func (d *BlockDev) WriteZeroes(off, n int64) error {
	if d.readOnly {
		return ErrReadOnly
	}
	if err := CheckRange(off, n, d.size); err != nil {
		return err
	}
	ss := int64(d.lbs)
	start, end := (off+ss-1)/ss*ss, (off+n)/ss*ss
	if end <= start {
		_, err := d.WriteAt(make([]byte, n), off)
		return err
	}
	if start > off {
		if _, err := d.WriteAt(make([]byte, start-off), off); err != nil {
			return err
		}
	}
	if off+n > end {
		if _, err := d.WriteAt(make([]byte, off+n-end), end); err != nil {
			return err
		}
	}
	return d.rangeIoctl(unix.BLKZEROOUT, start, end-start)
}

func (d *BlockDev) Close() error { return d.f.Close() }

// Path is the device's path.
func (d *BlockDev) Path() string { return d.path }

// Open opens a path as a disk, locked LockExclusive: a block device as
// BlockDev, anything else as a raw image File.
func Open(path string, readOnly bool) (Device, error) {
	st, err := os.Stat(path)
	if err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0 {
		return OpenBlockDev(path, BlockDevOptions{ReadOnly: readOnly})
	}
	return OpenFile(path, FileOptions{ReadOnly: readOnly})
}
