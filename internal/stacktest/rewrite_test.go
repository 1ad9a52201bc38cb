package stacktest

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// TestRequestRewrittenAfterTheBackendReadIt: a hostile guest rewrites its
// request slot (another operation, a sector past the end, 255 segments,
// another id) while the backend is carrying the request out. The backend
// copied the slot once (XSA-155): it finishes the request it read, at the
// sector it read, answers that request's id, and never acts on the
// rewritten bytes.
func TestRequestRewrittenAfterTheBackendReadIt(t *testing.T) {
	s := simstack.ForTest(t, nil, simstack.Options{})
	h := s.Host
	g, _ := h.NewDomain("hostile")
	const size = 1 << 20
	// onWrite runs (once) inside the backend's first WriteAt: the moment
	// the backend is carrying out a request it has already read. It is
	// handed over under mu: the race detector cannot see the ordering the
	// shared ring gives.
	var (
		mu      sync.Mutex
		once    sync.Once
		onWrite func()
		writes  []int64 // offsets written
	)
	mem := storage.NewMemory(size)
	disk := &storagetest.Hooks{Device: mem, OnWrite: func(off, n int64) error {
		mu.Lock()
		hook := onWrite
		mu.Unlock()
		once.Do(hook)
		mu.Lock()
		writes = append(writes, off)
		mu.Unlock()
		return nil
	}}
	s.Serve(blkback.Config{PersistentGrants: -1}, simstack.Serving(disk))
	raw := newRawFront(t, h, g, "xvda")
	copy(raw.data.Mem[:4096], bytes.Repeat([]byte("orig"), 1024))

	req := blkif.Request{ID: 77, Operation: blkif.OpWrite, Sector: 8, NrSegments: 1, Seg: one(uint32(raw.data.Refs[0]), 0, 7)}
	slot := raw.front.NextRequest()
	evil := blkif.Request{ID: 99, Operation: blkif.OpDiscard, Sector: size/512 + 1000, NrSegments: 255, NrSectors: 1 << 40}
	blkif.X86_64.EncodeRequest(slot, &req)
	mu.Lock()
	onWrite = func() { blkif.X86_64.EncodeRequest(slot, &evil) }
	mu.Unlock()
	raw.front.Produce(1)
	if raw.front.Push() {
		raw.ch.Notify()
	}
	deadline := time.Now().Add(5 * time.Second)
	for raw.front.Unconsumed() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no response")
		}
		raw.ch.Wait(50 * time.Millisecond)
	}
	var rsp blkif.Response
	blkif.X86_64.DecodeResponse(raw.front.Response(), &rsp)
	raw.front.Consume(1)
	if rsp.ID != 77 || rsp.Operation != blkif.OpWrite || rsp.Status != blkif.RspOkay {
		t.Fatalf("response %+v, want id 77, write, OKAY (the request as first read)", rsp)
	}
	mu.Lock()
	written := append([]int64(nil), writes...)
	mu.Unlock()
	if len(written) != 1 || written[0] != 8*512 {
		t.Fatalf("writes at %v, want one at %d", written, 8*512)
	}
	got := make([]byte, 4096)
	mem.ReadAt(got, 8*512)
	if !bytes.Equal(got, raw.data.Mem[:4096]) {
		t.Fatal("the data written is not the request's")
	}
	// Nothing else happened and the ring is in step: one more request works.
	if st := raw.do(blkif.Request{ID: 78, Operation: blkif.OpRead, NrSegments: 1, Seg: one(uint32(raw.data.Refs[1]), 0, 7), Sector: 8}); st != blkif.RspOkay {
		t.Fatalf("the next request: status %d", st)
	}
}
