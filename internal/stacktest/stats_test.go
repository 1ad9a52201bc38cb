package stacktest

import (
	"context"
	"testing"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/faultinject"
)

// A device's counters (Linux blkback's rd_req, wr_req, f_req, ds_req,
// rd_sect, wr_sect, plus error answers) count exactly what the frontend
// asked, through the batch path and the synchronous one alike.
func TestDeviceStatsCountWhatWasAsked(t *testing.T) {
	s := newStack(t, 4<<20, blkfront.Config{Queues: 2})
	ctx := context.Background()
	dev := s.server.VBD(s.vbd.BackendPath())
	if dev == nil {
		t.Fatal("no device for the vbd")
	}
	before := dev.Stats()
	buf := make([]byte, 64<<10) // 128 sectors: one indirect or direct request each
	for i := 0; i < 10; i++ {
		if _, err := s.front.WriteAt(ctx, buf, int64(i)*int64(len(buf))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 7; i++ {
		if _, err := s.front.ReadAt(ctx, buf[:4096], int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.front.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.front.Discard(ctx, 0, 1<<20, false); err != nil {
		t.Fatal(err)
	}
	got := dev.Stats()
	delta := blkback.Stats{
		ReadRequests:    got.ReadRequests - before.ReadRequests,
		WriteRequests:   got.WriteRequests - before.WriteRequests,
		FlushRequests:   got.FlushRequests - before.FlushRequests,
		DiscardRequests: got.DiscardRequests - before.DiscardRequests,
		ReadSectors:     got.ReadSectors - before.ReadSectors,
		WriteSectors:    got.WriteSectors - before.WriteSectors,
		ErrorResponses:  got.ErrorResponses - before.ErrorResponses,
	}
	want := blkback.Stats{ReadRequests: 7, WriteRequests: 10, FlushRequests: 1, DiscardRequests: 1,
		ReadSectors: 7 * 8, WriteSectors: 10 * 128}
	if delta != want {
		t.Errorf("counted %+v\nwant    %+v", delta, want)
	}
	// The counters outlive the connection: once its queues are stopped,
	// they are folded into the device's totals.
	faultinject.DisconnectVBD(dev)
	if after := dev.Stats(); after != got {
		t.Errorf("after the queues stopped: %+v\nwant the same as before: %+v", after, got)
	}
}
