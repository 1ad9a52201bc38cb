package stacktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// libxlDisk is one vbd as libxl (Xen 4.17) creates it for the xl disk
// 'format=raw, vdev=<vdev>, access=rw, target=<path>' of a PV guest served
// by dom0, node for node (xenlab/xl.sh logs what libxl wrote in the lab).
type libxlDisk struct {
	guest xen.DomID
	devID int
	vdev  string
	path  string
}

func (d libxlDisk) be() string {
	return fmt.Sprintf("/local/domain/0/backend/vbd/%d/%d", d.guest, d.devID)
}

func (d libxlDisk) fe() string {
	return fmt.Sprintf("/local/domain/%d/device/vbd/%d", d.guest, d.devID)
}

// add writes both directories in one transaction, as
// libxl__device_generic_add does: the backend's owned by dom0 and readable
// by the guest, the frontend's owned by the guest and readable by dom0.
func (d libxlDisk) add(st xen.Store) error {
	back := [][2]string{
		{"frontend", d.fe()}, {"params", d.path}, {"script", "/etc/xen/scripts/block"},
		{"frontend-id", fmt.Sprint(d.guest)}, {"online", "1"}, {"removable", "0"},
		{"bootable", "1"}, {"state", "1"}, {"dev", d.vdev}, {"type", "phy"},
		{"mode", "w"}, {"device-type", "disk"}, {"discard-enable", "1"},
	}
	front := [][2]string{
		{"backend-id", "0"}, {"virtual-device", fmt.Sprint(d.devID)}, {"device-type", "disk"},
		{"trusted", "1"}, {"backend", d.be()}, {"state", "1"},
	}
	bePerms := []xen.Perm{{Dom: 0}, {Dom: d.guest, Read: true}}
	fePerms := []xen.Perm{{Dom: d.guest}, {Dom: 0, Read: true}}
	return st.Transaction(func(tx xen.Tx) error {
		for _, dir := range []struct {
			path  string
			nodes [][2]string
			perms []xen.Perm
		}{{d.be(), back, bePerms}, {d.fe(), front, fePerms}} {
			if err := tx.Mkdir(dir.path); err != nil {
				return err
			}
			if err := tx.SetPerms(dir.path, dir.perms); err != nil {
				return err
			}
			for _, n := range dir.nodes {
				if err := tx.Write(dir.path+"/"+n[0], n[1]); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// libxl's timeouts (libxl_internal.h): LIBXL_INIT_TIMEOUT for the backend
// to reach InitWait, LIBXL_DESTROY_TIMEOUT for it to reach Closed.
const libxlTimeout = 10 * time.Second

// waitState waits, as libxl__ev_devstate_wait does, for the backend's
// state to be exactly want within libxl's timeout.
func (d libxlDisk) waitState(t *testing.T, st xen.Store, want xenbus.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), libxlTimeout)
	defer cancel()
	if _, err := xenbus.WaitNode(ctx, st, d.be()+"/state", xenbus.OneOf(want.Value())); err != nil {
		v, _ := st.Read(d.be() + "/state")
		t.Fatalf("%s: state %q, libxl wants %s: %v", d.be(), v, want, err)
	}
}

// hotplugAdd is what /etc/xen/scripts/block add does for a file, as the
// backend sees it: it refuses a device no longer in InitWait, then writes
// physical-device and hotplug-status (the loop device it also makes is
// its own affair).
func (d libxlDisk) hotplugAdd(st xen.Store) error {
	return st.Transaction(func(tx xen.Tx) error {
		state, err := tx.Read(d.be() + "/state")
		if err != nil || state != xenbus.InitWait.Value() {
			return fmt.Errorf("block add: path closed or removed during hotplug add: state %q (%v)", state, err)
		}
		for _, kv := range [][2]string{{"node", "/dev/loop0"}, {"physical-device", "7:0"},
			{"physical-device-path", "/dev/loop0"}, {xenbus.KeyHotplugStatus, xenbus.HotplugConnected}} {
			if err := tx.Write(d.be()+"/"+kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// remove is libxl__initiate_device_generic_remove and what follows: in
// one transaction online=0 and Closing (and, forced as xl destroy is, the
// frontend's directory removed), then exactly Closed within libxl's
// timeout, then both directories removed (libxl__device_destroy).
func (d libxlDisk) remove(t *testing.T, st xen.Store, force bool) {
	t.Helper()
	if err := st.Transaction(func(tx xen.Tx) error {
		if force {
			if err := tx.Remove(d.fe()); err != nil {
				return err
			}
		}
		state, err := tx.Read(d.be() + "/state")
		if err != nil {
			return err
		}
		if err := tx.Write(d.be()+"/online", "0"); err != nil {
			return err
		}
		if state == xenbus.Closed.Value() {
			return nil
		}
		return tx.Write(d.be()+"/state", xenbus.Closing.Value())
	}); err != nil {
		t.Fatal(err)
	}
	d.waitState(t, st, xenbus.Closed)
	for _, dir := range []string{d.be(), d.fe()} {
		if err := st.Remove(dir); err != nil && !errors.Is(err, xen.ErrNotFound) {
			t.Fatal(err)
		}
	}
}

// TestServesTheVBDsLibxlWrites: serve with backend type vbd takes the
// vbds an unmodified xl configuration makes, through libxl's sequence:
// InitWait within libxl's timeout, held there (no frontend connected,
// though it asks) until the hotplug script reports, so that the block
// script finds InitWait; then the guest's I/O lands in the image file
// params names; block-detach and destroy reach Closed in time and leave
// nothing served.
func TestServesTheVBDsLibxlWrites(t *testing.T) {
	s := simstack.ForTest(t, nil, simstack.Options{})
	h := s.Host
	log := slog.New(slog.DiscardHandler)
	srv := &blkback.Server{Config: blkback.Config{Domain: h.Dom0(), Log: log}, BackendType: "vbd", Open: vbd.Opener(log)}
	b := simstack.Serve(srv)
	t.Cleanup(func() { b.Stop() })
	st := h.Store()
	g, err := h.NewDomain("guest")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	disks := []libxlDisk{
		{guest: g.ID(), devID: 51712, vdev: "xvda", path: filepath.Join(dir, "d.img")},
		{guest: g.ID(), devID: 51728, vdev: "xvdb", path: filepath.Join(dir, "e.img")},
	}
	for _, d := range disks {
		if err := os.WriteFile(d.path, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	for i, d := range disks {
		if err := d.add(st); err != nil {
			t.Fatal(err)
		}
		d.waitState(t, st, xenbus.InitWait)
		// The guest's blkfront, as xl block-attach finds it: running,
		// it answers InitWait at once, before the script has run.
		opened := make(chan error, 1)
		var front *blkfront.Disk
		go func() {
			var err error
			front, err = blkfront.Open(context.Background(), blkfront.Config{Domain: g, Dir: d.fe(), Log: log})
			opened <- err
		}()
		eventually.True(t, 5*time.Second, "the frontend Initialised", func() bool {
			v, _ := st.Read(d.fe() + "/state")
			return v == xenbus.Initialised.Value() || v == xenbus.Connected.Value()
		})
		if err := d.hotplugAdd(st); err != nil {
			t.Fatalf("disk %d: %v (the backend did not wait for the hotplug script)", i, err)
		}
		select {
		case err := <-opened:
			if err != nil {
				t.Fatalf("disk %d: blkfront: %v", i, err)
			}
		case <-time.After(libxlTimeout):
			t.Fatalf("disk %d: the frontend did not connect after the hotplug script reported", i)
		}
		t.Cleanup(func() { front.Close() })
		want := bytes.Repeat([]byte{byte(0x40 + i)}, 4096)
		ctx := context.Background()
		if _, err := front.WriteAt(ctx, want, 8192); err != nil {
			t.Fatal(err)
		}
		if err := front.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		f, err := os.Open(d.path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.ReadAt(got, 8192)
		f.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("disk %d: the image at params does not hold the guest's write (%v)", i, err)
		}
	}

	// xl block-detach xvdb: the guest's frontend closes; Closed in time.
	disks[1].remove(t, st, false)
	eventually.True(t, 5*time.Second, "xvdb no longer served", func() bool { return srv.VBD(disks[1].be()) == nil })
	// xl destroy: the guest paused, its frontend's directory removed with
	// the Closing; Closed in time all the same.
	disks[0].remove(t, st, true)
	eventually.True(t, 5*time.Second, "xvda no longer served", func() bool { return srv.VBD(disks[0].be()) == nil })
	h.Destroy(g.ID())
	if v := srv.VBDs(); len(v) != 0 {
		t.Fatalf("still serving %s after the guest's destruction", strings.Join(v, ", "))
	}
}
