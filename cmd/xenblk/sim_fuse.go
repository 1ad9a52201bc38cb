package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/fuseexport"
)

// simFuseDir is sim's --fuse flag: where the guest's disk appears as a file.
var simFuseDir string

func init() {
	simCmd.Flags().StringVar(&simFuseDir, "fuse", "", "also export the guest's disk as the file `DIR`/VDEV through FUSE (needs /dev/fuse, usually root)")
	simExtras = append(simExtras, startSimFuse)
}

// startSimFuse mounts the FUSE export when --fuse was given.
func startSimFuse(_ context.Context, disk *blkfront.Disk, vdev string, out io.Writer) (func(), error) {
	if simFuseDir == "" {
		return func() {}, nil
	}
	return mountFuse(simFuseDir, vdev, disk, out)
}

// mountFuse exports disk as the file dir/vdev, creating dir if needed, and
// returns how to unmount it. Unmounting fails while the file is busy (a
// loop device on it); the failure is reported to out, not hidden.
func mountFuse(dir, vdev string, disk *blkfront.Disk, out io.Writer) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--fuse: %w", err)
	}
	e, err := fuseexport.Mount(dir, vdev, disk.Device(), fuseexport.Options{})
	if err != nil {
		return nil, fmt.Errorf("--fuse: %w", err)
	}
	fmt.Fprintf(out, "  FUSE     %s\n", e.Path)
	return func() {
		if err := e.Unmount(); err != nil {
			fmt.Fprintf(out, "xenblk: %v (detach loop devices on %s, then: fusermount3 -u %s)\n", err, e.Path, e.Dir)
		}
	}, nil
}
