package vbd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/qcow2"
)

// OpenImage opens the disk at path in format: raw (storage.OpenImage: an
// image file or a block device) or qcow2 (storage/qcow2: an image file,
// locked as o.Lock says, its backing chain opened read-only and locked
// as a reader). A missing qcow2 image is created with o.Create bytes
// (qcow2.Create) when o.Create > 0. It reports whether it created the
// image.
//
// Backing files are followed as the qcow2 package does and CheckQcow2
// checks: a backing name is absolute or relative to the directory of
// the image naming it, and must exist.
func OpenImage(path string, format diskspec.Format, o storage.ImageOptions) (storage.Device, bool, error) {
	switch format {
	case diskspec.FormatRaw, "":
		return storage.OpenImage(path, o)
	case diskspec.FormatQcow2:
	default:
		return nil, false, fmt.Errorf("disk %s: format %s (xenblk serves raw and qcow2)", path, format)
	}
	if err := checkQcow2Options(path, o); err != nil {
		return nil, false, err
	}
	created := false
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := storage.DanglingLink(path); err != nil {
			return nil, false, err
		}
		if o.Create <= 0 || o.ReadOnly {
			return nil, false, fmt.Errorf("disk image %s does not exist", path)
		}
		if err := qcow2.Create(path, o.Create); err != nil {
			return nil, false, err
		}
		created = true
	}
	if err := CheckQcow2(path); err != nil {
		if created {
			os.Remove(path)
		}
		return nil, false, err
	}
	d, err := qcow2.Open(path, qcow2.Options{ReadOnly: o.ReadOnly, LogicalBlockSize: o.SectorSize, Lock: o.Lock})
	if err != nil {
		if created {
			os.Remove(path)
		}
		return nil, false, err
	}
	return d, created, nil
}

// checkQcow2Options refuses the options a qcow2 image cannot honour.
func checkQcow2Options(path string, o storage.ImageOptions) error {
	switch {
	case o.PhysicalSectorSize != 0:
		return fmt.Errorf("qcow2 image %s: %s applies to raw images (a qcow2 image reports 4096-byte physical sectors)", path, diskspec.KeyPhysicalSectorSize)
	case o.SetRotationRate:
		return fmt.Errorf("qcow2 image %s: %s applies to raw images", path, diskspec.KeyRotationRate)
	case o.Direct:
		return fmt.Errorf("qcow2 image %s: %s applies to raw images", path, diskspec.KeyDirect)
	}
	return nil
}

// ErrNotQcow2: a file to be opened as qcow2 does not begin with qcow2's
// magic and version.
var ErrNotQcow2 = errors.New("not a qcow2 image (it does not begin with QFI\\xfb and version 2 or 3)")

// IsQcow2 says whether the regular file at path begins with qcow2's
// magic and version (2 or 3); false when it cannot be read.
func IsQcow2(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [8]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return false
	}
	return string(head[:4]) == "QFI\xfb" && head[4]|head[5]|head[6] == 0 && (head[7] == 2 || head[7] == 3)
}

// maxChain bounds the backing chain CheckQcow2 follows (the qcow2
// package refuses longer ones too).
const maxChain = 64

// CheckQcow2 checks, without opening anything for writing or locking
// anything, what serving the qcow2 image at path will open: its header
// reads as qcow2's, and each backing file in its chain — named
// absolute, or relative to the directory of the image naming it —
// exists, is a regular file, and is a qcow2 or raw image. This is the
// backing-file policy for images served to guests: a name that does not
// resolve to such a file (a protocol such as nbd: or json:, a device, a
// file that is not there) is refused, never looked up anywhere else.
func CheckQcow2(path string) error {
	for depth := 0; ; depth++ {
		if depth > maxChain {
			return fmt.Errorf("qcow2 image %s: backing chain longer than %d images (or a loop)", path, maxChain)
		}
		h, err := readQcow2Header(path)
		if err != nil {
			return err
		}
		if h.BackingFile == "" {
			return nil
		}
		b := h.BackingFile
		if !filepath.IsAbs(b) {
			b = filepath.Join(filepath.Dir(path), b)
		}
		st, err := os.Stat(b)
		if err != nil {
			return fmt.Errorf("qcow2 image %s names backing file %q, which resolves to %s (backing files are absolute or relative to the image's directory): %w", path, h.BackingFile, b, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("qcow2 image %s: backing file %s is not a regular file (%s)", path, b, st.Mode().Type())
		}
		format := h.BackingFormat
		if format == "" {
			format = "raw"
			if IsQcow2(b) {
				format = "qcow2"
			}
		}
		switch format {
		case "raw":
			return nil
		case "qcow2":
			path = b
		default:
			return fmt.Errorf("qcow2 image %s: backing file %s has format %q (xenblk reads qcow2 and raw)", path, b, format)
		}
	}
}

// readQcow2Header reads and checks the header of the qcow2 image at path.
func readQcow2Header(path string) (*qcow2.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("qcow2 image %s is not a regular file (%s)", path, st.Mode().Type())
	}
	if !IsQcow2(path) {
		return nil, fmt.Errorf("%s is %w", path, ErrNotQcow2)
	}
	b := make([]byte, min(st.Size(), 2<<20))
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("qcow2 image %s: read header: %w", path, err)
	}
	h, err := qcow2.ParseHeader(b, st.Size())
	if err != nil {
		return nil, fmt.Errorf("qcow2 image %s: %w", path, err)
	}
	return h, nil
}
