package storage_test

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/xenblk/xenblk/storage"
)

func TestMapReportsHoles(t *testing.T) {
	file, err := storage.OpenFile(filepath.Join(t.TempDir(), "img"), storage.FileOptions{Create: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	hole := func(n int64) storage.Extent { return storage.Extent{Length: n, Hole: true, Zero: true} }
	data := func(n int64) storage.Extent { return storage.Extent{Length: n} }
	for _, tc := range []struct {
		name string
		dev  storage.Device
	}{{"memory", storage.NewMemory(4 << 20)}, {"file", file}} {
		t.Run(tc.name, func(t *testing.T) {
			dev := tc.dev
			check := func(off, n int64, want ...storage.Extent) {
				t.Helper()
				got, err := storage.Map(dev, off, n)
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Fatalf("Map(%d, %d) = %v %v, want %v", off, n, got, err, want)
				}
			}
			check(0, 4<<20, hole(4<<20))
			if _, err := dev.WriteAt(make([]byte, 64<<10), 1<<20); err != nil {
				t.Fatal(err)
			}
			check(0, 4<<20, hole(1<<20), data(64<<10), hole(3<<20-64<<10))
			check(1<<20+100, 1000, data(1000)) // within the data
			check(100, 1<<20, hole(1<<20-100), data(100))
			if err := dev.Discard(1<<20, 64<<10, false); err != nil {
				t.Fatal(err)
			}
			check(0, 4<<20, hole(4<<20))
			if _, err := storage.Map(dev, 4<<20-1, 2); !errors.Is(err, storage.ErrOutOfRange) {
				t.Fatalf("Map past the end: %v", err)
			}
		})
	}
}

// A device that cannot map reports all data.
func TestMapFallsBackToData(t *testing.T) {
	got, err := storage.Map(storage.Null{Size: 1 << 20}, 4096, 8192)
	if err != nil || !reflect.DeepEqual(got, []storage.Extent{{Length: 8192}}) {
		t.Fatalf("Map of a device without a map: %v %v", got, err)
	}
	if _, err := storage.Map(storage.Null{Size: 1 << 20}, 1<<20, 1); !errors.Is(err, storage.ErrOutOfRange) {
		t.Fatalf("out of range: %v", err)
	}
}
