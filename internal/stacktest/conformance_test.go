package stacktest

import (
	"context"
	"testing"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// openThroughStack serves a fresh device through our backend to our
// frontend on a simulated host, and returns the frontend's disk.
func openThroughStack(backing func(size int64) storage.Device, fcfg blkfront.Config) storagetest.Open {
	return openThroughStackWith(backing, fcfg, blkback.Config{})
}

// openThroughStackWith is openThroughStack with the backend's settings.
func openThroughStackWith(backing func(size int64) storage.Device, fcfg blkfront.Config, bcfg blkback.Config) storagetest.Open {
	return func(t *testing.T, size int64) storage.Device {
		s := simstack.ForTest(t, backing(size), simstack.Options{Backend: bcfg})
		g, err := s.AttachGuest(context.Background(), "guest", "vdev=xvda, target=conformance", fcfg)
		if err != nil {
			t.Fatal(err)
		}
		return g.Disk.Device()
	}
}

// The block-device conformance suite through the whole stack in one
// process: our blkfront over our blkback over each storage backend.
func TestConformanceThroughTheStack(t *testing.T) {
	t.Run("Memory", func(t *testing.T) {
		storagetest.Run(t, openThroughStack(func(n int64) storage.Device { return storage.NewMemory(n) }, blkfront.Config{}))
	})
	t.Run("MemoryOneQueueNoIndirect", func(t *testing.T) {
		storagetest.Run(t, openThroughStack(func(n int64) storage.Device { return storage.NewMemory(n) },
			blkfront.Config{Queues: 1, MaxIndirectSegments: -1, RingPageOrder: 0}))
	})
	t.Run("MemoryNoPolling", func(t *testing.T) {
		// Every wait sleeps on the event channel (the frontend never
		// polls; the backend's poll window is the default): the
		// notification path alone carries the suite.
		storagetest.Run(t, openThroughStack(func(n int64) storage.Device { return storage.NewMemory(n) },
			blkfront.Config{NoPoll: true}))
	})
	// Grant-copy mode: the backend copies the guest's pages instead of
	// mapping them, with indirect requests and without.
	t.Run("MemoryGrantCopy", func(t *testing.T) {
		storagetest.Run(t, openThroughStackWith(func(n int64) storage.Device { return storage.NewMemory(n) },
			blkfront.Config{}, blkback.Config{GrantCopy: true}))
	})
	t.Run("MemoryGrantCopyOneQueueNoIndirect", func(t *testing.T) {
		storagetest.Run(t, openThroughStackWith(func(n int64) storage.Device { return storage.NewMemory(n) },
			blkfront.Config{Queues: 1, MaxIndirectSegments: -1, RingPageOrder: 0}, blkback.Config{GrantCopy: true}))
	})
}
