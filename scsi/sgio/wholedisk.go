package sgio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrNotWholeDisk is wrapped by every refusal to pass SCSI commands to a
// device that is not a whole SCSI disk.
var ErrNotWholeDisk = errors.New("sgio: SCSI pass-through needs a whole SCSI disk")

// checkWholeSCSIDisk decides from sysfs (normally "/sys") whether the block
// device major:minor is a whole disk driven by sd. Partitions are refused
// first: SG_IO on a partition addresses the whole disk (CVE-2011-4127).
func checkWholeSCSIDisk(sysfs, name string, major, minor uint32) error {
	dir := filepath.Join(sysfs, "dev", "block", fmt.Sprintf("%d:%d", major, minor))
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(dir, p)); return err == nil }
	switch {
	case !exists(""):
		return fmt.Errorf("%w: %s (%d:%d) is not in %s/dev/block", ErrNotWholeDisk, name, major, minor, sysfs)
	case exists("partition"):
		return fmt.Errorf("%w: %s is a partition; give the whole disk, or use emulated SCSI (scsi=emulate) for a partition", ErrNotWholeDisk, name)
	case exists("dm"):
		return fmt.Errorf("%w: %s is a device-mapper (LVM) volume; use emulated SCSI", ErrNotWholeDisk, name)
	case exists("loop"):
		return fmt.Errorf("%w: %s is a loop device; use emulated SCSI", ErrNotWholeDisk, name)
	case !exists("device/scsi_disk"):
		return fmt.Errorf("%w: %s is not a SCSI disk (no sd driver behind it); use emulated SCSI", ErrNotWholeDisk, name)
	}
	return nil
}
