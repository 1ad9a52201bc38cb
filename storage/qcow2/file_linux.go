package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/imagelock"
	"github.com/xenblk/xenblk/storage"
)

// osFile is the backend over a regular file.
type osFile struct{ *os.File }

func (f osFile) Sync() error {
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	return nil
}

// Punch frees the file's blocks under [off, off+n); a file system that
// cannot is left as it is (the range is free in the image either way).
func (f osFile) Punch(off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return nil
	}
	return err
}

// Open opens the qcow2 image at path, locked as opt.Lock says (before
// anything is read, as storage.OpenFile does), and checks its header and
// tables.
func Open(path string, opt Options) (*Image, error) {
	flags := os.O_RDWR
	if opt.ReadOnly {
		flags = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("qcow2: open image: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("qcow2: %s is not a regular file", path)
	}
	if opt.Lock > storage.LockShared {
		f.Close()
		return nil, fmt.Errorf("qcow2: lock mode %d (want LockExclusive or LockShared)", opt.Lock)
	}
	err = imagelock.Acquire(f, path, imagelock.Mode{Write: !opt.ReadOnly, Shared: opt.Lock == storage.LockShared})
	if err != nil && !errors.Is(err, imagelock.ErrUnsupported) {
		f.Close()
		return nil, err
	}
	d, err := open(osFile{f}, path, st.Size(), opt)
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

// Create makes a new, empty version 3 image of size bytes at path (which
// must not exist), with 64 KiB clusters and 16-bit refcounts, as
// `qemu-img create -f qcow2` makes one.
func Create(path string, size int64) error {
	b, err := newImageBytes(size, 16, 4)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("qcow2: create image: %w", err)
	}
	if _, err = f.WriteAt(b, 0); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("qcow2: create image %s: %w", path, err)
	}
	return nil
}

// newImageBytes lays out an empty image: the header cluster, the refcount
// table (one cluster), one refcount block, and the L1 table; refcounts
// are 1<<refOrder bits wide (3..6).
func newImageBytes(size int64, clusterBits, refOrder uint32) ([]byte, error) {
	cs := int64(1) << clusterBits
	if size <= 0 || size%512 != 0 || size > 1<<50 {
		return nil, fmt.Errorf("qcow2: image size %d (want a positive multiple of 512, at most 1 PiB)", size)
	}
	perL2 := cs / 8
	l1Size := (size + cs*perL2 - 1) / (cs * perL2)
	l1Clusters := (l1Size*8 + cs - 1) / cs
	total := 3 + l1Clusters
	w := int64(1) << refOrder >> 3
	if total > cs/w { // one refcount block covers the metadata
		return nil, fmt.Errorf("qcow2: image size %d needs too large an L1 table", size)
	}
	h := &Header{ClusterBits: clusterBits, Size: uint64(size), L1Size: uint32(l1Size), L1Offset: uint64(3 * cs),
		RefTableOffset: uint64(cs), RefTableClusters: 1, RefcountOrder: refOrder}
	b := make([]byte, total*cs)
	encodeHeaderV3(b, h)
	binary.BigEndian.PutUint64(b[cs:], uint64(2*cs))
	for i := int64(0); i < total; i++ {
		putRef(b[2*cs+w*i:][:w], 1)
	}
	return b, nil
}
