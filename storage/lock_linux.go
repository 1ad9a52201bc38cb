package storage

import (
	"errors"
	"os"

	"github.com/xenblk/xenblk/internal/imagelock"
)

// Lock says whom else an opener of an image or block device lets use it
// at the same time. OpenFile and OpenBlockDev take the lock (open file
// description locks on QEMU's bytes, internal/imagelock) before they read
// or change anything, and Close releases it.
type Lock uint8

const (
	// LockExclusive (the default): read-write, the opener is the image's
	// only user; read-only, it shares the image with other readers that
	// are not shared, and refuses every writer.
	LockExclusive Lock = iota
	// LockShared: the image is shared on purpose (a cluster disk fenced
	// with persistent reservations): it opens alongside other LockShared
	// users, writers included, and refuses every user that is not shared.
	LockShared
)

// ErrInUse: another user holds the image in a mode that excludes the
// opener's. The error (an *imagelock.InUseError) names the image, and the
// holders' pids where /proc shows them.
var ErrInUse = imagelock.ErrInUse

// lockImage locks the image open as f for an opener that writes unless
// readOnly. A file system that keeps no locks leaves the image unlocked,
// as QEMU does on one: refusing to serve would be worse than serving
// without the guard.
func lockImage(f *os.File, path string, readOnly bool, l Lock) error {
	err := imagelock.Acquire(f, path, imagelock.Mode{Write: !readOnly, Shared: l == LockShared})
	if errors.Is(err, imagelock.ErrUnsupported) {
		return nil
	}
	return err
}
