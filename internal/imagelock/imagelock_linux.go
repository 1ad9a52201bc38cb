// Package imagelock keeps two processes (or two vbds of one process) from
// writing one disk image at once, with open file description locks
// (F_OFD_SETLK) on an image's bytes used as permission bits. The byte
// layout is QEMU's (since 2.10), so QEMU and xenblk see each other's
// locks: byte 100+p is read-locked by every user that holds permission p,
// byte 200+p by every user that refuses to share p with others. The locks
// are advisory (they never block I/O) and belong to the open file
// description: closing the file releases them, a dup or a forked child
// keeps them, and two separate opens in one process conflict like two
// processes do.
//
// The permissions and what each mode takes:
//
//	permission p:       0 read  1 write  2 write-unchanged  3 resize
//	mode                holds (100+p)   refuses (200+p)
//	read-write          read, write     read, write, write-unchanged, resize
//	read-only           read            write, resize
//	shared read-write   read, write     resize
//	shared read-only    read            resize
//
// Which modes may open one image together (a newcomer is refused when it
// holds a permission a present user refuses, or refuses one a present user
// holds — whichever of the two came first):
//
//	                    read-write  read-only  shared rw  shared ro
//	read-write          no          no         no         no
//	read-only           no          yes        no         yes
//	shared read-write   no          no         yes        yes
//	shared read-only    no          yes        yes        yes
//
// So a read-write user is alone; readers share with readers; a disk that
// guests share on purpose (a cluster disk fenced with persistent
// reservations) is opened shared by all its users, and none that is not
// shared may join them, nor they it. Nobody resizes an image in use.
//
// A lock is taken first and checked second: two openers racing may both
// be refused, never both admitted.
package imagelock

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mode is how an opener uses an image.
type Mode struct {
	Write  bool // opened read-write
	Shared bool // tolerates other shared users, writers included
}

func (m Mode) String() string {
	s := "read-only"
	if m.Write {
		s = "read-write"
	}
	if m.Shared {
		s = "shared " + s
	}
	return s
}

// Permission bits, and the bytes that stand for them.
const (
	permRead           = 0 // a consistent view of the data
	permWrite          = 1
	permWriteUnchanged = 2 // writes that leave the data as it was (a mirror's)
	permResize         = 3
	numPerms           = 4

	holdBase = 100 // byte holdBase+p: some user holds p
	denyBase = 200 // byte denyBase+p: some user refuses to share p
)

// perms returns the permissions m holds and those it refuses to others,
// as bit sets (bit p is permission p); the table in the package comment.
func (m Mode) perms() (hold, deny uint8) {
	hold = 1 << permRead
	if m.Write {
		hold |= 1 << permWrite
	}
	deny = 1 << permResize
	switch {
	case m.Shared:
	case m.Write:
		deny = 1<<numPerms - 1
	default:
		deny |= 1 << permWrite
	}
	return hold, deny
}

// ErrInUse is what an *InUseError is.
var ErrInUse = errors.New("disk image in use")

// ErrUnsupported: the file system keeps no locks (some network and FUSE
// file systems), so this image cannot be locked at all.
var ErrUnsupported = errors.New("file system does not support open file description locks")

// InUseError says that an image could not be locked in Mode because
// other users hold it.
type InUseError struct {
	Path    string
	Mode    Mode
	Holders []Holder // the users found in /proc; none when they are not visible from here
}

// Holder is a process whose locks on the image conflict with the
// would-be opener's.
type Holder struct {
	PID     int
	Command string // its /proc/PID/comm
	Self    bool   // this process (another open of the same image)
	Mode    Mode   // what its locks say it does
	Whole   bool   // it write-locks the image outright (a tool outside this scheme)
}

func (h Holder) String() string {
	who := fmt.Sprintf("pid %d (%s)", h.PID, h.Command)
	if h.Self {
		who = fmt.Sprintf("pid %d (this process, another open of it)", h.PID)
	}
	if h.Whole {
		return who + " holds a write lock on it"
	}
	return who + " has it open " + h.Mode.String()
}

func (e *InUseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "disk image %s is in use: ", e.Path)
	if len(e.Holders) == 0 {
		fmt.Fprintf(&b, "another open file locks it (its process is not visible from here, and it did not let go within %v)", invisibleHolderGrace)
	}
	for i, h := range e.Holders {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(h.String())
	}
	fmt.Fprintf(&b, "; it cannot also be opened %s (stop the other user, or use another image)", e.Mode)
	return b.String()
}

func (e *InUseError) Is(target error) bool { return target == ErrInUse }

// Acquire locks the image open as f (path names it in errors) for mode m.
// The locks last as long as f's open file description. On a conflict it
// returns an *InUseError and leaves no lock behind; on a file system
// without locks, an error wrapping ErrUnsupported.
//
// A conflicting lock whose holder no process shows in /proc is most often
// an open file description outliving its process: a killed backend's
// io_uring drops its files only when its in-flight requests are done,
// after the process is gone (also a descriptor in flight in a unix
// socket). So a conflict with no visible holder is tried again for up to
// invisibleHolderGrace before it is reported: a backend restarted at once
// after a kill -9 must not find its own image "in use" by its dead self.
func Acquire(f *os.File, path string, m Mode) error {
	deadline := time.Now().Add(invisibleHolderGrace)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := acquireOnce(f, path, m)
		var inUse *InUseError
		if !errors.As(err, &inUse) || len(inUse.Holders) > 0 || time.Now().After(deadline) {
			return err
		}
		if retryHook != nil {
			retryHook()
		}
		time.Sleep(wait) // no event tells when a dead process's file goes: poll, bounded
	}
}

// invisibleHolderGrace bounds how long Acquire waits for a holder that no
// process shows; retryHook (tests) runs before each wait.
var (
	invisibleHolderGrace = 10 * time.Second
	retryHook            func()
)

func acquireOnce(f *os.File, path string, m Mode) error {
	hold, deny := m.perms()
	fd := f.Fd()
	var conflicts []int64
	try := func(byteAt int64) error {
		lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: byteAt, Len: 1}
		err := unix.FcntlFlock(fd, unix.F_OFD_SETLK, &lk)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			conflicts = append(conflicts, byteAt)
			return nil
		}
		return err
	}
	// Take every byte first, then look for the opposite ones: of two
	// openers racing, the later checker sees the earlier taker.
	var err error
	for p := 0; p < numPerms && err == nil; p++ {
		if hold&(1<<p) != 0 {
			err = try(holdBase + int64(p))
		}
		if err == nil && deny&(1<<p) != 0 {
			err = try(denyBase + int64(p))
		}
	}
	if err != nil {
		release(fd)
		if errors.Is(err, unix.ENOLCK) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("lock %s: %w (%v)", path, ErrUnsupported, err)
		}
		return fmt.Errorf("lock %s: %w", path, err)
	}
	for p := 0; p < numPerms; p++ {
		if hold&(1<<p) != 0 && lockedByOthers(fd, denyBase+int64(p)) {
			conflicts = append(conflicts, denyBase+int64(p))
		}
		if deny&(1<<p) != 0 && lockedByOthers(fd, holdBase+int64(p)) {
			conflicts = append(conflicts, holdBase+int64(p))
		}
	}
	if len(conflicts) == 0 {
		return nil
	}
	release(fd)
	return &InUseError{Path: path, Mode: m, Holders: findHolders(f, conflicts)}
}

// lockedByOthers reports whether another open file description locks the
// byte at off (F_OFD_GETLK ignores the asker's own locks).
func lockedByOthers(fd uintptr, off int64) bool {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	if err := unix.FcntlFlock(fd, unix.F_OFD_GETLK, &lk); err != nil {
		return false // the byte was just locked by us, so the call cannot fail but by the fd's closing
	}
	return lk.Type != unix.F_UNLCK
}

// release drops every lock Acquire may have taken on fd.
func release(fd uintptr) {
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: holdBase, Len: denyBase + numPerms - holdBase}
	_ = unix.FcntlFlock(fd, unix.F_OFD_SETLK, &lk)
}
