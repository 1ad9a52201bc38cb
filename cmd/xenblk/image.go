package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/storage"
)

// openImage opens (or creates, sparse) a raw disk image.
// TODO(storage): replace with the storage package's File once it lands;
// this is the minimal raw-file device `xenblk sim` needs meanwhile.
func openImage(path string, size int64, readOnly bool) (storage.Device, bool, error) {
	created := false
	flags := os.O_RDWR
	if readOnly {
		flags = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flags, 0)
	if errors.Is(err, os.ErrNotExist) && !readOnly {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			created = true
			if err = f.Truncate(size); err != nil {
				f.Close()
				os.Remove(path)
				return nil, false, fmt.Errorf("create %s of %d bytes: %w", path, size, err)
			}
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("open disk image: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, err
	}
	if st.Size() == 0 {
		f.Close()
		return nil, false, fmt.Errorf("disk image %s is 0 bytes; remove it, or give it a size with truncate -s", path)
	}
	if st.Size()%512 != 0 {
		f.Close()
		return nil, false, fmt.Errorf("disk image %s is %d bytes, not a multiple of 512", path, st.Size())
	}
	return &imageFile{f: f, size: st.Size() &^ 511, ro: readOnly, rot: imageRotationRate(path)}, created, nil
}

type imageFile struct {
	f    *os.File
	size int64
	ro   bool
	rot  uint16 // SBC rotation rate reported in VPD page 0xb1
}

// rotationRateOverride, when not negative, is the rotation rate every
// image reports (xenblk sim --rotation-rate) instead of its filesystem
// device's.
var rotationRateOverride = -1

// imageRotationRate is the rotation rate of the device holding the image:
// 1 (non-rotating) for an SSD, 0 (not reported) for a spinning or virtual
// disk the kernel gives no rpm for, unless overridden.
func imageRotationRate(path string) uint16 {
	if rotationRateOverride >= 0 {
		return uint16(rotationRateOverride)
	}
	return storage.RotationRateForPath(path)
}

func (d *imageFile) ReadAt(p []byte, off int64) (int, error) {
	if err := storage.CheckRange(off, int64(len(p)), d.size); err != nil {
		return 0, err
	}
	return d.f.ReadAt(p, off)
}

func (d *imageFile) WriteAt(p []byte, off int64) (int, error) {
	if d.ro {
		return 0, storage.ErrReadOnly
	}
	if err := storage.CheckRange(off, int64(len(p)), d.size); err != nil {
		return 0, err
	}
	return d.f.WriteAt(p, off)
}

func (d *imageFile) Info() storage.Info {
	return storage.Info{Size: d.size, LogicalBlockSize: 512, PhysicalBlockSize: 4096, ReadOnly: d.ro,
		RotationRate: d.rot, CanFlush: true, CanDiscard: !d.ro, DiscardZeroes: true, DiscardGranularity: 4096}
}

func (d *imageFile) Flush() error { return unix.Fdatasync(int(d.f.Fd())) }

func (d *imageFile) Discard(off, n int64, secure bool) error { return d.WriteZeroes(off, n) }

func (d *imageFile) WriteZeroes(off, n int64) error {
	if d.ro {
		return storage.ErrReadOnly
	}
	if err := storage.CheckRange(off, n, d.size); err != nil {
		return err
	}
	return unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

func (d *imageFile) Close() error { return d.f.Close() }
