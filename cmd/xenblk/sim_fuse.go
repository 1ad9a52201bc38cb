package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/fuseexport"
	"github.com/xenblk/xenblk/storage"
)

// simFuse is sim's FUSE export: --fuse, where the guest's disk appears
// as a file, and --force, which lets Ctrl-C tear it down while it is in
// use.
type simFuse struct {
	dir   string
	force bool
}

func (s *simFuse) addFlags(f *pflag.FlagSet) {
	f.StringVar(&s.dir, "fuse", "", "also export the guest's disk as the file `DIR`/VDEV through FUSE (needs /dev/fuse, usually root)")
	f.BoolVar(&s.force, "force", false, "on Ctrl-C, stop even while the --fuse file is in use (whatever holds it gets I/O errors; exit 1)")
}

// checkFuseDir refuses, before anything starts, a --fuse that cannot be
// mounted: a path that exists and is not a directory (usage), or a
// machine without /dev/fuse.
func checkFuseDir(dir string) error {
	if dir == "" {
		return nil
	}
	st, err := os.Stat(dir)
	switch {
	case err == nil && !st.IsDir():
		return usagef("--fuse %s: not a directory; give a directory (created if absent) for the disk's file to appear in", dir)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return usagef("--fuse %s: %v", dir, err)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("--fuse %s: no /dev/fuse on this machine (load the fuse module, or leave --fuse out): %w", dir, err)
	}
	return nil
}

// start mounts the FUSE export when --fuse was given (a simExtra).
func (s *simFuse) start(_ context.Context, disk *blkfront.Disk, vdev string, out io.Writer) (stopper, error) {
	if s.dir == "" {
		return nil, nil
	}
	m, err := mountFuse(s.dir, vdev, disk.Device(), out)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// fuseMount is the guest's disk as the file dir/vdev. Something outside
// the process can hold it (holdable).
type fuseMount struct {
	e        *fuseexport.Export
	out      io.Writer
	detached atomic.Bool // Detach ran: nothing is left to unmount or wait for
}

// mountFuse exports dev as the file dir/name, creating dir if needed.
func mountFuse(dir, name string, dev storage.Device, out io.Writer) (*fuseMount, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("--fuse: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--fuse: %w", err)
	}
	e, err := fuseexport.Mount(dir, name, dev, fuseexport.Options{})
	if err != nil {
		return nil, fmt.Errorf("--fuse: %w", err)
	}
	fmt.Fprintf(out, "  FUSE     %s\n", e.Path)
	return &fuseMount{e: e, out: out}, nil
}

// Stop unmounts. If the file became busy since it was found free (a
// process or a loop device opened it, a shell sits in the directory), the
// mount is detached lazily rather than left behind without a server.
func (m *fuseMount) Stop() {
	if m.detached.Load() {
		return
	}
	err := m.e.Unmount()
	if err == nil {
		return
	}
	if derr := m.e.Detach(); derr != nil {
		fmt.Fprintf(m.out, "xenblk: %v; %v (detach loop devices on %s, then: umount %s)\n", err, derr, m.e.Path, m.e.Dir)
		return
	}
	fmt.Fprintf(m.out, "xenblk: %s was busy (%v); detached it lazily: whatever still holds it gets I/O errors\n", m.e.Dir, err)
}

// Detach takes the file away although it is held (holdable). The server
// is not waited for: it ends with the process, which is what makes the
// kernel fail the holder's I/O.
func (m *fuseMount) Detach() error {
	if m.detached.Swap(true) {
		return nil
	}
	if err := m.e.Detach(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err // EINVAL: Stop unmounted it already
	}
	return nil
}

// InUse says who holds the file: how many opens, which loop devices are
// set up on it and where those are mounted, and how to release them.
func (m *fuseMount) InUse() (string, <-chan struct{}) {
	n, changed := m.e.Handles()
	if n == 0 {
		return "", changed
	}
	handles := "1 open handle"
	if n != 1 {
		handles = fmt.Sprintf("%d open handles", n)
	}
	var holders, release []string
	for _, loop := range loopDevicesOn(m.e.Path) {
		mounts := mountPointsOf(loop)
		if len(mounts) == 0 {
			holders = append(holders, "loop device "+loop)
		} else {
			holders = append(holders, fmt.Sprintf("loop device %s mounted on %s", loop, strings.Join(mounts, ", ")))
		}
		for _, mp := range mounts {
			release = append(release, "umount "+mp)
		}
		release = append(release, "losetup -d "+loop)
	}
	if len(holders) == 0 {
		return fmt.Sprintf("%s is still open (%s; fuser -v %s shows which process)", m.e.Path, handles, m.e.Path), changed
	}
	return fmt.Sprintf("%s is still open (%s: %s); release it: %s",
		m.e.Path, handles, strings.Join(holders, ", "), strings.Join(release, "; ")), changed
}

// loopDevicesOn lists the loop devices whose backing file is path, as the
// kernel shows them in sysfs.
func loopDevicesOn(path string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)") == path {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return out
}

// mountPointsOf lists where dev is mounted, from /proc/self/mountinfo
// (fields: ... mount-point ... " - " fstype source ...).
func mountPointsOf(dev string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 2 || tail[1] != dev {
			continue
		}
		out = append(out, strings.ReplaceAll(fields[4], `\040`, " "))
	}
	return out
}
