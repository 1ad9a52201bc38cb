package uring

import "golang.org/x/sys/unix"

// NextSQE hands out the next free submission slot, zeroed, for the caller
// to fill (the Prep methods) before the next Submit. It returns nil when
// every slot holds an SQE the kernel has not consumed yet: submit, then
// ask again.
func (r *Ring) NextSQE() *SQE {
	if r.closed || r.sqeTail-r.sqHead.Load() >= uint32(len(r.sqes)) {
		return nil
	}
	sqe := &r.sqes[r.sqeTail&r.sqMask]
	*sqe = SQE{}
	r.sqeTail++
	return sqe
}

// Unsubmitted is the number of SQEs handed out that the kernel has not
// consumed yet.
func (r *Ring) Unsubmitted() int {
	if r.closed {
		return 0
	}
	return int(r.sqeTail - r.sqHead.Load())
}

// DropUnsubmitted takes back every SQE the kernel has not consumed,
// calling drop with each one's user data, oldest first. Sound because
// without SQPOLL the kernel reads the queue only inside io_uring_enter,
// and a Ring has one user.
func (r *Ring) DropUnsubmitted(drop func(userData uint64)) int {
	if r.closed {
		return 0
	}
	head := r.sqHead.Load()
	for t := head; t != r.sqeTail; t++ {
		drop(r.sqes[r.sqArray[t&r.sqMask]].UserData)
	}
	n := int(r.sqeTail - head)
	r.sqeTail = head
	r.sqTail.Store(head)
	return n
}

// The Prep methods fill an SQE for one operation. The memory an SQE
// points to (iovec arrays, buffers) is read or written by the kernel
// until the operation's completion is reaped: the caller keeps it alive
// and in place until then (Go heap objects are never moved; goroutine
// stacks are, so nothing on a stack may be passed).

func (s *SQE) prepRW(op uint8, fd int, a uint64, n int, off int64, userData uint64) {
	s.Opcode = op
	s.FD = int32(fd)
	s.Addr = a
	s.Len = uint32(n)
	s.Off = uint64(off)
	s.UserData = userData
}

// PrepReadv reads into the buffers iov describes from off.
func (s *SQE) PrepReadv(fd int, iov []unix.Iovec, off int64, userData uint64) {
	s.prepRW(OpReadv, fd, sliceAddr(iov), len(iov), off, userData)
}

// PrepWritev writes the buffers iov describes at off.
func (s *SQE) PrepWritev(fd int, iov []unix.Iovec, off int64, userData uint64) {
	s.prepRW(OpWritev, fd, sliceAddr(iov), len(iov), off, userData)
}

// PrepRead reads into buf from off.
func (s *SQE) PrepRead(fd int, buf []byte, off int64, userData uint64) {
	s.prepRW(OpRead, fd, sliceAddr(buf), len(buf), off, userData)
}

// PrepWrite writes buf at off.
func (s *SQE) PrepWrite(fd int, buf []byte, off int64, userData uint64) {
	s.prepRW(OpWrite, fd, sliceAddr(buf), len(buf), off, userData)
}

// PrepFsync makes fd's completed writes durable (fdatasync with datasync).
func (s *SQE) PrepFsync(fd int, datasync bool, userData uint64) {
	s.prepRW(OpFsync, fd, 0, 0, 0, userData)
	if datasync {
		s.OpFlags = FsyncDatasync
	}
}

// PrepNop completes at once with result 0.
func (s *SQE) PrepNop(userData uint64) {
	s.prepRW(OpNop, -1, 0, 0, 0, userData)
}
