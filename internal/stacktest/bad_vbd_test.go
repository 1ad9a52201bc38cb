package stacktest

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// A vbd the backend cannot build a device for (here its SCSI engine
// cannot be made: a bad scsi-policy) stays unconnected with the reason in
// its error node, its disk is closed, and the backend does not retry it
// on every event in its area (the error node's own write is one).
func TestUnbuildableVBDGetsAnErrorNodeOnce(t *testing.T) {
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	g, _ := h.NewDomain("guest")
	var opened, provided atomic.Int32
	srv := &blkback.Server{
		Config: blkback.Config{Domain: h.Dom0(), Log: slog.New(slog.DiscardHandler),
			SCSI: func(dir string, dev storage.Device) (blkback.SCSIExecutor, error) {
				provided.Add(1)
				return nil, errors.New("scsi-policy of " + dir + ": policy file missing")
			}},
		BackendType: toolstack.DefaultBackendType,
		Open: func(xen.Store, string) (storage.Device, error) {
			opened.Add(1)
			return storage.NewMemory(1 << 20), nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	spec, _ := diskspec.Parse("vdev=xvda, target=bad")
	vbd, _ := toolstack.NewVBD(0, g.ID(), spec)
	if err := toolstack.Create(h.Store(), vbd); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := h.Store().Read(vbd.BackendPath() + "/error")
		if err == nil && strings.Contains(v, "policy file missing") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("error node %q, %v: want the SCSI engine's reason", v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// More events in the area (another node written) must not rebuild it.
	h.Store().Write(vbd.BackendPath()+"/note", "x")
	time.Sleep(200 * time.Millisecond)
	if o, p := opened.Load(), provided.Load(); o != 1 || p != 1 {
		t.Errorf("disk opened %d times, engine asked for %d times: want once each", o, p)
	}
}
