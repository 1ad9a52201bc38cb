package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// ImageOptions say how OpenImage opens a disk by its path. An image file
// takes them all; a block device has its own geometry and rotation rate,
// so an option that would contradict them is refused rather than
// ignored.
type ImageOptions struct {
	ReadOnly bool
	// Create makes a missing image file, sparse, of this many bytes
	// (read-write only); 0 refuses a missing file.
	Create int64
	// Lock: whom else the disk is shared with while open.
	Lock Lock
	// SectorSize is the logical block size, 512 or 4096; 0: 512 for a
	// file, the device's own for a block device.
	SectorSize uint32
	// PhysicalSectorSize: 0 is the file's filesystem block size (the
	// device's own for a block device).
	PhysicalSectorSize uint32
	// RotationRate, when SetRotationRate, is what the disk reports in VPD
	// page 0xb1 (0 not reported, 1 non-rotating, else rpm); otherwise a
	// file reports its filesystem device's (RotationRateForPath).
	RotationRate    uint16
	SetRotationRate bool
	// Direct opens an image file O_DIRECT (a block device is served as
	// it is opened).
	Direct bool
}

// OpenImage opens a block device (a phy: disk), or a raw disk image,
// creating it sparse when it does not exist and o.Create > 0. It reports
// whether it created it. Every disk is locked (o.Lock): one that another
// user holds is refused with ErrInUse, nothing created or changed.
func OpenImage(path string, o ImageOptions) (Device, bool, error) {
	st, err := os.Stat(path)
	if err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0 {
		// A block device: its size, discard (BLKDISCARD) and rotation
		// rate come from the device itself.
		d, err := OpenBlockDev(path, BlockDevOptions{ReadOnly: o.ReadOnly, Lock: o.Lock})
		if err != nil {
			return nil, false, err
		}
		if err := o.checkBlockDev(d.Info()); err != nil {
			d.Close()
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return d, false, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		if err := DanglingLink(path); err != nil {
			return nil, false, err
		}
	}
	created := errors.Is(err, os.ErrNotExist) && o.Create > 0 && !o.ReadOnly
	if errors.Is(err, os.ErrNotExist) && !created {
		return nil, false, fmt.Errorf("disk image %s does not exist", path)
	}
	opt := FileOptions{ReadOnly: o.ReadOnly, LogicalBlockSize: o.SectorSize, Direct: o.Direct, Lock: o.Lock}
	if created {
		opt.Create = o.Create
	}
	f, err := OpenFile(path, opt)
	if err != nil {
		return nil, false, err
	}
	if o.SetRotationRate {
		f.SetRotationRate(o.RotationRate)
	}
	if o.PhysicalSectorSize != 0 {
		if err := f.SetPhysicalBlockSize(o.PhysicalSectorSize); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
	}
	return f, created, nil
}

// checkBlockDev refuses options a block device cannot honour.
func (o ImageOptions) checkBlockDev(in Info) error {
	switch {
	case o.SectorSize != 0 && o.SectorSize != in.LogicalBlockSize:
		return fmt.Errorf("sector-size %d: the block device's logical block size is %d", o.SectorSize, in.LogicalBlockSize)
	case o.PhysicalSectorSize != 0 && o.PhysicalSectorSize != in.PhysicalBlockSize:
		return fmt.Errorf("physical-sector-size %d: the block device's is %d", o.PhysicalSectorSize, in.PhysicalBlockSize)
	case o.SetRotationRate && o.RotationRate != in.RotationRate:
		return fmt.Errorf("rotation-rate %d: a block device reports its own (%d)", o.RotationRate, in.RotationRate)
	case o.Direct:
		return errors.New("direct applies to image files (a block device is served as it is opened)")
	}
	return nil
}

// DanglingLink refuses a symbolic link whose target does not exist: Stat
// says "no such file", but creating the image through it would fail with
// "file exists" (O_EXCL does not follow links), and creating the link's
// target somewhere else is not what anyone asked for. It returns nil for
// anything that is not a link.
func DanglingLink(path string) error {
	target, err := os.Readlink(path)
	if err != nil {
		return nil // not a link: nothing is there
	}
	return fmt.Errorf("disk image %s is a symbolic link to %s, which does not exist; create %s or point the link at an image", path, target, target)
}

// qcowMagic begins every qcow and qcow2 image ("QFI\xfb"); a big-endian
// version follows (1: qcow, 2 or 3: qcow2).
var qcowMagic = []byte{'Q', 'F', 'I', 0xfb}

// QcowImage says, as an error, that the regular file at path is a qcow or
// qcow2 image though it is to be served raw; nil when it is not (or
// cannot be read: opening it says why). The guest would see qcow's
// metadata, not the disk inside it.
func QcowImage(path string) error {
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
