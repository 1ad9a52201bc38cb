package vbd

import (
	"errors"
	"fmt"
	"os"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
)

// CheckLocal checks, before a vbd is written, what a backend on this
// host will open for spec with its checked options o (Disk.Open and the
// engine registry): the target exists and is a raw image of whole
// sectors (not a qcow image) or a block device — or, for format=qcow2, a
// qcow2 image whose backing chain resolves (CheckQcow2) and options it
// can honour — and a policy file given
// as scsi-policy=@/path reads as the backend will read it. A backend in
// another domain opens paths of its own, which cannot be checked here.
func CheckLocal(spec diskspec.Spec, o diskspec.Options) error {
	if spec.Target != "" {
		st, err := os.Stat(spec.Target)
		if err != nil {
			if lerr := storage.DanglingLink(spec.Target); lerr != nil {
				return fmt.Errorf("target: %w", lerr)
			}
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("target %s does not exist; the backend (domain 0) opens it on this host", spec.Target)
			}
			return fmt.Errorf("target: %w", err)
		}
		switch mode := st.Mode(); {
		case spec.Format == diskspec.FormatQcow2:
			if err := CheckQcow2(spec.Target); err != nil {
				return specSaysQcow2(err)
			}
			io := storage.ImageOptions{PhysicalSectorSize: o.PhysicalSectorSize, SetRotationRate: o.RotationRate >= 0, Direct: o.Direct}
			if err := checkQcow2Options(spec.Target, io); err != nil {
				return err
			}
		case mode.IsRegular():
			// A qcow image's size says nothing of its disk's: its
			// format is the thing to say.
			if err := storage.QcowImage(spec.Target); err != nil {
				return err
			}
			if err := storage.CheckImageSize(spec.Target, st.Size(), max(o.SectorSize, 512)); err != nil {
				return err
			}
		case mode&os.ModeDevice != 0 && mode&os.ModeCharDevice == 0:
		default:
			return fmt.Errorf("target %s is not a raw image file or a block device (%s)", spec.Target, mode.Type())
		}
	}
	if path, ok := o.PolicyFile(); ok {
		if _, err := scsiengine.PolicyFile(path, scsi.EmulatedPolicy()); err != nil {
			return fmt.Errorf("%s=%s: %w", diskspec.KeySCSIPolicy, o.SCSIPolicy, err)
		}
	}
	return nil
}

// specSaysQcow2 adds to ErrNotQcow2 what the spec said and how to serve
// a raw file.
func specSaysQcow2(err error) error {
	if errors.Is(err, ErrNotQcow2) {
		return fmt.Errorf("%w, but the spec says format=qcow2; for a raw image, say format=raw", err)
	}
	return err
}
