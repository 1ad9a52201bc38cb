package storage_test

import (
	"testing"

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
