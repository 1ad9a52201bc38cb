package vscsifront_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vscsifront"
	"github.com/xenblk/xenblk/vscsiif"
)

// ringCommands is what vscsiif's one-page ring holds of commands: 16
// slots, one kept for task management.
const ringCommands = 15

// TestPendingBeyondTheRing: with the backend held in a command, the
// ring fills with commands and the ones after wait pending in the
// frontend, complete. One given up while pending returns at once and
// sends no TASK_ABORT (the backend never saw it); a LUN RESET answers
// the LUN's pending commands at once, host RESET, as the backend
// answers the ones on the ring its reset clears, while another LUN's
// pending command stays queued and is served once the backend answers.
func TestPendingBeyondTheRing(t *testing.T) {
	disk := newStuckDisk(1 << 20)
	r := newRig(t, rigConfig{disks: map[string]storage.Device{"/img/a": disk, "/img/b": storage.NewMemory(1 << 20)}},
		"/img/a, 0:0:0:0", "/img/b, 0:0:0:1")
	a, b := r.lun(addr("0:0:0:0")), r.lun(addr("0:0:0:1"))
	exec(t, a, tur, scsi.DirNone, nil) // the power-on unit attentions
	exec(t, b, tur, scsi.DirNone, nil)

	type result struct {
		name string
		err  error
	}
	results := make(chan result, 32)
	send := func(name string, ctx context.Context, l *vscsifront.LUN, cdb []byte, dir scsi.Direction, buf []byte) {
		go func() {
			res, err := l.ExecSCSI(ctx, cdb, dir, buf)
			if err == nil && res.Status != scsi.StatusGood {
				err = fmt.Errorf("status %s", scsi.StatusName(res.Status))
			}
			results <- result{name, err}
		}()
	}
	slotsAre := func(what string, issued, submitted int, tmf bool) {
		t.Helper()
		eventually.True(t, waitFor, what, func() bool {
			s, onRing := r.front.Slots()
			return s["issued"] == issued && s["submitted"] == submitted && onRing == tmf
		})
	}

	stuck := disk.hold(t, a)
	for i := range ringCommands - 1 {
		send(fmt.Sprintf("a on the ring %d", i), context.Background(), a, tur, scsi.DirNone, nil)
	}
	slotsAre("the ring full of commands", ringCommands, 0, false)
	for i := range 3 {
		send(fmt.Sprintf("a pending %d", i), context.Background(), a, tur, scsi.DirNone, nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	send("b given up", ctx, b, tur, scsi.DirNone, nil)
	send("b pending", context.Background(), b, tur, scsi.DirNone, nil)
	slotsAre("five pending", ringCommands, 5, false)

	cancel()
	if got := <-results; got.name != "b given up" || !errors.Is(got.err, context.Canceled) {
		t.Fatalf("%s: %v; want b given up: context.Canceled", got.name, got.err)
	}
	slotsAre("no abort for a pending command", ringCommands, 4, false)

	resetDone := make(chan error, 1)
	go func() { resetDone <- a.Reset(ctxFor(t)) }()
	for range 3 {
		var he *vscsifront.HostError
		if got := <-results; got.name[:9] != "a pending" || !errors.As(got.err, &he) || he.Host != vscsiif.HostReset {
			t.Fatalf("%s: %v; want a pending command cleared by the reset: host RESET", got.name, got.err)
		}
	}
	slotsAre("the reset on the ring, b still pending", ringCommands, 1, true)

	close(disk.release)
	if err := <-resetDone; err != nil {
		t.Fatalf("LUN RESET: %v", err)
	}
	if err := <-stuck; err != nil {
		t.Errorf("the READ holding the backend: %v", err)
	}
	for range ringCommands {
		got := <-results
		var he *vscsifront.HostError
		switch {
		case got.name == "b pending":
			if got.err != nil {
				t.Errorf("%s: %v", got.name, got.err)
			}
		case !errors.As(got.err, &he) || he.Host != vscsiif.HostReset:
			t.Errorf("%s: %v; want host RESET (on the ring before the reset)", got.name, got.err)
		}
	}
	eventually.True(t, waitFor, "every slot free", func() bool {
		s, onRing := r.front.Slots()
		return !onRing && s["free"] == r.front.CommandSlots()
	})
}

// TestRemoveEndsPending: removing the vhost ends the commands pending
// for room on the ring with ErrClosed, as those on it.
func TestRemoveEndsPending(t *testing.T) {
	disk := newStuckDisk(1 << 20)
	r := newRig(t, rigConfig{disks: map[string]storage.Device{"/img/a": disk}}, "/img/a, 0:0:0:0")
	l := r.lun(addr("0:0:0:0"))
	exec(t, l, tur, scsi.DirNone, nil)
	errs := make(chan error, ringCommands+2)
	stuck := disk.hold(t, l)
	for range ringCommands + 2 {
		go func() {
			_, err := l.ExecSCSI(context.Background(), tur, scsi.DirNone, nil)
			errs <- err
		}()
	}
	eventually.True(t, waitFor, "three pending", func() bool {
		s, _ := r.front.Slots()
		return s["submitted"] == 3
	})
	removed := make(chan struct{})
	go func() { r.front.Remove(); close(removed) }()
	for range ringCommands + 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, vscsifront.ErrClosed) {
				t.Fatalf("a command at removal: %v, want ErrClosed", err)
			}
		case <-time.After(waitFor):
			t.Fatal("a command did not end with the vhost")
		}
	}
	if err := <-stuck; !errors.Is(err, vscsifront.ErrClosed) {
		t.Fatalf("the READ on the ring at removal: %v, want ErrClosed", err)
	}
	close(disk.release)
	select {
	case <-removed:
	case <-time.After(waitFor):
		t.Fatal("Remove did not return")
	}
}

// TestDeepQueueRace: more callers than the vhost has slots, more slots
// than the ring has room, each writing and reading back its own blocks
// and now and then giving up on a read (pending, on the ring or just
// answered): every caller gets its own data back, and every slot comes
// back free with nothing on the ring.
func TestDeepQueueRace(t *testing.T) {
	const callers, rounds, depth = 40, 25, 24
	r := newRig(t, rigConfig{disks: memDisks(callers*8192, "/img/a"), front: vscsifront.Config{QueueDepth: depth}},
		"/img/a, 0:0:0:0")
	l := r.lun(addr("0:0:0:0"))
	dev := r.device(l)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			off := int64(c) * 8192
			got := make([]byte, 4096)
			for i := range rounds {
				want := pattern(4096, byte(c*rounds+i))
				if _, err := dev.WriteAt(want, off); err != nil {
					t.Errorf("caller %d: write: %v", c, err)
					return
				}
				if rng.IntN(3) == 0 {
					ctx, cancel := context.WithCancel(context.Background())
					go cancel()
					_, err := l.ExecSCSI(ctx, scsitest.Read16(uint64(off/512)+8, 8), scsi.DirFromDevice, got)
					if err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("caller %d: read given up: %v", c, err)
						return
					}
				}
				if _, err := dev.ReadAt(got, off); err != nil {
					t.Errorf("caller %d: read: %v", c, err)
					return
				}
				if !bytes.Equal(got, want) {
					t.Errorf("caller %d: round %d read back other data", c, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually.True(t, waitFor, "every slot free", func() bool {
		s, onRing := r.front.Slots()
		return !onRing && s["free"] == depth
	})
}
