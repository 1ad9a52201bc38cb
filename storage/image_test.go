package storage_test

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/looptest"
	"github.com/xenblk/xenblk/storage"
)

// TestOpenImageBlockDevice: a disk whose path is a block device (xl's
// phy:) is opened as one — its size from the device, discard through
// BLKDISCARD — not as a zero-length file.
func TestOpenImageBlockDevice(t *testing.T) {
	dev, _ := looptest.Attach(t, 8<<20)
	d, _, err := storage.OpenImage(dev, storage.ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := d.(*storage.BlockDev); !ok {
		t.Fatalf("%s opened as %T, want a BlockDev", dev, d)
	}
	if got := d.Info().Size; got != 8<<20 {
		t.Fatalf("size %d, want %d", got, 8<<20)
	}
	// A block device keeps its own geometry: options that agree are
	// accepted, ones that contradict it (or O_DIRECT, a file's) refused.
	// (The writer closes first: a reader is refused beside it.)
	in := d.Info()
	d.Close()
	if d2, _, err := storage.OpenImage(dev, storage.ImageOptions{ReadOnly: true, SectorSize: in.LogicalBlockSize}); err != nil {
		t.Errorf("its own sector size %d refused: %v", in.LogicalBlockSize, err)
	} else {
		d2.Close()
	}
	other := uint32(4096)
	if in.LogicalBlockSize == 4096 {
		other = 512
	}
	for _, o := range []storage.ImageOptions{
		{ReadOnly: true, SectorSize: other},
		{ReadOnly: true, Direct: true},
		{ReadOnly: true, SetRotationRate: true, RotationRate: in.RotationRate + 1},
	} {
		if d2, _, err := storage.OpenImage(dev, o); err == nil {
			d2.Close()
			t.Errorf("%+v accepted for a block device", o)
		}
	}
}

// TestBlockDevMapsAllData pins why a block device export reports every
// byte as data: Linux refuses SEEK_DATA and SEEK_HOLE on a block device
// (EINVAL: the block layer's lseek knows only SEEK_SET, SEEK_CUR and
// SEEK_END), even on a loop device whose image is one hole. Should a
// kernel answer them, this fails: BlockDev should then map its ranges as
// File does.
func TestBlockDevMapsAllData(t *testing.T) {
	const size = 8 << 20
	dev, _ := looptest.Attach(t, size)
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, whence := range []int{unix.SEEK_DATA, unix.SEEK_HOLE} {
		if off, err := unix.Seek(int(f.Fd()), 4096, whence); !errors.Is(err, unix.EINVAL) {
			t.Errorf("lseek(%s, 4096, %d) over a sparse image: %d, %v; want EINVAL", dev, whence, off, err)
		}
	}
	d, _, err := storage.OpenImage(dev, storage.ImageOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if es, err := storage.Map(d, 0, size); err != nil || len(es) != 1 || es[0] != (storage.Extent{Length: size}) {
		t.Errorf("map of %s: %v, %v; want all data", dev, es, err)
	}
}
