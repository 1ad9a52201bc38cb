package stacktest

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
)

// A vbd the backend cannot build a device for (here its SCSI engine
// cannot be made: a bad scsi-policy) stays unconnected with the reason in
// its error node, its disk is closed, and the backend does not retry it
// on every event in its area (the error node's own write is one).
func TestUnbuildableVBDGetsAnErrorNodeOnce(t *testing.T) {
	s := simstack.ForTest(t, nil, simstack.Options{})
	h := s.Host
	g, _ := h.NewDomain("guest")
	spec, _ := diskspec.Parse("vdev=xvda, target=bad")
	vbd, _ := toolstack.NewVBD(0, g.ID(), spec)
	// A good vbd made later shows when the server has handled the events
	// that came before it.
	goodSpec, _ := diskspec.Parse("vdev=xvdb, target=good")
	good, _ := toolstack.NewVBD(0, g.ID(), goodSpec)
	var opened, provided atomic.Int32 // for the bad vbd
	srv := s.Serve(blkback.Config{Log: slog.New(slog.DiscardHandler),
		SCSI: func(dir string, dev storage.Device) (blkback.SCSIExecutor, error) {
			if dir != vbd.BackendPath() {
				return emulate.New(dev, emulate.Config{Identity: dir}), nil
			}
			provided.Add(1)
			return nil, errors.New("scsi-policy of " + dir + ": policy file missing")
		}}, func(_ xen.Store, dir string) (storage.Device, error) {
		if dir == vbd.BackendPath() {
			opened.Add(1)
		}
		return storage.NewMemory(1 << 20), nil
	}).Server
	if err := toolstack.Create(h.Store(), vbd); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, "the error node giving the SCSI engine's reason", func() bool {
		v, err := h.Store().Read(vbd.BackendPath() + "/error")
		return err == nil && strings.Contains(v, "policy file missing")
	})
	// More events in the area (another node written, another vbd made)
	// must not rebuild it. The server handles events one by one, each
	// with a scan of the whole area: once it has started the good vbd
	// and waits for the next event, it has scanned after the note.
	h.Store().Write(vbd.BackendPath()+"/note", "x")
	if err := toolstack.Create(h.Store(), good); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, "the server starting the good vbd", func() bool { return srv.VBD(good.BackendPath()) != nil })
	eventually.Blocked(t, 5*time.Second, "blkback.(*Server).Serve", "select")
	if o, p := opened.Load(), provided.Load(); o != 1 || p != 1 {
		t.Errorf("disk opened %d times, engine asked for %d times: want once each", o, p)
	}
}
