package storage_test

import (
	"errors"
	"testing"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// A memory device described otherwise (a 4096-byte sector, a cache to
// flush) is still a conforming device, and says what it was told to.
func TestMemoryAs(t *testing.T) {
	info := storage.Info{LogicalBlockSize: 4096, PhysicalBlockSize: 4096, CanFlush: true, CanDiscard: true, DiscardZeroes: true}
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
		in := info
		in.Size = size
		d := storage.NewMemoryAs(in)
		if d.Info() != in {
			t.Fatalf("info %+v, want %+v", d.Info(), in)
		}
		return d
	})
}

// A memory device keeps the promises of its description: read-only
// refuses every change, no discard refuses Discard.
func TestMemoryAsKeepsItsDescription(t *testing.T) {
	ro := storage.NewMemoryAs(storage.Info{Size: 1 << 20, LogicalBlockSize: 512, PhysicalBlockSize: 512, ReadOnly: true, CanDiscard: true})
	if _, err := ro.WriteAt([]byte{1}, 0); !errors.Is(err, storage.ErrReadOnly) {
		t.Errorf("write to a read-only memory device: %v", err)
	}
	if err := ro.WriteZeroes(0, 512); !errors.Is(err, storage.ErrReadOnly) {
		t.Errorf("write zeroes to a read-only memory device: %v", err)
	}
	if err := ro.Discard(0, 512, false); !errors.Is(err, storage.ErrReadOnly) {
		t.Errorf("discard on a read-only memory device: %v", err)
	}
	nodiscard := storage.NewMemoryAs(storage.Info{Size: 1 << 20, LogicalBlockSize: 512, PhysicalBlockSize: 512})
	if err := nodiscard.Discard(0, 512, false); !errors.Is(err, storage.ErrNotSupported) {
		t.Errorf("discard on a memory device without discard: %v", err)
	}
}
