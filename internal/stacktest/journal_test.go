package stacktest

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/faultinject"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
	"github.com/xenblk/xenblk/toolstack"
)

// TestRestartReplaysFromTheJournal: a backend dies after consuming a
// request and before answering it, and the request's ring slot now holds
// bytes the dead process wrote (an unpublished response). The restarted
// backend, resuming the frontend's rings (as it must for Linux's blkfront,
// which cannot reconnect), takes that request from its journal, not from
// the ring: it is carried out as sent and answered under its own id, and
// the request behind it comes from the ring.
func TestRestartReplaysFromTheJournal(t *testing.T) {
	s := simstack.ForTest(t, nil, simstack.Options{})
	h := s.Host
	g, _ := h.NewDomain("guest")
	mem := storage.NewMemory(1 << 20)
	// Once armed, the first write blocks forever: the backend process
	// "dies" in the middle of carrying out a request it consumed.
	var armed atomic.Bool
	inside := make(chan struct{}) // closed when the write is stuck
	dying := &storagetest.Hooks{Device: mem, OnWrite: func(off, n int64) error {
		if armed.CompareAndSwap(true, false) {
			close(inside)
			select {} // the process is dead: this write never finishes
		}
		return nil
	}}
	journals := t.TempDir()
	cfg := blkback.Config{Domain: h.Dom0(), PersistentGrants: -1, JournalDir: journals}
	// Not the stack's: its Serve never returns (its queue is stuck in
	// the dead write), so nothing may wait for it.
	srvA := simstack.Serve(&blkback.Server{Config: cfg, BackendType: toolstack.DefaultBackendType,
		Open: simstack.Serving(dying)}).Server
	raw := newRawFront(t, h, g, "xvda")

	copy(raw.data.Mem[0:4096], bytes.Repeat([]byte("AAAA"), 1024))
	copy(raw.data.Mem[4096:8192], bytes.Repeat([]byte("BBBB"), 1024))
	push := func(req blkif.Request) []byte {
		slot := raw.front.NextRequest()
		blkif.X86_64.EncodeRequest(slot, &req)
		raw.front.Produce(1)
		if raw.front.Push() {
			raw.ch.Notify()
		}
		return slot
	}
	armed.Store(true)
	slotA := push(blkif.Request{ID: 10, Operation: blkif.OpWrite, Sector: 8, NrSegments: 1, Seg: one(uint32(raw.data.Refs[0]), 0, 7)})
	select {
	case <-inside:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend never started the first write")
	}
	push(blkif.Request{ID: 11, Operation: blkif.OpWrite, Sector: 16, NrSegments: 1, Seg: one(uint32(raw.data.Refs[1]), 0, 7)})
	// The dead process had written a response into request 10's slot
	// without publishing it.
	blkif.X86_64.EncodeResponse(slotA, 0x1b1b, 27, blkif.RspError)
	go faultinject.CrashBackend(srvA) // never returns: its queue is stuck in the dead write

	// The sim closes both ends of a channel when one closes (real Xen
	// leaves the frontend's port bound and re-bindable); the frontend
	// offers a new port for the restarted backend, on the same ring.
	ch2, err := g.Events().AllocUnbound(0)
	if err != nil {
		t.Fatal(err)
	}
	raw.ch = ch2
	g.Store().Write(raw.vbd.FrontendPath()+"/event-channel", strconv.Itoa(int(ch2.Port())))

	// The restarted backend. The ring slot of request 10 is garbage now.
	s.Serve(cfg, simstack.Serving(mem))

	got := map[uint64]blkif.Response{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("responses after the restart: %+v", got)
		}
		for raw.front.Unconsumed() > 0 {
			var rsp blkif.Response
			blkif.X86_64.DecodeResponse(raw.front.Response(), &rsp)
			raw.front.Consume(1)
			got[rsp.ID] = rsp
		}
		raw.ch.Wait(50 * time.Millisecond)
	}
	for _, id := range []uint64{10, 11} {
		if r, ok := got[id]; !ok || r.Status != blkif.RspOkay || r.Operation != blkif.OpWrite {
			t.Errorf("request %d: %+v (all: %+v)", id, r, got)
		}
	}
	if len(got) != 2 {
		t.Errorf("responses %+v, want exactly ids 10 and 11", got)
	}
	b := make([]byte, 4096)
	mem.ReadAt(b, 8*512)
	if !bytes.Equal(b, raw.data.Mem[0:4096]) {
		t.Error("request 10's data is not on the disk")
	}
	mem.ReadAt(b, 16*512)
	if !bytes.Equal(b, raw.data.Mem[4096:8192]) {
		t.Error("request 11's data is not on the disk")
	}
}

// TestJournalRemovedWithTheVBD: detaching a vbd deletes its journals
// (nothing will resume those rings), so they do not pile up in /run.
func TestJournalRemovedWithTheVBD(t *testing.T) {
	dir := t.TempDir()
	s := newStackWith(t, 1<<20, blkfront.Config{}, blkback.Config{JournalDir: dir})
	if _, err := s.front.WriteAt(context.Background(), make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if files, _ := os.ReadDir(dir); len(files) == 0 {
		t.Fatal("no journal while the vbd is connected")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := toolstack.Remove(ctx, s.host.Store(), s.vbd, false); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, "no journal left after the detach", func() bool {
		files, _ := os.ReadDir(dir)
		return len(files) == 0
	})
}
