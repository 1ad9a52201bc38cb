package stacktest

import (
	"context"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// openThroughStack serves a fresh device through our backend to our
// frontend on a simulated host, and returns the frontend's disk.
func openThroughStack(backing func(size int64) storage.Device, fcfg blkfront.Config) storagetest.Open {
	return openThroughStackWith(backing, fcfg, blkback.Config{})
}

// openThroughStackWith is openThroughStack with the backend's settings.
func openThroughStackWith(backing func(size int64) storage.Device, fcfg blkfront.Config, bcfg blkback.Config) storagetest.Open {
	return func(t *testing.T, size int64) storage.Device {
		h, err := sim.NewHost()
		if err != nil {
			t.Fatal(err)
		}
		g, _ := h.NewDomain("guest")
		dev := backing(size)
		ctx, cancel := context.WithCancel(context.Background())
		bcfg.Domain = h.Dom0()
		srv := &blkback.Server{Config: bcfg, BackendType: toolstack.DefaultBackendType,
			Open: func(xen.Store, string) (storage.Device, error) { return dev, nil }}
		done := make(chan struct{})
		go func() { srv.Serve(ctx); close(done) }()
		spec, _ := diskspec.Parse("vdev=xvda, target=conformance")
		vbd, _ := toolstack.NewVBD(0, g.ID(), spec)
		if err := toolstack.Create(h.Store(), vbd); err != nil {
			t.Fatal(err)
		}
		fcfg.Domain, fcfg.Dir = g, vbd.FrontendPath()
		octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
		defer ocancel()
		d, err := blkfront.Open(octx, fcfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			d.Close()
			cancel()
			<-done
		})
		return d.Device()
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
}
