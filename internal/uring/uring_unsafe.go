package uring

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/shmem"
)

// The code that turns the kernel's mappings into Go values, and Go
// memory into the addresses SQEs carry. The shared 32-bit indexes come
// from internal/shmem, checked against the mapping's bounds and
// alignment: their offsets are the kernel's, read from Params.

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

	words := []struct {
		p   **atomic.Uint32
		mem []byte
		off uint32
	}{
		{&r.sqHead, r.sqMem, p.SQOff.Head}, {&r.sqTail, r.sqMem, p.SQOff.Tail},
		{&r.cqHead, r.cqMem, p.CQOff.Head}, {&r.cqTail, r.cqMem, p.CQOff.Tail},
	}
	for _, w := range words {
		if *w.p, err = shmem.Uint32(w.mem, int(w.off)); err != nil {
			return fmt.Errorf("uring: %w", err)
		}
	}
	sqMask, err := shmem.Uint32(r.sqMem, int(p.SQOff.RingMask))
	if err != nil {
		return fmt.Errorf("uring: %w", err)
	}
	cqMask, err := shmem.Uint32(r.cqMem, int(p.CQOff.RingMask))
	if err != nil {
		return fmt.Errorf("uring: %w", err)
	}
	r.sqMask, r.cqMask = sqMask.Load(), cqMask.Load()
	if r.sqArray, err = shmem.Uint32s(r.sqMem, int(p.SQOff.Array), int(p.SQEntries)); err != nil {
		return fmt.Errorf("uring: %w", err)
	}
	for i := range r.sqArray {
		r.sqArray[i] = uint32(i)
	}
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.SQEntries)
	r.sqeTail = r.sqTail.Load()
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&r.cqMem[p.CQOff.CQEs])), p.CQEntries)
	return nil
}

// sliceAddr is the address of s's first element, as an SQE carries it.
func sliceAddr[T any](s []T) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(s)))) }
