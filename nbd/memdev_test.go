package nbd

import (
	"testing"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// newMemDev is the device the tests export: memory that has a cache to
// flush (so the server offers FLUSH and FUA), counting what reaches it.
func newMemDev(size int64) *storagetest.Counter {
	return &storagetest.Counter{Device: storage.NewMemoryAs(storage.Info{Size: size,
		LogicalBlockSize: 512, PhysicalBlockSize: 4096, CanFlush: true, CanDiscard: true, DiscardZeroes: true})}
}

// devBytes reads n bytes at off straight from a device, past the server.
func devBytes(t testing.TB, d storage.Device, off int64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}
