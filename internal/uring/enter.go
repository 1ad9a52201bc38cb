package uring

import "golang.org/x/sys/unix"

// SubmitAndWait publishes every SQE handed out, submits the ones the
// kernel has not consumed yet, and, with minComplete > 0, waits in the
// same io_uring_enter until at least minComplete completions are in the
// completion queue (counting ones posted earlier and not reaped). It
// returns the number of SQEs the kernel consumed.
//
// EINTR is retried (what is still unsubmitted is recounted from the
// kernel's head, so nothing is submitted twice). The kernel skips the wait
// when it consumes fewer SQEs than offered (one failed at submission);
// the caller reaps and calls again. EAGAIN and EBUSY come back to the
// caller: the kernel is short of resources or completions are backed up,
// so reap, Wait for some of what is in flight, and submit again.
func (r *Ring) SubmitAndWait(minComplete uint32) (int, error) {
	if r.closed {
		return 0, ErrClosed
	}
	r.sqTail.Store(r.sqeTail)
	var flags uint32
	if minComplete > 0 {
		flags = EnterGetEvents
	}
	submitted := 0
	for {
		pending := uint32(r.Unsubmitted())
		if pending == 0 && minComplete == 0 {
			return submitted, nil
		}
		n, err := r.enter(pending, minComplete, flags)
		r.inFlight += uint32(n)
		if err == unix.EINTR {
			continue
		}
		return submitted + n, err
	}
}

// Submit submits without waiting.
func (r *Ring) Submit() (int, error) { return r.SubmitAndWait(0) }

// Wait waits until at least minComplete completions are in the
// completion queue, submitting nothing.
func (r *Ring) Wait(minComplete uint32) error {
	if r.closed {
		return ErrClosed
	}
	for {
		_, err := r.enter(0, minComplete, EnterGetEvents)
		if err != unix.EINTR {
			return err
		}
	}
}

func (r *Ring) enter(toSubmit, minComplete, flags uint32) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
