// Package storage is the interface between xenblk's drivers and the bytes
// behind a virtual disk: a file, a block device, memory, a remote NBD
// server, or a frontend's view of a Xen disk. Implementations live in
// subpackages or in this package; storage/storagetest holds the conformance
// suite every implementation must pass.
package storage

import (
	"errors"
	"io"
)

// Errors implementations return (wrapped with detail), testable with errors.Is.
var (
	ErrReadOnly     = errors.New("storage: device is read-only")
	ErrOutOfRange   = errors.New("storage: access beyond the end of the device")
	ErrNotSupported = errors.New("storage: operation not supported by this device")
)

// Info describes a device. Size and block sizes are in bytes.
type Info struct {
	Size              int64
	LogicalBlockSize  uint32 // 512 or 4096
	PhysicalBlockSize uint32 // >= LogicalBlockSize
	ReadOnly          bool
	// RotationRate follows SBC's B1 VPD page: 0 unknown, 1 non-rotational,
	// otherwise revolutions per minute.
	RotationRate uint16
	Removable    bool
	CDROM        bool

	CanFlush         bool // there is a volatile cache that Flush empties
	CanDiscard       bool
	CanSecureDiscard bool
	// DiscardZeroes: a discarded range reads back as zeros afterwards.
	DiscardZeroes      bool
	DiscardGranularity uint32 // bytes; 0 means LogicalBlockSize
	DiscardAlignment   uint32 // bytes
}

// Device is a random-access array of bytes with a block device's extra
// operations. All methods are safe for concurrent use. Offsets and lengths
// passed to ReadAt/WriteAt need not be block-aligned; the range must lie
// within [0, Size) or the call fails with ErrOutOfRange and touches nothing.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Info may change over the device's life (online resize).
	Info() Info
	// Flush makes every completed write durable.
	Flush() error
	// Discard tells the device that [off, off+n) is unused. With secure,
	// the data must be irrecoverable afterwards (BLKSECDISCARD).
	// Returns ErrNotSupported when the device cannot.
	Discard(off, n int64, secure bool) error
	// WriteZeroes makes [off, off+n) read as zeros, efficiently if it can.
	WriteZeroes(off, n int64) error
	Close() error
}

// CheckRange reports whether [off, off+n) lies within a device of size
// bytes, without overflow. It is the single bounds check every
// implementation uses.
func CheckRange(off, n, size int64) error {
	if off < 0 || n < 0 || off > size || n > size-off {
		return ErrOutOfRange
	}
	return nil
}

// Vectored is an optional interface: a device that moves several buffers
// in one call (File: preadv/pwritev). The contract is ReadAt/WriteAt's on
// the buffers' concatenation, which must lie within the device; a short
// count comes with an error.
type Vectored interface {
	ReadvAt(bufs [][]byte, off int64) (int, error)
	WritevAt(bufs [][]byte, off int64) (int, error)
}

// ReadvAt reads into bufs from off, in one call when dev is Vectored and
// buffer by buffer otherwise.
func ReadvAt(dev Device, bufs [][]byte, off int64) (int, error) {
	if v, ok := dev.(Vectored); ok {
		return v.ReadvAt(bufs, off)
	}
	return eachBuffer(dev.ReadAt, dev.Info().Size, bufs, off)
}

// WritevAt writes bufs at off, in one call when dev is Vectored and buffer
// by buffer otherwise.
func WritevAt(dev Device, bufs [][]byte, off int64) (int, error) {
	if v, ok := dev.(Vectored); ok {
		return v.WritevAt(bufs, off)
	}
	return eachBuffer(dev.WriteAt, dev.Info().Size, bufs, off)
}

// totalLen is the length of bufs' concatenation, or -1 if it overflows.
func totalLen(bufs [][]byte) int64 {
	var n int64
	for _, b := range bufs {
		if n += int64(len(b)); n < 0 {
			return -1
		}
	}
	return n
}

// eachBuffer checks the whole range once, then moves buffer by buffer.
func eachBuffer(op func([]byte, int64) (int, error), size int64, bufs [][]byte, off int64) (int, error) {
	if err := CheckRange(off, totalLen(bufs), size); err != nil {
		return 0, err
	}
	done := 0
	for _, b := range bufs {
		n, err := op(b, off+int64(done))
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}
