package sim

import (
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/xen"
)

// windowFrames bounds the frames a copy window reaches: 16 GiB of a
// domain's memory, reserved as address space only (PROT_NONE, nothing
// committed) and filled as the memfd grows. A frame beyond it is copied
// through a one-page mapping instead, slowly but correctly.
const windowFrames = 1 << 22

// copyWindow is the hypervisor's view of one domain's memory for grant
// copy: as Xen copies through its own map of every guest's RAM, the
// mapping process copies through one shared mapping of the domain's memfd,
// never mapping or unmapping per operation. Copy reaches a page through it
// only between the acquire and release of the grant that names the page,
// so the window gives no access the grant table does not.
//
// Invariant: frames [0, mapped) of the reservation map the memfd's frames
// one to one; the rest of the reservation is PROT_NONE. mapped only grows,
// under grow; base is set once and cleared by close, under mu held
// exclusively, so a holder of mu's read lock may touch any frame below
// mapped.
type copyWindow struct {
	mu     sync.RWMutex
	base   []byte // the reservation, windowFrames pages; nil until reserved or once closed
	closed bool
	failed bool // reserving failed once: stay on the slow path

	grow   sync.Mutex
	mapped atomic.Uint32
}

// page returns frame's page through the window, with the read lock held
// (the caller unlocks it after the copy), or ok false (no lock held) when
// the window cannot reach it: the caller copies another way.
func (w *copyWindow) page(file *os.File, frame uint32) (p []byte, ok bool) {
	if frame >= windowFrames {
		return nil, false
	}
	w.mu.RLock()
	if w.base == nil {
		w.mu.RUnlock()
		if !w.reserve() {
			return nil, false
		}
		w.mu.RLock()
		if w.base == nil {
			w.mu.RUnlock()
			return nil, false
		}
	}
	if frame >= w.mapped.Load() && !w.extend(file, frame) {
		w.mu.RUnlock()
		return nil, false
	}
	off := int(frame) * xen.PageSize
	return w.base[off : off+xen.PageSize : off+xen.PageSize], true
}

// reserve makes the reservation, once; it reports whether there is one.
func (w *copyWindow) reserve() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.base != nil {
		return true
	}
	if w.closed || w.failed {
		return false
	}
	b, err := unix.Mmap(-1, 0, windowFrames*xen.PageSize, unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		w.failed = true
		return false
	}
	w.base = b
	return true
}

// extend maps the memfd's frames from mapped up to its current size (at
// most the window's) and reports whether frame is now reachable. It runs
// with the read lock held: the frames it maps were PROT_NONE, which no
// reader touches.
func (w *copyWindow) extend(file *os.File, frame uint32) bool {
	w.grow.Lock()
	defer w.grow.Unlock()
	from := w.mapped.Load()
	if frame < from {
		return true
	}
	var to uint32
	err := withFD(file, func(fd int) error {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		// The memfd never shrinks (newMemory seals it), so frames below
		// its size now stay backed.
		to = uint32(min(st.Size/xen.PageSize, windowFrames))
		if to <= from {
			return nil
		}
		addr := uintptr(unsafe.Pointer(&w.base[0])) + uintptr(from)*xen.PageSize
		_, _, e := unix.Syscall6(unix.SYS_MMAP, addr, uintptr(to-from)*xen.PageSize,
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED, uintptr(fd), uintptr(from)*xen.PageSize)
		if e != 0 {
			return e
		}
		return nil
	})
	if err != nil || to <= from {
		return false
	}
	w.mapped.Store(to)
	return frame < to
}

// close unmaps the window once no copy is using it; later copies take the
// slow path (which fails, the domain's memory being gone).
func (w *copyWindow) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.base != nil {
		_ = unix.Munmap(w.base)
		w.base = nil
	}
}
