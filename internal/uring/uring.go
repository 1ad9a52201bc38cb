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
	"sync/atomic"

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

	sqHead, sqTail *atomic.Uint32 // the kernel consumes at head; we publish tail
	sqMask         uint32
	sqArray        []uint32 // slot i names SQE i, set once (identity)
	sqes           []SQE
	sqeTail        uint32 // SQEs handed out by NextSQE; published at enter
	// inFlight counts the SQEs the kernel has consumed whose completions
	// have not been reaped: the operations that may still read or write
	// the memory their SQEs name.
	inFlight uint32

	cqHead, cqTail *atomic.Uint32 // we consume at head; the kernel posts at tail
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

// SQEntries is the submission queue's size.
func (r *Ring) SQEntries() int { return len(r.sqes) }

// CQEntries is the completion queue's size.
func (r *Ring) CQEntries() int { return len(r.cqes) }

// Features are the kernel's FeatXxx bits for this ring.
func (r *Ring) Features() uint32 { return r.features }

// Close waits for the operations in flight, then unmaps the rings and
// closes the fd. Closing twice is harmless.
//
// The wait is what makes Close safe for the memory those operations
// name: closing the fd does not stop them. The kernel cancels them in
// its own time, and one already running (in an io-wq worker) still
// copies into the buffer it was given, after Close would otherwise have
// returned and the caller given the buffer back (to Go's heap, or to the
// address space as an unmapped grant page that another mapping then
// takes). A Ring carries file and block-device I/O, which completes; the
// wait ends early only if io_uring_enter itself fails.
func (r *Ring) Close() error {
	if r.closed {
		return nil
	}
	for r.inFlight > 0 {
		if err := r.Wait(r.inFlight); err != nil {
			break
		}
		r.Reap(func(*CQE) {})
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
