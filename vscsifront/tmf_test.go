package vscsifront_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
	"github.com/xenblk/xenblk/vscsifront"
)

// stuckDisk is a memory disk whose reads at stuckAt block, once armed,
// until released: the backend's one goroutine stays in that command, so
// what the frontend pushes meanwhile waits on the ring.
type stuckDisk struct {
	storagetest.Hooks
	entered, release chan struct{}
}

const stuckAt = 1 << 19

func newStuckDisk(size int64) *stuckDisk {
	d := &stuckDisk{entered: make(chan struct{}, 1), release: make(chan struct{})}
	d.Hooks = storagetest.Hooks{Device: storage.NewMemory(size), OnRead: func(off, n int64) error {
		if off == stuckAt {
			d.entered <- struct{}{}
			<-d.release
		}
		return nil
	}}
	return d
}

// hold sends a READ of the stuck block on l and returns once it holds
// the backend in the disk; the READ's end (an error for a status other
// than GOOD) comes on the channel returned.
func (d *stuckDisk) hold(t *testing.T, l *vscsifront.LUN) <-chan error {
	t.Helper()
	end := make(chan error, 1)
	go func() {
		res, err := l.ExecSCSI(context.Background(), scsitest.Read16(stuckAt/512, 8), scsi.DirFromDevice, make([]byte, 4096))
		if err == nil && res.Status != scsi.StatusGood {
			err = errors.New(scsi.StatusName(res.Status))
		}
		end <- err
	}()
	select {
	case <-d.entered:
	case <-time.After(waitFor):
		t.Fatal("the READ did not reach the disk")
	}
	return end
}

// TestAbortOnCancel: a command whose context ends while it is on the
// ring returns at once with the context's error; the frontend sends a
// TASK_ABORT for it, which the backend honours (the WRITE never reaches
// the disk), and the slot with its pages comes back only once both the
// command and the abort are answered.
func TestAbortOnCancel(t *testing.T) {
	disk := newStuckDisk(1 << 20)
	r := newRig(t, rigConfig{disks: map[string]storage.Device{"/img/a": disk}}, "/img/a, 0:0:0:0")
	l := r.lun(addr("0:0:0:0"))
	exec(t, l, tur, scsi.DirNone, nil) // the power-on unit attention

	stuck := disk.hold(t, l)

	ctx, cancel := context.WithCancel(context.Background())
	written := make(chan error, 1)
	go func() {
		_, err := l.ExecSCSI(ctx, scsitest.Write16(0, 8), scsi.DirToDevice, pattern(4096, 9))
		written <- err
	}()
	eventually.True(t, waitFor, "the WRITE on the ring", func() bool {
		s, _ := r.front.Slots()
		return s["issued"] == 2
	})
	cancel()
	select {
	case err := <-written:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled WRITE: %v, want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Fatal("the cancelled WRITE did not return")
	}
	eventually.True(t, waitFor, "the abort on the ring", func() bool {
		s, tmf := r.front.Slots()
		return tmf && s["orphaned"] == 1
	})

	close(disk.release)
	if err := <-stuck; err != nil {
		t.Fatalf("the READ before it: %v", err)
	}
	eventually.True(t, waitFor, "every slot free", func() bool {
		s, tmf := r.front.Slots()
		return !tmf && s["free"] == r.front.CommandSlots()
	})
	got := make([]byte, 4096)
	if _, err := disk.ReadAt(got, 0); err != nil || string(got) != string(make([]byte, 4096)) {
		t.Fatalf("the aborted WRITE reached the disk (%v)", err)
	}
	good(t, tur, exec(t, l, tur, scsi.DirNone, nil))
}

// TestLUNReset: RESET is answered RESET_SUCCESS and the LUN serves on;
// a LUN removed refuses it.
func TestLUNReset(t *testing.T) {
	r := newRig(t, rigConfig{disks: memDisks(1<<20, "/img/a")}, "/img/a, 0:0:0:0")
	l := r.lun(addr("0:0:0:0"))
	exec(t, l, tur, scsi.DirNone, nil)
	for range 3 {
		if err := l.Reset(ctxFor(t)); err != nil {
			t.Fatal(err)
		}
	}
	good(t, tur, exec(t, l, tur, scsi.DirNone, nil))
	if s, tmf := r.front.Slots(); tmf || s["free"] != r.front.CommandSlots() {
		t.Fatalf("after the resets: slots %v, task management on the ring %v", s, tmf)
	}
	r.front.DetachLUN(l.Index())
	if err := l.Reset(ctxFor(t)); !errors.Is(err, vscsifront.ErrGone) {
		t.Fatalf("reset of a removed LUN: %v", err)
	}
}

// TestRemoveEndsCommands: removing the vhost ends a command waiting on
// the ring at once with ErrClosed, though the backend has not answered
// it, and every LUN is gone.
func TestRemoveEndsCommands(t *testing.T) {
	disk := newStuckDisk(1 << 20)
	r := newRig(t, rigConfig{disks: map[string]storage.Device{"/img/a": disk}}, "/img/a, 0:0:0:0")
	l := r.lun(addr("0:0:0:0"))
	exec(t, l, tur, scsi.DirNone, nil)
	stuck := disk.hold(t, l)
	removed := make(chan struct{})
	go func() { r.front.Remove(); close(removed) }()
	select {
	case err := <-stuck:
		if !errors.Is(err, vscsifront.ErrClosed) {
			t.Fatalf("the READ in flight: %v, want ErrClosed", err)
		}
	case <-time.After(waitFor):
		t.Fatal("the READ in flight did not end with the vhost")
	}
	if !l.Gone() || len(r.front.LUNs()) != 0 {
		t.Fatal("a LUN outlived its vhost")
	}
	close(disk.release)
	select {
	case <-removed:
	case <-time.After(waitFor):
		t.Fatal("Remove did not return")
	}
	if _, err := l.ExecSCSI(ctxFor(t), tur, scsi.DirNone, nil); !errors.Is(err, vscsifront.ErrGone) {
		t.Fatalf("a command after removal: %v", err)
	}
}
