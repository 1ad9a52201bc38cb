package storage_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// TestBlockDev runs the conformance suite against a loop device over a
// file, as root (CI is root; elsewhere it says why it skips: loopBlockDev).
func TestBlockDev(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device { return loopBlockDev(t, size) })
}

func TestOpenPicksTheKind(t *testing.T) {
	img := filepath.Join(t.TempDir(), "d.img")
	os.WriteFile(img, make([]byte, 1<<20), 0o644)
	d, err := storage.Open(img, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := d.(*storage.File); !ok || !d.Info().ReadOnly {
		t.Fatalf("Open of a regular file gave %T", d)
	}
	if _, err := storage.OpenBlockDev(img, storage.BlockDevOptions{ReadOnly: true}); err == nil {
		t.Fatal("OpenBlockDev accepted a regular file")
	}
}
