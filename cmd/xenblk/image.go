package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/xenblk/xenblk/storage"
)

// openImage opens a block device, or a raw disk image, creating it sparse with size bytes if
// it does not exist and size > 0. It reports whether it created it.
func openImage(path string, size int64, readOnly bool) (storage.Device, bool, error) {
	return openImageWith(path, size, readOnly, imageOptions{rotationRate: -1})
}

// openImageWith is openImage with a vbd's image options (sector size,
// O_DIRECT for files, and whether the disk is shared; the rest is applied
// after opening). Every image is locked (storage.Lock): one that another
// user holds is refused with storage.ErrInUse, nothing created or changed.
func openImageWith(path string, size int64, readOnly bool, o imageOptions) (storage.Device, bool, error) {
	st, err := os.Stat(path)
	if err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0 {
		// A block device (a phy: disk): its size, discard (BLKDISCARD)
		// and rotation rate come from the device itself.
		d, err := storage.OpenBlockDev(path, storage.BlockDevOptions{ReadOnly: readOnly, Lock: o.lock()})
		if err != nil {
			return nil, false, err
		}
		if err := o.apply(d); err != nil {
			d.Close()
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return d, false, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		if err := danglingLink(path); err != nil {
			return nil, false, err
		}
	}
	created := errors.Is(err, os.ErrNotExist) && size > 0 && !readOnly
	if errors.Is(err, os.ErrNotExist) && !created {
		return nil, false, fmt.Errorf("disk image %s does not exist", path)
	}
	opt := storage.FileOptions{ReadOnly: readOnly, LogicalBlockSize: o.sectorSize, Direct: o.direct, Lock: o.lock()}
	if created {
		opt.Create = size
	}
	f, err := storage.OpenFile(path, opt)
	if err != nil {
		return nil, false, err
	}
	if rotationRateOverride >= 0 {
		f.SetRotationRate(uint16(rotationRateOverride))
	}
	if err := o.apply(f); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return f, created, nil
}

// danglingLink refuses a symbolic link whose target does not exist: Stat
// says "no such file", but creating the image through it would fail with
// "file exists" (O_EXCL does not follow links), and creating the link's
// target somewhere else is not what anyone asked for.
func danglingLink(path string) error {
	target, err := os.Readlink(path)
	if err != nil {
		return nil // not a link: nothing is there
	}
	return fmt.Errorf("disk image %s is a symbolic link to %s, which does not exist; create %s or point the link at an image", path, target, target)
}

// qcowMagic begins every qcow and qcow2 image ("QFI\xfb"); a big-endian
// version follows (1: qcow, 2 or 3: qcow2).
var qcowMagic = []byte{'Q', 'F', 'I', 0xfb}

// qcowImage says, as an error, that the regular file at path is a qcow or
// qcow2 image though it is to be served raw; nil when it is not (or
// cannot be read: opening it says why). The guest would see qcow's
// metadata, not the disk inside it.
func qcowImage(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	head := make([]byte, 8)
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head[:4], qcowMagic) {
		return nil
	}
	format := "qcow2"
	if binary.BigEndian.Uint32(head[4:]) == 1 {
		format = "qcow"
	}
	return fmt.Errorf("disk %s is a %s image (it begins with QFI\\xfb), but the spec says format=raw: the guest would see %s's metadata, not the disk in it; convert it with qemu-img convert -O raw %s RAW-FILE and attach RAW-FILE", path, format, format, path)
}

// rotationRateOverride, when not negative, is the rotation rate every
// image reports in VPD page 0xb1 (xenblk sim --rotation-rate) instead of
// its filesystem device's (storage.RotationRateForPath).
var rotationRateOverride = -1
