package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/xenblk/xenblk/storage"
)

// openImage opens a block device, or a raw disk image, creating it sparse with size bytes if
// it does not exist and size > 0. It reports whether it created it.
func openImage(path string, size int64, readOnly bool) (storage.Device, bool, error) {
	return openImageWith(path, size, readOnly, imageOptions{rotationRate: -1})
}

// openImageWith is openImage with a vbd's image options (sector size and
// O_DIRECT for files; the rest is applied after opening).
func openImageWith(path string, size int64, readOnly bool, o imageOptions) (storage.Device, bool, error) {
	st, err := os.Stat(path)
	if err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0 {
		// A block device (a phy: disk): its size, discard (BLKDISCARD)
		// and rotation rate come from the device itself.
		d, err := storage.OpenBlockDev(path, readOnly)
		if err != nil {
			return nil, false, err
		}
		if err := o.apply(d); err != nil {
			d.Close()
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return d, false, nil
	}
	created := errors.Is(err, os.ErrNotExist) && size > 0 && !readOnly
	if errors.Is(err, os.ErrNotExist) && !created {
		return nil, false, fmt.Errorf("disk image %s does not exist", path)
	}
	opt := storage.FileOptions{ReadOnly: readOnly, LogicalBlockSize: o.sectorSize, Direct: o.direct}
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

// rotationRateOverride, when not negative, is the rotation rate every
// image reports in VPD page 0xb1 (xenblk sim --rotation-rate) instead of
// its filesystem device's (storage.RotationRateForPath).
var rotationRateOverride = -1
