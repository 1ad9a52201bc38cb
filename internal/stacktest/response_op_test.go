package stacktest

import (
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// TestResponseOperation: every response names the request's operation,
// except an indirect request's, which names the inner read or write —
// what Linux's blkback sends and Linux's blkfront insists on (found in the
// Xen lab: answering BLKIF_OP_INDIRECT made the kernel disable the disk).
func TestResponseOperation(t *testing.T) {
	s := simstack.ForTest(t, storage.NewMemory(1<<20), simstack.Options{})
	g, _ := s.Host.NewDomain("guest")
	raw := newRawFront(t, s.Host, g, "xvda")
	ipage := raw.data.Mem[:xen.PageSize]
	blkif.EncodeIndirectSegment([][]byte{ipage}, 0, blkif.Segment{Gref: uint32(raw.data.Refs[1]), FirstSect: 0, LastSect: 7})
	for _, c := range []struct {
		req  blkif.Request
		want uint8
	}{
		{blkif.Request{ID: 1, Operation: blkif.OpRead, NrSegments: 1, Seg: one(uint32(raw.data.Refs[1]), 0, 7)}, blkif.OpRead},
		{blkif.Request{ID: 2, Operation: blkif.OpWrite, NrSegments: 1, Seg: one(uint32(raw.data.Refs[1]), 0, 7)}, blkif.OpWrite},
		{blkif.Request{ID: 3, Operation: blkif.OpFlushDiskcache}, blkif.OpFlushDiskcache},
		{blkif.Request{ID: 4, Operation: blkif.OpIndirect, IndirectOp: blkif.OpRead, NrSegments: 1, IndirectGrefs: [8]uint32{uint32(raw.data.Refs[0])}}, blkif.OpRead},
		{blkif.Request{ID: 5, Operation: blkif.OpIndirect, IndirectOp: blkif.OpWrite, NrSegments: 1, IndirectGrefs: [8]uint32{uint32(raw.data.Refs[0])}}, blkif.OpWrite},
	} {
		rsp := raw.roundTrip(c.req)
		if rsp.Status != blkif.RspOkay {
			t.Fatalf("request %d: status %d", c.req.ID, rsp.Status)
		}
		if rsp.Operation != c.want {
			t.Errorf("request %d (operation %d): response operation %d, want %d", c.req.ID, c.req.Operation, rsp.Operation, c.want)
		}
	}
}

// roundTrip sends one request and returns its whole response.
func (r *rawFront) roundTrip(req blkif.Request) blkif.Response {
	r.t.Helper()
	blkif.X86_64.EncodeRequest(r.front.NextRequest(), &req)
	r.front.Produce(1)
	if r.front.Push() {
		r.ch.Notify()
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.front.Unconsumed() == 0 {
		if time.Now().After(deadline) {
			r.t.Fatalf("no response to request %d", req.ID)
		}
		r.ch.Wait(50 * time.Millisecond)
	}
	var rsp blkif.Response
	blkif.X86_64.DecodeResponse(r.front.Response(), &rsp)
	r.front.Consume(1)
	return rsp
}
