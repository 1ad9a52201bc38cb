package stacktest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
	"github.com/xenblk/xenblk/xen"
)

// slowAt is a disk whose reads at off block until release is called:
// the slow request of a batch. release is idempotent; callers defer it,
// so that a failing test lets the backend go before the stack's cleanup
// waits for it.
func slowAt(off int64) (disk *storagetest.Hooks, reached <-chan struct{}, release func()) {
	gate := make(chan struct{})
	at := make(chan struct{}, 1)
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	disk = &storagetest.Hooks{Device: newMemDisk(1 << 20), OnRead: func(o, n int64) error {
		if o == off {
			select {
			case at <- struct{}{}:
			default:
			}
			<-gate
		}
		return nil
	}}
	return disk, at, release
}

// In map mode a request is answered as it completes: a fast read that
// shares its batch with a slow one is answered while the slow one is
// still at the disk. The raw frontend maps without persistent grants (its
// read's mapping must end before the answer); blkfront's Batch reads
// through persistent grants.
func TestMapModeAnswersAFastReadBeforeTheSlowOneOfItsBatch(t *testing.T) {
	const slowOff = 64 << 10
	t.Run("raw", func(t *testing.T) {
		s := simstack.ForTest(t, nil, simstack.Options{})
		guest, _ := s.Host.NewDomain("mixed")
		disk, reached, release := slowAt(slowOff)
		defer release()
		s.Serve(blkback.Config{PersistentGrants: -1}, func(xen.Store, string) (storage.Device, error) { return disk, nil })
		raw := newRawFront(t, s.Host, guest, "xvda")
		// One push of two reads: the fast one first in the batch, the
		// slow one after it.
		page, err := guest.Granter().Grant(0, 1, false) // the fast read's, revoked once answered
		if err != nil {
			t.Fatal(err)
		}
		fast := blkif.Request{ID: 1, Operation: blkif.OpRead, Sector: 0, NrSegments: 1, Seg: one(uint32(page.Refs[0]), 0, 7)}
		slow := blkif.Request{ID: 2, Operation: blkif.OpRead, Sector: slowOff / 512, NrSegments: 1, Seg: one(uint32(raw.data.Refs[1]), 0, 7)}
		blkif.X86_64.EncodeRequest(raw.front.NextRequest(), &fast)
		raw.front.Produce(1)
		blkif.X86_64.EncodeRequest(raw.front.NextRequest(), &slow)
		raw.front.Produce(1)
		if raw.front.Push() {
			raw.ch.Notify()
		}
		<-reached // bounded by the test's timeout: the backend reads both
		rsp := raw.awaitResponse(5 * time.Second)
		if rsp.ID != fast.ID || rsp.Status != blkif.RspOkay {
			t.Fatalf("first answer: id %d status %d, want the fast read (id %d) answered okay", rsp.ID, rsp.Status, fast.ID)
		}
		// Its grant is no longer mapped: the guest can take it back.
		if err := guest.Granter().Revoke(page); err != nil {
			t.Fatalf("revoke the answered read's grant: %v", err)
		}
		release()
		if rsp := raw.awaitResponse(5 * time.Second); rsp.ID != slow.ID || rsp.Status != blkif.RspOkay {
			t.Fatalf("second answer: id %d status %d, want the slow read (id %d) okay", rsp.ID, rsp.Status, slow.ID)
		}
		guest.Store().Write(raw.vbd.FrontendPath()+"/state", "6")
	})
	t.Run("blkfront", func(t *testing.T) {
		disk, reached, release := slowAt(slowOff)
		defer release()
		s := simstack.ForTest(t, disk, simstack.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g, err := s.AttachGuest(ctx, "mixed", "vdev=xvda, access=rw, target=memory", blkfront.Config{Queues: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !g.Disk.Info().Persistent {
			t.Fatal("no persistent grants negotiated")
		}
		b, err := g.Disk.NewBatch(2)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		fastBuf, slowBuf := make([]byte, 4096), make([]byte, 4096)
		if err := b.Read(fastBuf, 0, 1); err != nil {
			t.Fatal(err)
		}
		if err := b.Read(slowBuf, slowOff, 2); err != nil {
			t.Fatal(err)
		}
		if err := b.Submit(); err != nil {
			t.Fatal(err)
		}
		<-reached
		var got []uint64
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = b.Reap(rctx, 1, func(tag uint64, n int, err error) {
			if err != nil {
				t.Errorf("tag %d: %v", tag, err)
			}
			got = append(got, tag)
		})
		rcancel()
		if err != nil || len(got) != 1 || got[0] != 1 {
			t.Fatalf("reaped %v (%v) while the slow read is at the disk, want the fast read (tag 1) alone", got, err)
		}
		release()
		got = got[:0]
		if _, err := b.Reap(ctx, 1, func(tag uint64, n int, err error) { got = append(got, tag) }); err != nil || len(got) != 1 || got[0] != 2 {
			t.Fatalf("then reaped %v (%v), want the slow read (tag 2)", got, err)
		}
	})
}

// awaitResponse waits up to d for the next response and consumes it.
func (r *rawFront) awaitResponse(d time.Duration) blkif.Response {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for r.front.Unconsumed() == 0 {
		if time.Now().After(deadline) {
			r.t.Fatalf("no response within %v", d)
		}
		r.ch.Wait(50 * time.Millisecond)
	}
	var rsp blkif.Response
	blkif.X86_64.DecodeResponse(r.front.Response(), &rsp)
	r.front.Consume(1)
	return rsp
}

// BenchmarkMixedBatch reads two 4 KiB blocks per batch (one push), the
// first from a fast part of the disk, the second from a part that takes
// slowDelay longer (a slow device: the wait stands for its seek); it
// reports each read's mean latency from the push to its answer. A fast
// read answered as it completes costs about one round trip; answered
// with its batch, it costs the slow read's delay too.
func BenchmarkMixedBatch(b *testing.B) {
	const slowOff, slowDelay = 64 << 10, 200 * time.Microsecond
	disk := &storagetest.Hooks{Device: newMemDisk(1 << 20), OnRead: func(off, n int64) error {
		if off == slowOff {
			time.Sleep(slowDelay)
		}
		return nil
	}}
	s := simstack.ForTest(b, disk, simstack.Options{})
	ctx := context.Background()
	g, err := s.AttachGuest(ctx, "mixed", "vdev=xvda, access=rw, target=memory", blkfront.Config{Queues: 1})
	if err != nil {
		b.Fatal(err)
	}
	batch, err := g.Disk.NewBatch(2)
	if err != nil {
		b.Fatal(err)
	}
	defer batch.Close()
	fastBuf, slowBuf := make([]byte, 4096), make([]byte, 4096)
	var start time.Time
	var fast, slow time.Duration
	reap := func(tag uint64, n int, err error) {
		if err != nil {
			b.Fatal(err)
		}
		if tag == 1 {
			fast += time.Since(start)
		} else {
			slow += time.Since(start)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start = time.Now()
		if err := batch.Read(fastBuf, 0, 1); err != nil {
			b.Fatal(err)
		}
		if err := batch.Read(slowBuf, slowOff, 2); err != nil {
			b.Fatal(err)
		}
		if err := batch.Submit(); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < 2; {
			n, err := batch.Reap(ctx, 1, reap)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	b.ReportMetric(float64(fast.Microseconds())/float64(b.N), "fast-us/op")
	b.ReportMetric(float64(slow.Microseconds())/float64(b.N), "slow-us/op")
}
