// Package mapguard ends memory mappings without handing their addresses
// back at once. A mapping's range is replaced, in one mmap with MAP_FIXED
// (so nothing else can be mapped there in between), by inaccessible
// memory that stays reserved in a bounded quarantine; the oldest ranges
// are unmapped for good as newer ones arrive.
//
// Why: a slice kept past the end of its mapping (a grant mapping, granted
// pages, a staging area), or an address the kernel still writes through
// (an io_uring operation completing late), would otherwise reach whatever
// mmap puts at that address next: another grant mapping, or the Go
// runtime's own memory outside its heap (span structures, mark bits,
// which share the kernel's mmap area), and the process corrupts itself
// without a trace. Retired, the range faults: a SIGSEGV naming the
// address in Go, EFAULT in the kernel.
package mapguard

import (
	"runtime/debug"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Bounds of the quarantine: at most Ranges ranges and Bytes bytes stay
// reserved. Adjacent retired ranges merge into one kernel mapping, so
// Ranges bounds the kernel's map count loosely.
const (
	Ranges = 1024
	Bytes  = 256 << 20
)

// Retire ends the mapping b, which unix.Mmap returned (whole: its
// address and capacity are the mapping's): the range becomes
// inaccessible and is quarantined. If the range cannot be replaced it is
// unmapped at once, as unix.Munmap would.
func Retire(b []byte) error {
	if cap(b) == 0 {
		return nil
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	_, _, e := unix.Syscall6(unix.SYS_MMAP, addr, uintptr(cap(b)), unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE, ^uintptr(0), 0)
	if e != 0 {
		return unix.Munmap(b)
	}
	held.add(b[:cap(b)])
	return nil
}

// held is the process's quarantine.
var held quarantine

// quarantine is a ring of retired ranges, oldest at head. It allocates
// nothing: a retire on a hot path (a grant unmapped per request) costs
// one system call and one lock.
type quarantine struct {
	mu     sync.Mutex
	ranges [Ranges][]byte
	head   int // index of the oldest
	n      int
	bytes  int
}

func (q *quarantine) add(b []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n > 0 && (q.n == Ranges || q.bytes+len(b) > Bytes) {
		old := q.ranges[q.head]
		q.ranges[q.head] = nil
		q.head = (q.head + 1) % Ranges
		q.n--
		q.bytes -= len(old)
		_ = unix.Munmap(old)
	}
	q.ranges[(q.head+q.n)%Ranges] = b
	q.n++
	q.bytes += len(b)
}

// held reports how many ranges and bytes the quarantine keeps reserved.
func (q *quarantine) size() (ranges, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n, q.bytes
}

// Faults runs touch and reports whether it faulted (a memory access the
// kernel refused), as a use of a retired range does: tests check with it
// that a stale slice faults. debug.SetPanicOnFault is on for touch's
// goroutine while it runs.
func Faults(touch func()) (faulted bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			faulted = true
		}
	}()
	touch()
	return false
}
