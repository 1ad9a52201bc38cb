package vscsifront_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vscsifront"
)

// TestLUNHotAddAndRemove: a LUN the toolstack adds to the running vhost
// (Reconfiguring) appears in the frontend and serves; one it removes
// disappears, its handle then refusing every command with ErrGone,
// while the other LUN serves throughout. OnLUNs hears each change.
func TestLUNHotAddAndRemove(t *testing.T) {
	var changes atomic.Int32
	r := newRig(t, rigConfig{disks: memDisks(1<<20, "/img/a", "/img/b"),
		front: vscsifront.Config{OnLUNs: func() { changes.Add(1) }}}, "/img/a, 0:0:0:0")
	a := r.lun(addr("0:0:0:0"))
	exec(t, a, tur, scsi.DirNone, nil)
	before := changes.Load()

	n, err := toolstack.AddLUN(ctxFor(t), r.host.Store(), r.tv, spec(t, "/img/b, 0:0:1:0"))
	if err != nil {
		t.Fatal(err)
	}
	b := r.lun(addr("0:0:1:0"))
	if b.Index() != n {
		t.Fatalf("the new LUN is dev-%d, the toolstack made dev-%d", b.Index(), n)
	}
	exec(t, b, tur, scsi.DirNone, nil) // its nexus's power-on unit attention
	good(t, tur, exec(t, b, tur, scsi.DirNone, nil))
	good(t, tur, exec(t, a, tur, scsi.DirNone, nil))
	if changes.Load() <= before {
		t.Fatal("OnLUNs not called for the added LUN")
	}

	before = changes.Load()
	if err := toolstack.RemoveLUN(ctxFor(t), r.host.Store(), r.tv, 0, false); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "LUN 0:0:0:0 removed", func() bool {
		_, ok := r.front.LUNAt(0, 0, 0)
		return !ok && a.Gone()
	})
	if _, err := a.ExecSCSI(ctxFor(t), tur, scsi.DirNone, nil); !errors.Is(err, vscsifront.ErrGone) {
		t.Fatalf("a command on the removed LUN: %v, want ErrGone", err)
	}
	if _, err := a.Device(ctxFor(t)); !errors.Is(err, vscsifront.ErrGone) {
		t.Fatalf("the removed LUN's Device: %v, want ErrGone", err)
	}
	good(t, tur, exec(t, b, tur, scsi.DirNone, nil))
	if changes.Load() <= before {
		t.Fatal("OnLUNs not called for the removed LUN")
	}
	if luns := r.front.LUNs(); len(luns) != 1 || luns[n] != b {
		t.Fatalf("LUNs %v, want dev-%d only", luns, n)
	}
}
