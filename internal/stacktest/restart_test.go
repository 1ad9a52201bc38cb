package stacktest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/faultinject"
)

// A backend that crashes under a running write workload and is restarted:
// the frontend carries on, every write it was told succeeded is on the
// disk, and nothing is lost or reordered across the restart.
func TestBackendCrashAndRestart(t *testing.T) {
	s := newStack(t, 8<<20, blkfront.Config{})
	ctx := context.Background()
	const writers = 4
	var mu sync.Mutex
	acked := map[int64][]byte{} // offset -> last acknowledged content
	var acks atomic.Int64       // writes acknowledged so far
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				off := int64(w)<<20 + int64(rng.Intn(256))*4096
				data := make([]byte, 4096)
				rng.Read(data)
				wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := s.front.WriteAt(wctx, data, off)
				cancel()
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				acked[off] = data
				mu.Unlock()
				acks.Add(1)
			}
		}(w)
	}
	eventually.True(t, 20*time.Second, "10 writes acknowledged before the crash", func() bool { return acks.Load() >= 10 })
	// Crash the backend under the workload; once its Serve has returned
	// nothing of it answers, so what is acknowledged after that went
	// through the restarted one.
	s.crash()
	<-s.done
	before := acks.Load()
	restarted := s.restart()
	eventually.True(t, 20*time.Second, "10 writes acknowledged by the restarted backend", func() bool { return acks.Load() >= before+10 })
	close(stop)
	wg.Wait()
	if err := s.front.Flush(ctx); err != nil {
		t.Fatalf("flush after restart: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 10 {
		t.Fatalf("only %d writes acknowledged: the workload did not run through the restart", len(acked))
	}
	for off, want := range acked {
		if got := diskBytes(t, s.disk, off, 4096); !bytes.Equal(got, want) {
			t.Fatalf("acknowledged write at %d lost across the restart", off)
		}
	}
	got := make([]byte, 4096)
	for off, want := range acked {
		if _, err := s.front.ReadAt(ctx, got, off); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read back at %d after restart: %v", off, err)
		}
		break
	}
	restarted.Stop()
}

// Online resize: the backend's storage grows, the backend rewrites
// `sectors` and its state, the frontend sees the new size and can use it.
func TestOnlineResize(t *testing.T) {
	s := newStack(t, 4<<20, blkfront.Config{})
	s.disk.Resize(8 << 20)
	dev := s.server.VBD(s.vbd.BackendPath())
	if dev == nil {
		t.Fatal("backend device not found")
	}
	if err := dev.Resize(); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, "the frontend seeing the new size (8 MiB)", func() bool { return s.front.Size() == 8<<20 })
	data := bytes.Repeat([]byte{0x5a}, 4096)
	if _, err := s.front.WriteAt(context.Background(), data, 8<<20-4096); err != nil {
		t.Fatalf("write into the new space: %v", err)
	}
	if !bytes.Equal(diskBytes(t, s.disk, 8<<20-4096, 4096), data) {
		t.Fatal("write into the new space did not land")
	}
}

// A crashed server starts no device and returns, even when a store event
// (another backend writing in its area: a restarted one) is ready at the
// same time as the crash. Serve's select picks among ready cases at
// random, so a crashed server sometimes scanned and served the vbd again,
// fighting the restarted backend for it (blkfront's
// TestBatchBackendRestart, flaky: the crashed one served a stuck disk).
func TestCrashedServerStartsNothing(t *testing.T) {
	s := newStack(t, 1<<20, blkfront.Config{})
	dir := s.vbd.BackendPath()
	// Each round: a server serving the vbd crashes while another writer
	// keeps events coming in its area; a server that does not check
	// sees an event win over the crash now and then, once its crashed
	// device has left its table, and serves the vbd again.
	srv, done := s.server, s.done
	for i := 0; i < 200; i++ {
		if i > 0 {
			b := s.restart()
			srv, done = b.Server, b.Done()
		}
		eventually.True(t, 20*time.Second, fmt.Sprintf("round %d: the server starting the vbd's device", i), func() bool { return srv.VBD(dir) != nil })
		stop, noisy := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(noisy)
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = s.host.Store().Write(dir+"/noise", strconv.Itoa(k))
			}
		}()
		faultinject.CrashBackend(srv)
		returned := true
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			returned = false
		}
		close(stop)
		<-noisy
		if !returned {
			// It waits for the devices it runs: one started after the
			// crash runs on.
			t.Fatalf("round %d: a crashed server's Serve did not return: it serves the vbd again", i)
		}
		if srv.VBD(dir) != nil {
			t.Fatalf("round %d: a crashed server runs a device", i)
		}
	}
}

// A reconnect keeps the disk's geometry: between the frontend setting up
// rings for a restarted backend and that backend saying Connected, I/O
// callers still check their ranges against the size and sector size the
// last connection gave. (connect used to publish a fresh Info with a
// sector size of 0 in that window, and a write arriving then divided by
// it.) A backend that reached InitWait and went no further holds the
// window open.
func TestReconnectKeepsGeometry(t *testing.T) {
	s := newStack(t, 4<<20, blkfront.Config{})
	want := s.front.Info()
	s.crash()
	<-s.done
	st := s.host.Store()
	back := s.vbd.BackendPath()
	if err := st.Write(back+"/state", "2"); err != nil { // InitWait, as a restarted backend writes
		t.Fatal(err)
	}
	waitState(t, st, s.vbd.FrontendPath()+"/state", "3") // the frontend set up rings for it
	got := s.front.Info()
	if got.SectorSize != want.SectorSize || got.Sectors != want.Sectors {
		t.Fatalf("while reconnecting: sector size %d, %d sectors; the last connection said %d, %d",
			got.SectorSize, got.Sectors, want.SectorSize, want.Sectors)
	}
	if _, err := s.front.WriteAt(context.Background(), make([]byte, 4096), 1<<20+4096*(1<<30)); err == nil {
		t.Fatal("a write beyond the disk was taken while reconnecting")
	}
	s.restart()
	if _, err := s.front.WriteAt(context.Background(), bytes.Repeat([]byte{7}, 4096), 4096); err != nil {
		t.Fatalf("write through the restarted backend: %v", err)
	}
}
