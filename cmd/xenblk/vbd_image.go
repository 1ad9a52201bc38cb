package main

import (
	"errors"
	"fmt"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// imageOptions are a vbd's own keys (diskspec.Options) that shape how its
// image is served. An image file takes them all; a block device has its
// own geometry and rotation rate, so a key that would contradict them is
// refused rather than ignored.
type imageOptions struct {
	sectorSize   uint32 // 0: not given
	physicalSize uint32 // 0: not given
	rotationRate int    // -1: not given
	direct       bool
	shared       bool // several vbds may open it together (storage.LockShared)
}

func imageOptionsOf(o diskspec.Options) imageOptions {
	return imageOptions{sectorSize: o.SectorSize, physicalSize: o.PhysicalSectorSize, rotationRate: o.RotationRate, direct: o.Direct, shared: o.Shared}
}

// lock is how the image is locked against its other users.
func (o imageOptions) lock() storage.Lock {
	if o.shared {
		return storage.LockShared
	}
	return storage.LockExclusive
}

// readVBDOptions reads and checks xenblk's own keys from a vbd's backend
// directory (attach wrote them from the disk spec) with the check attach
// made, so a node changed by hand gets the words attach would have said.
func readVBDOptions(st xen.Store, dir string) (diskspec.Options, error) {
	kv := map[string]string{}
	for _, key := range diskspec.OwnKeys {
		v, err := st.Read(dir + "/" + key)
		switch {
		case errors.Is(err, xen.ErrNotFound):
		case err != nil:
			return diskspec.Options{}, fmt.Errorf("%s/%s: %w", dir, key, err)
		default:
			kv[key] = v
		}
	}
	o, err := diskspec.ParseOptions(kv)
	if err != nil {
		return o, fmt.Errorf("%s: %w", dir, err)
	}
	return o, nil
}

// apply gives an opened image the options open could not (rotation rate,
// physical block size), and refuses what a block device cannot honour.
func (o imageOptions) apply(dev storage.Device) error {
	switch d := dev.(type) {
	case *storage.File:
		if o.rotationRate >= 0 {
			d.SetRotationRate(uint16(o.rotationRate))
		}
		if o.physicalSize != 0 {
			return d.SetPhysicalBlockSize(o.physicalSize)
		}
	default:
		in := dev.Info()
		switch {
		case o.sectorSize != 0 && o.sectorSize != in.LogicalBlockSize:
			return fmt.Errorf("sector-size %d: the block device's logical block size is %d", o.sectorSize, in.LogicalBlockSize)
		case o.physicalSize != 0 && o.physicalSize != in.PhysicalBlockSize:
			return fmt.Errorf("physical-sector-size %d: the block device's is %d", o.physicalSize, in.PhysicalBlockSize)
		case o.rotationRate >= 0 && uint16(o.rotationRate) != in.RotationRate:
			return fmt.Errorf("rotation-rate %d: a block device reports its own (%d)", o.rotationRate, in.RotationRate)
		case o.direct:
			return errors.New("direct applies to image files (a block device is served as it is opened)")
		}
	}
	return nil
}
