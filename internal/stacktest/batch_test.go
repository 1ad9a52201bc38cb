package stacktest

import (
	"path/filepath"
	"testing"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// openFile makes a fresh sparse image of size bytes in the test's
// directory, opened with opt.
func openFile(t *testing.T, opt storage.FileOptions) func(size int64) storage.Device {
	return func(size int64) storage.Device {
		opt.Create = size
		f, err := storage.OpenFile(filepath.Join(t.TempDir(), "disk.img"), opt)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
}

// The conformance suite through the stack over image files: blkback
// carries out each pass's reads and writes as one storage.Batch, which on
// a File is an io_uring submission (buffered, and O_DIRECT where segments
// are not aligned the batch falls back to bounce buffers).
func TestConformanceThroughTheStackOverFiles(t *testing.T) {
	t.Run("File", func(t *testing.T) {
		storagetest.Run(t, openThroughStack(openFile(t, storage.FileOptions{}), blkfront.Config{}))
	})
	t.Run("FileDirect", func(t *testing.T) {
		storagetest.Run(t, openThroughStack(openFile(t, storage.FileOptions{Direct: true}), blkfront.Config{}))
	})
	t.Run("FileOneQueueNoIndirect", func(t *testing.T) {
		storagetest.Run(t, openThroughStack(openFile(t, storage.FileOptions{}),
			blkfront.Config{Queues: 1, MaxIndirectSegments: -1}))
	})
}

// A persistent-grant set far smaller than what one pass keeps in flight:
// mapping the later requests of a batch must not evict (unmap) the pages
// of the earlier ones before the batch has carried them out. Were it to,
// reads would land in unmapped memory and the suite's data checks (and
// its many-goroutines case) would fail or crash.
func TestBatchKeepsItsPersistentPagesMapped(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backing func(size int64) storage.Device
	}{
		{"Memory", func(n int64) storage.Device { return storage.NewMemory(n) }},
		{"File", openFile(t, storage.FileOptions{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storagetest.Run(t, openThroughStackWith(tc.backing, blkfront.Config{Queues: 1},
				blkback.Config{PersistentGrants: 2}))
		})
	}
}
