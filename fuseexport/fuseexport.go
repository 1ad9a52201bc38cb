// Package fuseexport exposes a storage.Device as one regular file in a FUSE
// mount, so that ordinary tools (dd, losetup, qemu-img, mkfs on a loop
// device) can use a xenblk disk.
//
// Invariants:
//   - the file's size is the device's size; it can be neither grown nor
//     truncated, and a write is cut at the end of the device (a short
//     write; ENOSPC when it starts at or past the end);
//   - every open is FOPEN_DIRECT_IO: the kernel keeps no page cache of the
//     file, so what a reader sees is what the device holds, even when the
//     device changes under the mount (another export, the guest);
//   - fsync is Flush; fallocate PUNCH_HOLE is Discard (or WriteZeroes when
//     the device's discard does not zero), ZERO_RANGE is WriteZeroes;
//   - a read-only device (or Options.ReadOnly) gives a 0444 file that
//     refuses opens for writing with EROFS;
//   - the file's times start when the export is mounted; a write moves
//     its mtime (and ctime) on;
//   - every open is counted until its release, so that a caller can tell
//     whether someone (a process, a loop device) still holds the file
//     before it takes the disk away (Export.Handles).
package fuseexport

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/xenblk/xenblk/storage"
)

// Options tune a mount.
type Options struct {
	// ReadOnly exports the file read-only even if the device is writable.
	ReadOnly bool
	// Debug logs every FUSE request to stderr.
	Debug bool
}

// Export is one mounted disk file.
type Export struct {
	// Dir is the mount point; Path is the disk file inside it.
	Dir, Path string
	server    *fuse.Server
	file      *diskFile
}

// maxIO is the largest read or write the kernel sends in one request; a
// megabyte would not fit the splice pipe (1 MiB with the header).
const maxIO = 512 << 10

// Mount mounts a filesystem at dir holding one file, name, backed by dev.
// The caller keeps ownership of dev (Unmount does not close it).
func Mount(dir, name string, dev storage.Device, opt Options) (*Export, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return nil, fmt.Errorf("fuseexport: file name %q: want one path component", name)
	}
	disk := &diskFile{dev: dev, readOnly: opt.ReadOnly || dev.Info().ReadOnly, started: time.Now(), changed: make(chan struct{})}
	disk.modified.Store(disk.started.UnixNano())
	root := &fs.Inode{}
	server, err := fs.Mount(dir, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:      "xenblk",
			Name:        "xenblk",
			MaxWrite:    maxIO,
			DirectMount: true,
			Debug:       opt.Debug,
		},
		OnAdd: func(ctx context.Context) {
			root.AddChild(name, root.NewPersistentInode(ctx, disk, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2}), false)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("fuseexport: mount %s: %w (is /dev/fuse present and fuse3 installed?)", dir, err)
	}
	return &Export{Dir: dir, Path: filepath.Join(dir, name), server: server, file: disk}, nil
}

// Handles reports how many opens of the file have not been released yet
// (a loop device holds one for as long as it is set up; a filesystem
// mounted on the file through mount -o loop, the same) and returns a
// channel closed at the next change of that number.
func (e *Export) Handles() (int, <-chan struct{}) {
	f := e.file
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.handles, f.changed
}

// Detach unmounts lazily (MNT_DETACH): the file leaves the namespace at
// once even while it is held, and whoever holds it gets errors once the
// server stops (at the latest when this process exits). It does not wait
// for the server. For a teardown the user forced.
func (e *Export) Detach() error {
	if err := syscall.Unmount(e.Dir, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("fuseexport: unmount %s: %w", e.Dir, err)
	}
	return nil
}

// Unmount detaches the mount and waits until the server has stopped. It
// fails (and leaves the mount in place) while the file is busy, for example
// held by a loop device.
func (e *Export) Unmount() error {
	if err := e.server.Unmount(); err != nil {
		return fmt.Errorf("fuseexport: unmount %s: %w", e.Dir, err)
	}
	e.server.Wait()
	return nil
}

// diskFile is the one file. It has no per-open state: the node itself
// serves reads and writes, and the device is safe for concurrent use.
type diskFile struct {
	fs.Inode
	dev      storage.Device
	readOnly bool
	started  time.Time
	modified atomic.Int64 // Unix nanoseconds of the last write

	mu      sync.Mutex
	handles int           // opens not yet released
	changed chan struct{} // closed (and replaced) when handles changes
}

// openFile is the handle of one open: the node serves I/O, the handle
// exists so that the bridge calls Release once per open.
type openFile struct{}

func (d *diskFile) countOpen(delta int) {
	d.mu.Lock()
	d.handles += delta
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

var (
	_ fs.NodeGetattrer   = (*diskFile)(nil)
	_ fs.NodeSetattrer   = (*diskFile)(nil)
	_ fs.NodeOpener      = (*diskFile)(nil)
	_ fs.NodeReader      = (*diskFile)(nil)
	_ fs.NodeWriter      = (*diskFile)(nil)
	_ fs.NodeFsyncer     = (*diskFile)(nil)
	_ fs.NodeAllocater   = (*diskFile)(nil)
	_ fs.NodeFlusher     = (*diskFile)(nil)
	_ fs.NodeStatfser    = (*diskFile)(nil)
	_ fs.NodeAccesser    = (*diskFile)(nil)
	_ fs.NodeReleaser    = (*diskFile)(nil)
	_ fs.NodeOnForgetter = (*diskFile)(nil)
)

func (d *diskFile) fill(a *fuse.Attr) {
	in := d.dev.Info()
	a.Mode = syscall.S_IFREG | 0o644
	if d.readOnly {
		a.Mode = syscall.S_IFREG | 0o444
	}
	a.Nlink = 1
	a.Size = uint64(in.Size)
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = max(in.PhysicalBlockSize, in.LogicalBlockSize, 512)
	m := time.Unix(0, d.modified.Load())
	a.SetTimes(&d.started, &m, &m)
}

func (d *diskFile) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fill(&out.Attr)
	return 0
}

// Setattr accepts what a file of fixed size can honour: a size equal to
// the device's; mode, owner and times are not stored.
func (d *diskFile) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && int64(sz) != d.dev.Info().Size {
		return syscall.EPERM
	}
	d.fill(&out.Attr)
	return 0
}

func (d *diskFile) Access(ctx context.Context, mask uint32) syscall.Errno {
	if d.readOnly && mask&2 != 0 { // W_OK
		return syscall.EROFS
	}
	return 0
}

func (d *diskFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if d.readOnly && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	d.countOpen(1)
	return &openFile{}, fuse.FOPEN_DIRECT_IO, 0
}

func (d *diskFile) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := d.dev.Info().Size
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	n := int(min(int64(len(dest)), size-off))
	if _, err := d.dev.ReadAt(dest[:n], off); err != nil {
		return nil, errno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (d *diskFile) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if d.readOnly {
		return 0, syscall.EROFS
	}
	size := d.dev.Info().Size
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if off >= size && len(data) > 0 {
		return 0, syscall.ENOSPC
	}
	n := int(min(int64(len(data)), size-off))
	if _, err := d.dev.WriteAt(data[:n], off); err != nil {
		return 0, errno(err)
	}
	d.modified.Store(time.Now().UnixNano())
	return uint32(n), 0
}

func (d *diskFile) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	return errno(d.dev.Flush())
}

// Flush (close(2)) has nothing to write back: every write went straight to
// the device. Durability is fsync's.
func (d *diskFile) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno { return 0 }

func (d *diskFile) Release(ctx context.Context, f fs.FileHandle) syscall.Errno {
	if f != nil {
		d.countOpen(-1)
	}
	return 0
}

func (d *diskFile) OnForget() {}

// fallocate(2) modes (linux/falloc.h).
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	fallocZeroRange = 0x10
)

// Allocate maps fallocate onto the device. Plain allocation within the
// device is a no-op (every byte already exists); anything that would grow
// the file is refused.
func (d *diskFile) Allocate(ctx context.Context, f fs.FileHandle, off, length uint64, mode uint32) syscall.Errno {
	in := d.dev.Info()
	if off > uint64(in.Size) || length > uint64(in.Size)-off {
		if mode&(fallocPunchHole|fallocKeepSize) != 0 && off <= uint64(in.Size) {
			length = uint64(in.Size) - off // KEEP_SIZE: the part past the end is nothing to do
		} else {
			return syscall.EFBIG
		}
	}
	if d.readOnly {
		return syscall.EROFS
	}
	o, n := int64(off), int64(length)
	switch mode &^ fallocKeepSize {
	case 0:
		return 0
	case fallocPunchHole:
		if in.CanDiscard && in.DiscardZeroes {
			if err := d.dev.Discard(o, n, false); err == nil {
				return 0
			}
		}
		// A punched hole must read as zeros whatever the device does.
		return errno(d.dev.WriteZeroes(o, n))
	case fallocZeroRange:
		return errno(d.dev.WriteZeroes(o, n))
	default:
		return syscall.EOPNOTSUPP
	}
}

func (d *diskFile) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	in := d.dev.Info()
	bs := uint64(max(in.LogicalBlockSize, 512))
	out.Bsize = uint32(bs)
	out.Frsize = uint32(bs)
	out.Blocks = uint64(in.Size) / bs
	out.NameLen = 255
	return 0
}

// errno turns a device error into what the caller of read(2)/write(2) sees.
func errno(err error) syscall.Errno {
	var e syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, storage.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, storage.ErrNotSupported):
		return syscall.EOPNOTSUPP
	case errors.Is(err, storage.ErrOutOfRange):
		return syscall.ENOSPC
	case errors.As(err, &e):
		return e
	default:
		return syscall.EIO
	}
}
