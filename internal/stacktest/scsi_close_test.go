package stacktest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
)

// closingEngine counts Close calls on a SCSI engine.
type closingEngine struct {
	*emulate.Engine
	closed *atomic.Int32
}

func (e closingEngine) Close() error { e.closed.Add(1); return nil }

var _ scsi.Fencer = closingEngine{}

// TestRemovedVBDClosesItsSCSIEngine: an engine that holds something of
// its own (an SG_IO disk) is closed when its vbd is removed.
func TestRemovedVBDClosesItsSCSIEngine(t *testing.T) {
	var closed atomic.Int32
	s := newStackWith(t, 1<<20, blkfront.Config{}, blkback.Config{
		SCSI: func(dir string, dev storage.Device) (blkback.SCSIExecutor, error) {
			return closingEngine{emulate.New(dev, emulate.Config{Identity: dir}), &closed}, nil
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := toolstack.Remove(ctx, s.host.Store(), s.vbd, false); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, "the removed vbd's SCSI engine closed", func() bool { return closed.Load() != 0 })
	if n := closed.Load(); n != 1 {
		t.Fatalf("closed %d times", n)
	}
}
