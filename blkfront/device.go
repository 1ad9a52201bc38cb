package blkfront

import (
	"context"

	"github.com/xenblk/xenblk/storage"
)

// Device returns the disk as a storage.Device, for the exports (NBD, FUSE)
// and the conformance suite. It accepts unaligned offsets and lengths:
// the partial sectors at either end are read, merged and written back
// (storage.Unaligned).
func (d *Disk) Device() storage.Device { return &device{d: d} }

type device struct {
	d         *Disk
	unaligned storage.Unaligned
}

func (v *device) Info() storage.Info {
	in := v.d.Info()
	return storage.Info{
		Size:               in.Size(),
		LogicalBlockSize:   in.SectorSize,
		PhysicalBlockSize:  max(in.PhysicalSectorSize, in.SectorSize),
		ReadOnly:           in.ReadOnly,
		Removable:          in.Removable,
		CDROM:              in.CDROM,
		CanFlush:           in.Flush || in.Barrier,
		CanDiscard:         in.Discard,
		CanSecureDiscard:   in.DiscardSecure,
		DiscardGranularity: in.DiscardGranularity,
		DiscardAlignment:   in.DiscardAlignment,
	}
}

func (v *device) sector() int64 { return int64(v.d.Info().SectorSize) }

func (v *device) ReadAt(p []byte, off int64) (int, error) {
	if err := storage.CheckRange(off, int64(len(p)), v.d.Size()); err != nil {
		return 0, err
	}
	ss := v.sector()
	if off%ss == 0 && int64(len(p))%ss == 0 {
		return v.d.ReadAt(context.Background(), p, off)
	}
	return v.unaligned.ReadAt(v.rw, ss, p, off)
}

func (v *device) WriteAt(p []byte, off int64) (int, error) {
	if v.d.Info().ReadOnly {
		return 0, storage.ErrReadOnly
	}
	if err := storage.CheckRange(off, int64(len(p)), v.d.Size()); err != nil {
		return 0, err
	}
	ss := v.sector()
	if off%ss == 0 && int64(len(p))%ss == 0 {
		return v.d.WriteAt(context.Background(), p, off)
	}
	return v.unaligned.WriteAt(v.rw, ss, p, off)
}

// rw moves whole sectors (storage.BlockRW).
func (v *device) rw(p []byte, off int64, write bool) error {
	var err error
	if write {
		_, err = v.d.WriteAt(context.Background(), p, off)
	} else {
		_, err = v.d.ReadAt(context.Background(), p, off)
	}
	return err
}

func (v *device) Flush() error { return v.d.Flush(context.Background()) }

func (v *device) Discard(off, n int64, secure bool) error {
	if err := storage.CheckRange(off, n, v.d.Size()); err != nil {
		return err
	}
	ss := v.sector()
	// Only whole sectors can be discarded; the partial ends are left alone.
	start := (off + ss - 1) / ss * ss
	end := (off + n) / ss * ss
	if end <= start {
		return nil
	}
	err := v.d.Discard(context.Background(), start, end-start, secure)
	if err == ErrNotSupported {
		return storage.ErrNotSupported
	}
	return err
}

// WriteZeroes writes zeros (blkif has no write-zeroes operation).
func (v *device) WriteZeroes(off, n int64) error {
	if err := storage.CheckRange(off, n, v.d.Size()); err != nil {
		return err
	}
	zero := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(zero)))
		if _, err := v.WriteAt(zero[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

func (v *device) Close() error { return nil }
