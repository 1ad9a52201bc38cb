package main

import (
	"github.com/xenblk/xenblk/storage"
)

// openImage opens a block device, or a raw disk image, creating it sparse
// with size bytes if it does not exist and size > 0 (storage.OpenImage,
// locked alone for read-write, among readers for read-only). It reports
// whether it created it. An image file reports rotationRateOverride when
// that is set; a block device its own.
func openImage(path string, size int64, readOnly bool) (storage.Device, bool, error) {
	d, created, err := storage.OpenImage(path, storage.ImageOptions{ReadOnly: readOnly, Create: size})
	if f, ok := d.(*storage.File); ok && rotationRateOverride >= 0 {
		f.SetRotationRate(uint16(rotationRateOverride))
	}
	return d, created, err
}

// rotationRateOverride, when not negative, is the rotation rate every
// image reports in VPD page 0xb1 (xenblk sim --rotation-rate) instead of
// its filesystem device's (storage.RotationRateForPath).
var rotationRateOverride = -1
