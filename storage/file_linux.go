package storage

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// FileOptions say how to open a raw image.
type FileOptions struct {
	ReadOnly bool
	// Direct opens with O_DIRECT: the page cache is bypassed, and unaligned
	// requests go through aligned bounce buffers.
	Direct bool
	// Create makes a sparse image of this many bytes if none exists.
	Create int64
	// LogicalBlockSize: 512 (default) or 4096.
	LogicalBlockSize uint32
	// Lock: whom else the image is shared with while open.
	Lock Lock
}

// File is a raw disk image in a regular file.
type File struct {
	f    *os.File
	path string
	opt  FileOptions
	size int64
	pbs  uint32
	rot  uint16
	pool sync.Pool // aligned bounce buffers for O_DIRECT
}

// OpenFile opens (or, with opt.Create, creates sparse) a raw image, locked
// as opt.Lock says. An image another user holds is refused with ErrInUse
// before anything is changed; one OpenFile created is removed again.
func OpenFile(path string, opt FileOptions) (*File, error) {
	if opt.LogicalBlockSize == 0 {
		opt.LogicalBlockSize = 512
	}
	if opt.LogicalBlockSize != 512 && opt.LogicalBlockSize != 4096 {
		return nil, fmt.Errorf("storage: logical block size %d (want 512 or 4096)", opt.LogicalBlockSize)
	}
	if opt.Lock > LockShared {
		return nil, fmt.Errorf("storage: lock mode %d (want LockExclusive or LockShared)", opt.Lock)
	}
	flags := os.O_RDWR
	if opt.ReadOnly {
		flags = os.O_RDONLY
	}
	if opt.Direct {
		flags |= unix.O_DIRECT
	}
	f, err := os.OpenFile(path, flags, 0)
	created := false
	if errors.Is(err, os.ErrNotExist) && opt.Create > 0 && !opt.ReadOnly {
		f, err = os.OpenFile(path, flags|os.O_CREATE|os.O_EXCL, 0o644)
		created = err == nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open disk image: %w", err)
	}
	// fail undoes the open: a file this call created goes too.
	fail := func(err error) (*File, error) {
		f.Close()
		if created {
			os.Remove(path)
		}
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !st.Mode().IsRegular() {
		return fail(fmt.Errorf("storage: %s is not a regular file", path))
	}
	if err := lockImage(f, path, opt.ReadOnly, opt.Lock); err != nil {
		return fail(err)
	}
	if created {
		if err := f.Truncate(opt.Create); err != nil {
			return fail(fmt.Errorf("storage: size the new disk image: %w", err))
		}
		if st, err = f.Stat(); err != nil {
			return fail(err)
		}
	}
	if err := CheckImageSize(path, st.Size(), opt.LogicalBlockSize); err != nil {
		return fail(err)
	}
	size := st.Size()
	fl := &File{f: f, path: path, opt: opt, size: size, pbs: 4096, rot: RotationRateForPath(path)}
	var sfs unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &sfs) == nil && sfs.Bsize >= int64(opt.LogicalBlockSize) && sfs.Bsize <= 65536 {
		fl.pbs = uint32(sfs.Bsize)
	}
	fl.pool.New = func() any { return alignedBuffer(1 << 20) }
	return fl, nil
}

// CheckImageSize refuses an image file of size bytes that cannot be
// served whole with logicalBlockSize-byte sectors: 0 bytes, or a size
// with a partial last sector, whose bytes a guest could never read or
// write (rounding down would hide them without a word). The error is an
// *ImageSizeError.
func CheckImageSize(path string, size int64, logicalBlockSize uint32) error {
	if size == 0 || size%int64(logicalBlockSize) != 0 {
		return &ImageSizeError{Path: path, Size: size, SectorSize: int64(logicalBlockSize)}
	}
	return nil
}

// ImageSizeError is an image file whose size cannot be served; its text
// says how to fix the file.
type ImageSizeError struct {
	Path       string
	Size       int64 // 0, or not a multiple of SectorSize
	SectorSize int64
}

func (e *ImageSizeError) Error() string {
	if e.Size == 0 {
		return fmt.Sprintf("disk image %s is 0 bytes; give it a size with truncate -s SIZE %s", e.Path, e.Path)
	}
	tail := e.Size % e.SectorSize
	up := e.Size - tail + e.SectorSize
	return fmt.Sprintf("disk image %s is %d bytes, not a whole number of %d-byte sectors: its last %d bytes could never be read or written; extend it to %d bytes with truncate -s %d %s (zeros are added at its end)",
		e.Path, e.Size, e.SectorSize, tail, up, up, e.Path)
}

func (d *File) Info() Info {
	return Info{Size: d.size, LogicalBlockSize: d.opt.LogicalBlockSize, PhysicalBlockSize: max(d.pbs, d.opt.LogicalBlockSize),
		ReadOnly: d.opt.ReadOnly, RotationRate: d.rot, CanFlush: true, CanDiscard: !d.opt.ReadOnly,
		CanSecureDiscard: !d.opt.ReadOnly, DiscardZeroes: true, DiscardGranularity: 4096}
}

// aligned reports whether an O_DIRECT transfer can go straight through.
func (d *File) aligned(p []byte, off int64) bool {
	const a = 4096
	return !d.opt.Direct || off%512 == 0 && len(p)%512 == 0 && isAligned(p, a)
}

func (d *File) ReadAt(p []byte, off int64) (int, error) {
	if err := CheckRange(off, int64(len(p)), d.size); err != nil {
		return 0, err
	}
	if d.aligned(p, off) {
		return d.f.ReadAt(p, off)
	}
	return d.bounce(p, off, false)
}

func (d *File) WriteAt(p []byte, off int64) (int, error) {
	if d.opt.ReadOnly {
		return 0, ErrReadOnly
	}
	if err := CheckRange(off, int64(len(p)), d.size); err != nil {
		return 0, err
	}
	if d.aligned(p, off) {
		return d.f.WriteAt(p, off)
	}
	return d.bounce(p, off, true)
}

// bounce moves an unaligned O_DIRECT transfer through an aligned buffer,
// a megabyte at a time, read-modify-write at the ends for writes.
func (d *File) bounce(p []byte, off int64, write bool) (int, error) {
	buf := d.pool.Get().([]byte)
	defer d.pool.Put(buf)
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		start := pos &^ 511
		n := min(len(p)-done, len(buf)-int(pos-start))
		end := (pos + int64(n) + 511) &^ 511
		b := buf[:end-start]
		if write {
			if pos != start || (pos+int64(n))%512 != 0 {
				if _, err := d.f.ReadAt(b, start); err != nil {
					return done, err
				}
			}
			copy(b[pos-start:], p[done:done+n])
			if _, err := d.f.WriteAt(b, start); err != nil {
				return done, err
			}
		} else {
			if _, err := d.f.ReadAt(b, start); err != nil {
				return done, err
			}
			copy(p[done:done+n], b[pos-start:])
		}
		done += n
	}
	return done, nil
}

func (d *File) Flush() error { return unix.Fdatasync(int(d.f.Fd())) }

// Discard punches a hole: the range reads as zeros and its blocks are
// freed. For secure discard, a punched hole cannot be read back through
// the file; the freed blocks are the filesystem's to scrub.
func (d *File) Discard(off, n int64, secure bool) error {
	if d.opt.ReadOnly {
		return ErrReadOnly
	}
	if err := CheckRange(off, n, d.size); err != nil {
		return err
	}
	return unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

func (d *File) WriteZeroes(off, n int64) error {
	if d.opt.ReadOnly {
		return ErrReadOnly
	}
	if err := CheckRange(off, n, d.size); err != nil {
		return err
	}
	err := unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err == nil {
		return nil
	}
	return d.Discard(off, n, false)
}

func (d *File) Close() error { return d.f.Close() }

// SetRotationRate overrides the rotation rate read from sysfs (for a
// configured value, e.g. an image on a virtual disk known to be an SSD).
func (d *File) SetRotationRate(r uint16) { d.rot = r }

// SetPhysicalBlockSize overrides the physical block size read from the
// filesystem (a configured value: the image lives on 4K-sector storage).
// It must be a power of two from the logical block size to 64 KiB.
func (d *File) SetPhysicalBlockSize(n uint32) error {
	if n < d.opt.LogicalBlockSize || n > 65536 || n&(n-1) != 0 {
		return fmt.Errorf("storage: physical block size %d (want a power of two from %d to 65536)", n, d.opt.LogicalBlockSize)
	}
	d.pbs = n
	return nil
}

// Path is the image's path.
func (d *File) Path() string { return d.path }

// RotationRateForPath returns SBC's medium rotation rate for the device
// holding path: 1 when the kernel says it is non-rotational, 0 (not
// reported) when rotational or unknown (the kernel does not know the rpm).
// A partition answers for its whole disk.
func RotationRateForPath(path string) uint16 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	dev := st.Dev
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		dev = st.Rdev
	}
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(dev), unix.Minor(dev))
	for _, q := range []string{sys + "/queue/rotational", sys + "/../queue/rotational"} {
		b, err := os.ReadFile(q)
		if err != nil {
			continue
		}
		if r, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if r == 0 {
				return 1
			}
			return 0
		}
	}
	return 0
}

// maxIovecs is Linux's IOV_MAX: the most buffers one preadv/pwritev takes.
const maxIovecs = 1024

// ReadvAt reads into bufs from off with preadv. Under O_DIRECT, buffers
// that are not all aligned go one by one through the bounce path.
func (d *File) ReadvAt(bufs [][]byte, off int64) (int, error) {
	return d.vectored(bufs, off, false)
}

// WritevAt writes bufs at off with pwritev (see ReadvAt for O_DIRECT).
func (d *File) WritevAt(bufs [][]byte, off int64) (int, error) {
	if d.opt.ReadOnly {
		return 0, ErrReadOnly
	}
	return d.vectored(bufs, off, true)
}

func (d *File) vectored(bufs [][]byte, off int64, write bool) (int, error) {
	total := totalLen(bufs)
	if err := CheckRange(off, total, d.size); err != nil {
		return 0, err
	}
	if total == 0 {
		return 0, nil // nothing to move (preadv's 0 would read as a short transfer)
	}
	op := d.ReadAt
	if write {
		op = d.WriteAt
	}
	pos := off
	for _, b := range bufs {
		if !d.aligned(b, pos) {
			// O_DIRECT and some buffer is unaligned: the bounce path.
			return eachBuffer(op, d.size, bufs, off)
		}
		pos += int64(len(b))
	}
	fd := int(d.f.Fd())
	done := 0
	for len(bufs) > 0 {
		batch := bufs[:min(len(bufs), maxIovecs)]
		var n int
		var err error
		if write {
			n, err = unix.Pwritev(fd, batch, off+int64(done))
		} else {
			n, err = unix.Preadv(fd, batch, off+int64(done))
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("storage: %s: %w", d.path, err)
		}
		if n == 0 {
			return done, fmt.Errorf("storage: %s: short transfer at %d", d.path, off+int64(done))
		}
		done += n
		// Drop the buffers moved whole, trim a partly moved one.
		bufs = advance(bufs, n)
	}
	return done, nil
}

// advance drops n bytes from the front of bufs. It may reslice the first
// remaining buffer but never writes to the caller's slice of slices.
func advance(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if n > 0 {
		rest := make([][]byte, len(bufs))
		copy(rest, bufs)
		rest[0] = rest[0][n:]
		return rest
	}
	return bufs
}
