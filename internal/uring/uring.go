// Package uring is a small io_uring wrapper in pure Go: set up a ring,
// prepare readv/writev/read/write/fsync SQEs, submit them and wait with
// one io_uring_enter, and reap completions by user_data.
//
// A Ring belongs to one goroutine at a time: nothing in it is locked. The
// indexes shared with the kernel are read and written with sync/atomic
// (sequentially consistent in Go, so at least the acquire/release the
// kernel's ring protocol asks for): the SQ tail is published after the
// SQEs are written, the CQ tail is loaded before the CQEs are read, and
// the CQ head is stored after they were read.
//
// No SQPOLL: the kernel reads the submission queue only inside
// io_uring_enter, which is what makes DropUnsubmitted sound.
package uring

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxEntries is the largest submission queue the kernel makes.
const MaxEntries = 32768

// ErrUnavailable: the kernel refused to make a ring (ENOSYS: no io_uring;
// EPERM/EACCES: io_uring_disabled or a seccomp policy).
var ErrUnavailable = errors.New("uring: io_uring is not available here")

// ErrClosed is returned by a closed Ring.
var ErrClosed = errors.New("uring: ring is closed")

// Ring is one io_uring instance: its fd and its three shared mappings.
type Ring struct {
	fd       int
	features uint32

	sqMem, cqMem, sqeMem []byte // cqMem aliases sqMem when singleMmap
	singleMmap           bool

	sqHead, sqTail *uint32 // the kernel consumes at head; we publish tail
	sqMask         uint32
	sqArray        []uint32 // slot i names SQE i, set once (identity)
	sqes           []SQE
	sqeTail        uint32 // SQEs handed out by NextSQE; published at enter

	cqHead, cqTail *uint32 // we consume at head; the kernel posts at tail
	cqMask         uint32
	cqes           []CQE

	closed bool
}

// New makes a ring with a submission queue of at least entries slots
// (the kernel rounds up to a power of two) and a completion queue twice
// that. Errors wrap ErrUnavailable when io_uring is not permitted here.
func New(entries uint32) (*Ring, error) {
	if entries == 0 || entries > MaxEntries {
		return nil, fmt.Errorf("uring: %d entries (want 1..%d)", entries, MaxEntries)
	}
	// SubmitAll and CoopTaskrun are wanted, not needed: kernels before
	// 5.18/5.19 refuse them with EINVAL, and then we do without.
	var p Params
	var fd int
	var err error
	for _, flags := range []uint32{SetupSubmitAll | SetupCoopTaskrun | SetupClamp, SetupClamp} {
		p = Params{Flags: flags}
		fd, err = setup(entries, &p)
		if err != unix.EINVAL {
			break
		}
	}
	switch err {
	case nil:
	case unix.ENOSYS, unix.EPERM, unix.EACCES:
		return nil, fmt.Errorf("%w: io_uring_setup: %v", ErrUnavailable, err)
	default:
		return nil, fmt.Errorf("uring: io_uring_setup(%d): %w", entries, err)
	}
	r := &Ring{fd: fd, features: p.Features}
	if err := r.mapRings(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func setup(entries uint32, p *Params) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// mapRings maps the SQ ring, the CQ ring (the same mapping when the
// kernel offers FeatSingleMmap) and the SQE array, and finds the fields.
func (r *Ring) mapRings(p *Params) error {
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_POPULATE
	sqSize := int(p.SQOff.Array) + int(p.SQEntries)*4
	cqSize := int(p.CQOff.CQEs) + int(p.CQEntries)*int(unsafe.Sizeof(CQE{}))
	r.singleMmap = p.Features&FeatSingleMmap != 0
	if r.singleMmap {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	if r.sqMem, err = unix.Mmap(r.fd, OffSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("uring: mmap SQ ring: %w", err)
	}
	if r.singleMmap {
		r.cqMem = r.sqMem
	} else if r.cqMem, err = unix.Mmap(r.fd, OffCQRing, cqSize, prot, flags); err != nil {
		return fmt.Errorf("uring: mmap CQ ring: %w", err)
	}
	sqeSize := int(p.SQEntries) * int(unsafe.Sizeof(SQE{}))
	if r.sqeMem, err = unix.Mmap(r.fd, OffSQEs, sqeSize, prot, flags); err != nil {
		return fmt.Errorf("uring: mmap SQEs: %w", err)
	}

	r.sqHead = word(r.sqMem, p.SQOff.Head)
	r.sqTail = word(r.sqMem, p.SQOff.Tail)
	r.sqMask = *word(r.sqMem, p.SQOff.RingMask)
	r.sqArray = unsafe.Slice(word(r.sqMem, p.SQOff.Array), p.SQEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.SQEntries)
	for i := range r.sqArray {
		r.sqArray[i] = uint32(i)
	}
	r.sqeTail = *r.sqTail

	r.cqHead = word(r.cqMem, p.CQOff.Head)
	r.cqTail = word(r.cqMem, p.CQOff.Tail)
	r.cqMask = *word(r.cqMem, p.CQOff.RingMask)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&r.cqMem[p.CQOff.CQEs])), p.CQEntries)
	return nil
}

// word is the 32-bit field at off in a ring mapping.
func word(mem []byte, off uint32) *uint32 {
	return (*uint32)(unsafe.Pointer(&mem[off]))
}

// SQEntries is the submission queue's size.
func (r *Ring) SQEntries() int { return len(r.sqes) }

// CQEntries is the completion queue's size.
func (r *Ring) CQEntries() int { return len(r.cqes) }

// Features are the kernel's FeatXxx bits for this ring.
func (r *Ring) Features() uint32 { return r.features }

// Close unmaps the rings and closes the fd; the kernel cancels what is
// still in flight. Closing twice is harmless.
func (r *Ring) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.sqHead, r.sqTail, r.cqHead, r.cqTail = nil, nil, nil, nil
	r.sqArray, r.sqes, r.cqes = nil, nil, nil
	var errs []error
	if r.sqeMem != nil {
		errs = append(errs, unix.Munmap(r.sqeMem))
	}
	if r.cqMem != nil && !r.singleMmap {
		errs = append(errs, unix.Munmap(r.cqMem))
	}
	if r.sqMem != nil {
		errs = append(errs, unix.Munmap(r.sqMem))
	}
	r.sqeMem, r.cqMem, r.sqMem = nil, nil, nil
	errs = append(errs, unix.Close(r.fd))
	r.fd = -1
	return errors.Join(errs...)
}
