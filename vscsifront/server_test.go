package vscsifront_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/faultinject"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsifront"
)

// server is a vscsiback.Server serving dom0's backend/vscsi.
type server struct {
	srv  *vscsiback.Server
	done chan struct{} // closed when Serve returned
}

func startServer(t *testing.T, h *simHost, store pr.Store) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{srv: &vscsiback.Server{Domain: h.host.Dom0(), Log: quiet, Sysfs: t.TempDir(),
		Engines: scsiengine.New(scsiengine.Config{Reservations: store, Log: quiet})},
		done: make(chan struct{})}
	go func() {
		if err := s.srv.Serve(ctx); err != nil {
			t.Errorf("Serve: %v", err)
		}
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(waitFor):
			t.Error("Serve did not return")
		}
	})
	return s
}

// frontOnly makes vhost devID with one LUN ("PDEV, VDEV") and starts
// its frontend; whatever serves dom0's backend/vscsi serves it.
func (h *simHost) frontOnly(devID uint32, lun string) *rig {
	t := h.t
	t.Helper()
	r := &rig{simHost: h, tv: toolstack.Vhost{BackendDom: 0, FrontendDom: h.guest.ID(), DevID: devID}}
	var err error
	if r.front, err = vscsifront.New(vscsifront.Config{Domain: h.guest, Backend: 0, Log: quiet}); err != nil {
		t.Fatal(err)
	}
	if err := toolstack.CreateVhost(h.host.Store(), r.tv, spec(t, lun)); err != nil {
		t.Fatal(err)
	}
	stop := run(t, "frontend", r.front.Runner(h.guest.Store(), r.tv.FrontendPath(), r.tv.BackendPath()))
	t.Cleanup(stop)
	return r
}

func image(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAgainstServer: the frontend on a vhost that vscsiback's Server
// serves from an image file passes the storage conformance suite.
func TestAgainstServer(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
		h := newSimHost(t)
		startServer(t, h, pr.NewMemoryStore())
		r := h.frontOnly(0, image(t, size)+", 0:0:0:0")
		return r.device(r.lun(addr("0:0:0:0")))
	})
}

// TestServerRestart: the backend process dies under the frontend and a
// new one serves the vhost again: the frontend reconnects, a read
// submitted while no backend served is issued on the new ring, and what
// was written before the crash is there.
func TestServerRestart(t *testing.T) {
	h := newSimHost(t)
	store := pr.NewMemoryStore()
	s1 := startServer(t, h, store)
	r := h.frontOnly(0, image(t, 1<<20)+", 0:0:0:0")
	l := r.lun(addr("0:0:0:0"))
	dev := r.device(l)
	data := pattern(64<<10, 5)
	if _, err := dev.WriteAt(data, 4096); err != nil {
		t.Fatal(err)
	}
	if err := dev.Flush(); err != nil {
		t.Fatal(err)
	}

	faultinject.CrashVscsiBackend(s1.srv)
	<-s1.done
	read := make(chan error, 1)
	back := make([]byte, len(data))
	go func() {
		_, err := dev.ReadAt(back, 4096)
		read <- err
	}()
	startServer(t, h, store)
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("the read across the restart: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("the read across the restart did not end")
	}
	if !bytes.Equal(back, data) {
		t.Fatal("the data written before the crash is not there")
	}
}
