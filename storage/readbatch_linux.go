package storage

import (
	"math"
	"os"
)

// NewReadBatch makes an io_uring batch of reads from f, for a device
// layered over a file (a qcow2 image's host file) that has resolved its
// own offsets to f's: any offset is taken (the layer above checked its
// range), writes are refused with ErrReadOnly, and what the ring cannot
// finish is read with pread. f stays the caller's: Close leaves it open.
// ErrNotSupported: the kernel will not make a ring here.
func NewReadBatch(f *os.File, ops, bufs int) (Batch, error) {
	return newRingBatch(ringTarget{dev: hostFile{f}, fd: int(f.Fd()), path: f.Name(), size: math.MaxInt64, readOnly: true}, ops, bufs)
}

// hostFile is the Device a read batch finishes its reads with: f's bytes
// at any offset, read-only, never closed by it.
type hostFile struct{ f *os.File }

func (h hostFile) ReadAt(p []byte, off int64) (int, error)  { return h.f.ReadAt(p, off) }
func (h hostFile) WriteAt(p []byte, off int64) (int, error) { return 0, ErrReadOnly }
func (h hostFile) Info() Info                               { return Info{Size: math.MaxInt64, ReadOnly: true} }
func (h hostFile) Flush() error                             { return nil }
func (h hostFile) Discard(off, n int64, secure bool) error  { return ErrReadOnly }
func (h hostFile) WriteZeroes(off, n int64) error           { return ErrReadOnly }
func (h hostFile) Close() error                             { return nil }
