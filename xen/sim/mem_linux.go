package sim

import (
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/mapguard"
	"github.com/xenblk/xenblk/xen"
)

// memory is one domain's simulated RAM: a memfd that grows as pages are
// handed out. Pages are identified by frame number (offset / PageSize),
// which is what grant entries carry. Any process holding the memfd can map
// any frame; the grant table is what says whether it may.
type memory struct {
	file *os.File

	mu     sync.Mutex
	frames uint32   // frames allocated so far (the file's size in pages)
	free   []uint32 // released frames, reused first
}

func newMemory(name string) (*memory, error) {
	fd, err := unix.MemfdCreate("xenblk-"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("sim: memfd_create: %w", err)
	}
	// Memory only grows: a domain shrinking its memfd under a mapper would
	// turn the mapper's next access into SIGBUS.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sim: seal domain memory: %w", err)
	}
	return &memory{file: os.NewFile(uintptr(fd), "memfd:"+name)}, nil
}

// memoryOf wraps a memfd received from the host; it may already hold pages.
func memoryOf(f *os.File) (*memory, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return &memory{file: f, frames: uint32(st.Size() / xen.PageSize)}, nil
}

// mapTable maps a grant-table memfd read-write. The table is as large as
// the file: the host chose its size (GrantFrames) and sealed it, so every
// process sees the same number of entries.
func mapTable(f *os.File) ([]byte, error) {
	var mem []byte
	var merr error
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	err = rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if merr = unix.Fstat(int(fd), &st); merr != nil {
			return
		}
		frames := st.Size / xen.PageSize
		if st.Size%xen.PageSize != 0 || frames < 1 || frames > MaxGrantFrames {
			merr = fmt.Errorf("grant table of %d bytes is not 1 to %d pages", st.Size, MaxGrantFrames)
			return
		}
		mem, merr = unix.Mmap(int(fd), 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	})
	if err == nil {
		err = merr
	}
	if err != nil {
		return nil, fmt.Errorf("sim: map grant table: %w", err)
	}
	return mem, nil
}

// alloc returns n frames, contiguous when they come from the file's end.
func (m *memory) alloc(n int) ([]uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]uint32, 0, n)
	// Contiguous fresh frames keep Grant's run contiguous in the file, so
	// one mmap maps it; reuse freed frames only for single pages.
	if n == 1 && len(m.free) > 0 {
		out = append(out, m.free[len(m.free)-1])
		m.free = m.free[:len(m.free)-1]
		return out, nil
	}
	if err := m.file.Truncate(int64(m.frames+uint32(n)) * xen.PageSize); err != nil {
		return nil, fmt.Errorf("sim: grow domain memory: %w", err)
	}
	for i := 0; i < n; i++ {
		out = append(out, m.frames+uint32(i))
	}
	m.frames += uint32(n)
	return out, nil
}

// release zeroes frames (so the next owner sees no stale data) and frees them.
func (m *memory) release(frames []uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range frames {
		// Punching a hole frees the page and makes it read back as zeros.
		_ = withFD(m.file, func(fd int) error {
			return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(f)*xen.PageSize, xen.PageSize)
		})
		m.free = append(m.free, f)
	}
}

// mapFrames maps frames of f into one contiguous range of our address
// space. It works on the descriptor under f's lock, so a concurrent Close
// (a domain being destroyed) makes it fail rather than map a reused
// descriptor.
func mapFrames(f *os.File, frames []uint32, write bool) ([]byte, error) {
	var mem []byte
	var merr error
	err := withFD(f, func(fd int) error {
		mem, merr = mapFrameRun(fd, frames, write)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: domain memory is gone: %v", xen.ErrBadGrant, err)
	}
	return mem, merr
}

// withFD is withFDs for one file, allocating nothing (a Map's path).
func withFD(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// withFDs runs fn with the raw descriptors of files, each held open
// (against concurrent Close) for fn's duration.
func withFDs(files []*os.File, fn func(fds []int) error) error {
	fds := make([]int, 0, len(files))
	var step func(i int) error
	step = func(i int) error {
		if i == len(files) {
			return fn(fds)
		}
		rc, err := files[i].SyscallConn()
		if err != nil {
			return err
		}
		var ferr error
		if err := rc.Control(func(fd uintptr) {
			fds = append(fds, int(fd))
			ferr = step(i + 1)
		}); err != nil {
			return err
		}
		return ferr
	}
	return step(0)
}

// mapFrameRun reserves a range, then maps each frame over it with MAP_FIXED.
func mapFrameRun(fd int, frames []uint32, write bool) ([]byte, error) {
	// A frame past the end of the file would map, then SIGBUS on access:
	// refuse it (the file never shrinks, see newMemory).
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("sim: stat domain memory: %w", err)
	}
	for _, f := range frames {
		if int64(f) >= st.Size/xen.PageSize {
			return nil, fmt.Errorf("%w: frame %d is outside the domain's memory", xen.ErrBadGrant, f)
		}
	}
	n := len(frames) * xen.PageSize
	reserve, err := unix.Mmap(-1, 0, n, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("sim: reserve %d bytes: %w", n, err)
	}
	prot := unix.PROT_READ
	if write {
		prot |= unix.PROT_WRITE
	}
	base := uintptr(unsafe.Pointer(&reserve[0]))
	for i, f := range frames {
		addr := base + uintptr(i*xen.PageSize)
		_, _, e := unix.Syscall6(unix.SYS_MMAP, addr, xen.PageSize, uintptr(prot),
			unix.MAP_SHARED|unix.MAP_FIXED, uintptr(fd), uintptr(f)*xen.PageSize)
		if e != 0 {
			_ = unix.Munmap(reserve)
			return nil, fmt.Errorf("sim: map frame %d: %w", f, e)
		}
	}
	return reserve, nil
}

// unmapFrames ends a mapping made by mapFrames. The range is retired
// (internal/mapguard), not handed back: a use of the slice after Unmap or
// Revoke faults in tests, instead of reaching whatever mmap would put at
// the address next, as it would on real Xen.
func unmapFrames(b []byte) error { return mapguard.Retire(b) }

// newMemfd makes a memfd of size bytes, sealed at that size: the other
// processes that map it take its size as given (a grant table's entries),
// and one that could shrink it would turn their next access into SIGBUS.
func newMemfd(name string, size int64) (*os.File, error) {
	fd, err := unix.MemfdCreate("xenblk-"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("sim: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("sim: size memfd: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("sim: seal memfd: %w", err)
	}
	return f, nil
}
