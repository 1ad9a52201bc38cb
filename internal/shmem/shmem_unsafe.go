// Package shmem is the one place that turns bytes of shared memory into
// 32-bit words for atomic access: a ring's indexes (another domain writes
// them), io_uring's heads and tails (the kernel does), the simulated
// host's grant-table and event-channel words and blkback's journal header
// (other processes do). Every other package reads and writes such words
// through the *atomic.Uint32 it returns, so none of them needs unsafe.
//
// A word must lie wholly inside the slice and be 4-byte aligned in the
// address space (atomic instructions fault or tear on unaligned words on
// some architectures). Both are checked once, when the word is resolved;
// callers on a hot path resolve their words at setup and keep the
// pointers, so an access costs one atomic instruction and no check.
package shmem

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Uint32 returns the 32-bit word at byte offset off of mem. It fails when
// the word is not wholly inside mem or not 4-byte aligned: use it where
// the memory or the offset comes from outside (a mapping, the kernel's
// offsets, a caller's slice).
func Uint32(mem []byte, off int) (*atomic.Uint32, error) {
	if off < 0 || off > len(mem)-4 {
		return nil, fmt.Errorf("shmem: 32-bit word at offset %d is outside %d bytes", off, len(mem))
	}
	p := unsafe.Pointer(&mem[off])
	if uintptr(p)%4 != 0 {
		return nil, fmt.Errorf("shmem: 32-bit word at offset %d (address %p) is not 4-byte aligned", off, p)
	}
	return (*atomic.Uint32)(p), nil
}

// MustUint32 is Uint32 for offsets the caller computed from its own
// layout inside memory it mapped itself: a failure is a bug, and panics.
func MustUint32(mem []byte, off int) *atomic.Uint32 {
	w, err := Uint32(mem, off)
	if err != nil {
		panic(err)
	}
	return w
}

// Uint32s returns the n 32-bit words from byte offset off of mem as a
// slice, for arrays that are written once before they are shared (not
// atomically): io_uring's submission-queue index array. The same checks
// as Uint32, over the whole array.
func Uint32s(mem []byte, off, n int) ([]uint32, error) {
	if n < 0 || off < 0 || off > len(mem) || n > (len(mem)-off)/4 {
		return nil, fmt.Errorf("shmem: %d 32-bit words at offset %d are outside %d bytes", n, off, len(mem))
	}
	if n == 0 {
		return nil, nil
	}
	p := unsafe.Pointer(&mem[off])
	if uintptr(p)%4 != 0 {
		return nil, fmt.Errorf("shmem: 32-bit words at offset %d (address %p) are not 4-byte aligned", off, p)
	}
	return unsafe.Slice((*uint32)(p), n), nil
}
