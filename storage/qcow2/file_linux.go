package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
// anything is read, as storage.OpenFile does), checks its header and
// tables, and opens its backing chain read-only (each file locked as a
// reader: other readers may share it, writers may not).
func Open(path string, opt Options) (*Image, error) {
	return openChain(path, opt, nil)
}

// maxChain bounds a backing chain's length.
const maxChain = 64

// openChain opens the image at path, below the images in above (whose
// files it must not be: a chain that loops is refused).
func openChain(path string, opt Options, above []os.FileInfo) (*Image, error) {
	flags := os.O_RDWR
	if opt.ReadOnly {
		flags = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("qcow2: open image: %w", err)
	}
	d, err := openFile(f, path, opt, above)
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

func openFile(f *os.File, path string, opt Options, above []os.FileInfo) (*Image, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("qcow2: %s is not a regular file", path)
	}
	for _, a := range above {
		if os.SameFile(a, st) {
			return nil, fmt.Errorf("%w: backing chain loops: %s is its own backing file", ErrCorrupt, path)
		}
	}
	if len(above) >= maxChain {
		return nil, fmt.Errorf("%w: backing chain longer than %d images (at %s)", ErrUnsupported, maxChain, path)
	}
	if opt.Lock > storage.LockShared {
		return nil, fmt.Errorf("qcow2: lock mode %d (want LockExclusive or LockShared)", opt.Lock)
	}
	err = imagelock.Acquire(f, path, imagelock.Mode{Write: !opt.ReadOnly, Shared: opt.Lock == storage.LockShared})
	if err != nil && !errors.Is(err, imagelock.ErrUnsupported) {
		return nil, err
	}
	d, err := open(osFile{f}, path, st.Size(), opt)
	if err != nil {
		return nil, err
	}
	if d.h.BackingFile == "" {
		return d, nil
	}
	bpath := d.h.BackingFile
	if !filepath.IsAbs(bpath) {
		bpath = filepath.Join(filepath.Dir(path), bpath)
	}
	b, err := openBacking(bpath, d.h.BackingFormat, opt.LogicalBlockSize, append(above[:len(above):len(above)], st))
	if err != nil {
		return nil, fmt.Errorf("image %s: backing file %s: %w", path, bpath, err)
	}
	d.backing, d.backingSize = b, b.Info().Size
	return d, nil
}

// openBacking opens a backing file read-only, as its format says, or as
// its first bytes say when the image names no format.
func openBacking(path, format string, lbs uint32, above []os.FileInfo) (storage.Device, error) {
	if format == "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		var m [4]byte
		_, err = io.ReadFull(f, m[:])
		f.Close()
		format = "raw"
		if err == nil && binary.BigEndian.Uint32(m[:]) == magic {
			format = "qcow2"
		}
	}
	switch format {
	case "qcow2":
		return openChain(path, Options{ReadOnly: true, LogicalBlockSize: lbs}, above)
	case "raw":
		for _, a := range above {
			if st, err := os.Stat(path); err == nil && os.SameFile(a, st) {
				return nil, fmt.Errorf("%w: backing chain loops: %s is its own backing file", ErrCorrupt, path)
			}
		}
		return storage.OpenFile(path, storage.FileOptions{ReadOnly: true, LogicalBlockSize: lbs})
	}
	return nil, fmt.Errorf("%w: backing file format %q (this reads qcow2 and raw)", ErrUnsupported, format)
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
