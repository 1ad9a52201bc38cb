package bench

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/storage"
)

// imagePath is the file behind a backend's device, "" for those with none.
func imagePath(backend string, o Options) string {
	switch backend {
	case "file":
		return filepath.Join(o.Dir, benchImage)
	case "qcow2":
		return filepath.Join(o.Dir, benchQcow2)
	}
	return ""
}

// recache puts the image file at path in the page cache as small pages,
// whatever its history, by writing dev's size bytes again (fill's
// bytes, so nothing changes) 4 KiB at a time into a cache emptied first,
// then writing them back. Without it the two sides of a comparison start
// unlike: a file just written in 1 MiB writes (a fresh qcow2 image, or a
// new raw one) is cached in large folios, and every 4 KiB random write
// then dirties, and sends back to disk, a whole folio: about ten times
// the CPU of the same write into 4 KiB pages.
func recache(dev storage.Device, path string) error {
	if err := dev.Flush(); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	f.Close()
	if err != nil {
		return fmt.Errorf("bench: drop %s from the page cache: %w", path, err)
	}
	size := dev.Info().Size
	buf := fillPattern()
	for off := int64(0); off < size; off += 4096 {
		k := min(4096, size-off)
		at := off % int64(len(buf))
		if _, err := dev.WriteAt(buf[at:at+k], off); err != nil {
			return err
		}
	}
	return dev.Flush()
}
