package main

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vbd"
)

// openImage opens a block device, or a raw or qcow2 disk image, in
// format (imageFormat: auto says qcow2 for a file that begins with
// qcow2's magic, raw for anything else, raw for an image it creates);
// it creates a missing image file, sparse, with size bytes if size > 0
// (vbd.OpenImage, locked alone for read-write, among readers for
// read-only). It reports the format and whether it created the image.
// A raw image file reports rotationRate in VPD page 0xb1 when that is
// not negative (xenblk sim --rotation-rate), else its filesystem
// device's (storage.RotationRateForPath); a block device always reports
// its own; a qcow2 image refuses a rotation rate.
func openImage(path string, format imageFormat, size int64, readOnly bool, rotationRate int) (storage.Device, diskspec.Format, bool, error) {
	f := diskspec.Format(format)
	if format == formatAuto {
		f = diskspec.FormatRaw
		if vbd.IsQcow2(path) {
			f = diskspec.FormatQcow2
		}
	}
	o := storage.ImageOptions{ReadOnly: readOnly, Create: size}
	if f == diskspec.FormatQcow2 && rotationRate >= 0 {
		return nil, f, false, usagef("--rotation-rate applies to raw images, not to the qcow2 image %s", path)
	}
	d, created, err := vbd.OpenImage(path, f, o)
	if errors.Is(err, vbd.ErrNotQcow2) {
		err = fmt.Errorf("%w, but --format qcow2 was given; leave --format out to serve it as it is", err)
	}
	err = openImageHint(err, readOnly)
	if f, ok := d.(*storage.File); ok && rotationRate >= 0 {
		f.SetRotationRate(uint16(rotationRate))
	}
	return d, f, created, err
}

// openImageHint adds to an image's open error what to do about it, where
// a flag or another path is the answer.
func openImageHint(err error, readOnly bool) error {
	switch {
	case errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("%w (give the path of an image file or a block device)", err)
	case errors.Is(err, fs.ErrPermission) && !readOnly:
		return fmt.Errorf("%w (to serve an image this user may only read, give --read-only)", err)
	case errors.Is(err, syscall.EFBIG):
		return fmt.Errorf("%w (its file system holds no file that large: give a smaller --size)", err)
	}
	return err
}

// ownRotationRate is openImage's rotationRate for "the image's own".
const ownRotationRate = -1

// imageFormat is --format: raw, qcow2 or auto.
type imageFormat string

const formatAuto imageFormat = "auto"

func (f *imageFormat) String() string { return string(*f) }
func (f *imageFormat) Type() string   { return "raw|qcow2|auto" }
func (f *imageFormat) Set(s string) error {
	switch imageFormat(s) {
	case imageFormat(diskspec.FormatRaw), imageFormat(diskspec.FormatQcow2), formatAuto:
		*f = imageFormat(s)
		return nil
	}
	return fmt.Errorf("want raw, qcow2 or auto")
}

// imageFormatVar adds --format, auto by default: the image's format is
// what its first bytes say.
func imageFormatVar(fs *pflag.FlagSet, p *imageFormat, usage string) {
	*p = formatAuto
	fs.Var(p, "format", usage)
}
