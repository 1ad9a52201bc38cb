package main

import (
	"testing"

	"github.com/xenblk/xenblk/internal/looptest"
	"github.com/xenblk/xenblk/storage"
)

// TestOpenImageBlockDevice: a vbd whose target is a block device (xl's
// phy:) is served as one — its size from the device, discard through
// BLKDISCARD — not as a zero-length file.
func TestOpenImageBlockDevice(t *testing.T) {
	dev, _ := looptest.Attach(t, 8<<20)
	d, _, err := openImage(dev, 0, false)
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
	if d2, _, err := openImageWith(dev, 0, true, imageOptions{sectorSize: in.LogicalBlockSize, rotationRate: -1}); err != nil {
		t.Errorf("its own sector size %d refused: %v", in.LogicalBlockSize, err)
	} else {
		d2.Close()
	}
	other := uint32(4096)
	if in.LogicalBlockSize == 4096 {
		other = 512
	}
	for _, o := range []imageOptions{{sectorSize: other, rotationRate: -1}, {direct: true, rotationRate: -1}} {
		if d2, _, err := openImageWith(dev, 0, true, o); err == nil {
			d2.Close()
			t.Errorf("%+v accepted for a block device", o)
		}
	}
}
