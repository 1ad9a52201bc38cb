package main

import (
	"github.com/xenblk/xenblk/storage"
)

// openImage opens a block device, or a raw disk image, creating it sparse
// with size bytes if it does not exist and size > 0 (storage.OpenImage,
// locked alone for read-write, among readers for read-only). It reports
// whether it created it. An image file reports rotationRate in VPD page
// 0xb1 when that is not negative (xenblk sim --rotation-rate), else its
// filesystem device's (storage.RotationRateForPath); a block device
// always reports its own.
func openImage(path string, size int64, readOnly bool, rotationRate int) (storage.Device, bool, error) {
	d, created, err := storage.OpenImage(path, storage.ImageOptions{ReadOnly: readOnly, Create: size})
	if f, ok := d.(*storage.File); ok && rotationRate >= 0 {
		f.SetRotationRate(uint16(rotationRate))
	}
	return d, created, err
}

// ownRotationRate is openImage's rotationRate for "the image's own".
const ownRotationRate = -1
