package uring

// Reap calls fn on every completion posted and not yet reaped, oldest
// first, then frees their slots for the kernel. fn must not keep the
// pointer. It returns how many completions it reaped.
func (r *Ring) Reap(fn func(*CQE)) int {
	if r.closed {
		return 0
	}
	head := r.cqHead.Load()
	tail := r.cqTail.Load() // the CQEs up to tail are written
	for h := head; h != tail; h++ {
		fn(&r.cqes[h&r.cqMask])
	}
	r.cqHead.Store(tail) // read; the kernel may reuse them
	r.inFlight -= tail - head
	return int(tail - head)
}

// Ready is the number of completions posted and not yet reaped.
func (r *Ring) Ready() int {
	if r.closed {
		return 0
	}
	return int(r.cqTail.Load() - r.cqHead.Load())
}
