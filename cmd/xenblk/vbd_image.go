package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// A vbd's own keys (attach writes them into its backend directory from the
// disk spec) that shape how its image is served. An image file takes them
// all; a block device has its own geometry and rotation rate, so a key
// that would contradict them is refused rather than ignored.
const (
	nodeSectorSize   = "sector-size"          // 512 (default) or 4096: the logical block size the guest sees
	nodePhysicalSize = "physical-sector-size" // power of two >= sector-size: the physical block size
	nodeRotationRate = "rotation-rate"        // 1 non-rotating, else rpm (SBC's VPD 0xb1)
	nodeDirect       = "direct"               // 1/true: open the image with O_DIRECT
)

// imageOptions are those keys, read and checked.
type imageOptions struct {
	sectorSize   uint32 // 0: not given
	physicalSize uint32 // 0: not given
	rotationRate int    // -1: not given
	direct       bool
}

// readImageOptions reads a vbd's image keys from dir.
func readImageOptions(st xen.Store, dir string) (imageOptions, error) {
	o := imageOptions{rotationRate: -1}
	read := func(key string) (string, bool, error) {
		v, err := st.Read(dir + "/" + key)
		if errors.Is(err, xen.ErrNotFound) {
			return "", false, nil
		}
		return v, err == nil, err
	}
	number := func(key string, lo, hi int) (int, bool, error) {
		v, ok, err := read(key)
		if err != nil || !ok {
			return 0, false, err
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return 0, false, fmt.Errorf("%s/%s = %q: want a number from %d to %d", dir, key, v, lo, hi)
		}
		return n, true, nil
	}
	if n, ok, err := number(nodeSectorSize, 512, 4096); err != nil {
		return o, err
	} else if ok {
		if n != 512 && n != 4096 {
			return o, fmt.Errorf("%s/%s = %d: want 512 or 4096", dir, nodeSectorSize, n)
		}
		o.sectorSize = uint32(n)
	}
	if n, ok, err := number(nodePhysicalSize, 512, 65536); err != nil {
		return o, err
	} else if ok {
		o.physicalSize = uint32(n)
	}
	if n, ok, err := number(nodeRotationRate, 0, 0xfffe); err != nil {
		return o, err
	} else if ok {
		o.rotationRate = n
	}
	if v, ok, err := read(nodeDirect); err != nil {
		return o, err
	} else if ok {
		b, perr := strconv.ParseBool(v)
		if perr != nil {
			return o, fmt.Errorf("%s/%s = %q: want 1 or 0", dir, nodeDirect, v)
		}
		o.direct = b
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
