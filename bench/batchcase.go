package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenblk/xenblk/blkfront"
)

// runBatchCase keeps QD requests in flight from one goroutine per queue
// (at most QD of them), each driving a blkfront.Batch of its share of QD:
// place until full, submit, reap at least one, place again.
func runBatchCase(ctx context.Context, s *stack, w Workload, o Options) (Result, error) {
	workers := min(w.QD, s.front.Info().Queues)
	span := o.FileSize / int64(w.BlockSize)
	hists := make([]Histogram, workers)
	ends := make([]time.Time, workers)
	completed := make([]uint64, workers)
	errs := make(chan error, workers)
	win := newWindow(o)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		depth := w.QD / workers
		if i < w.QD%workers {
			depth++
		}
		wg.Add(1)
		go func(i, depth int) {
			defer wg.Done()
			bw := &batchWorker{w: w, span: span, next: int64(i) * span / int64(workers), win: win, h: &hists[i],
				rng: rand.New(rand.NewPCG(uint64(i), 42)), completed: &completed[i]}
			end, err := bw.run(ctx, s.front, depth)
			if err != nil {
				errs <- err
				return
			}
			ends[i] = end
		}(i, depth)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return Result{}, err
	}
	r := win.result(w, o, hists, ends)
	for _, n := range completed {
		r.Completed += n
	}
	return r, nil
}

// viewSums keeps the view consumers' sums reachable, so the compiler
// cannot drop the reading of the data.
var viewSums atomic.Uint64

// batchWorker is one goroutine's share of a batch case.
type batchWorker struct {
	w    Workload
	span int64 // blocks addressed
	next int64 // the next sequential block
	rng  *rand.Rand
	win  window
	h    *Histogram
	sum  uint64 // of the views' words (View workloads)
	// completed counts every reaped request, warm-up included.
	completed *uint64
}

// run keeps depth requests in flight until the deadline, then drains
// them; it returns the last completion's time. A request's latency runs
// from the clock read after the reap that freed its tag (it is placed
// and submitted right after) to the one after the reap that returns it:
// one clock read per reap, not per request.
func (bw *batchWorker) run(ctx context.Context, d *blkfront.Disk, depth int) (time.Time, error) {
	b, err := d.NewBatch(depth)
	if err != nil {
		return time.Time{}, err
	}
	defer b.Close()
	defer func() { viewSums.Add(bw.sum) }()
	bufs := make([][]byte, depth)
	starts := make([]time.Time, depth)
	free := make([]int, depth)
	for t := range bufs {
		free[t] = t
		if !bw.w.View { // a view needs no buffer
			bufs[t] = make([]byte, bw.w.BlockSize)
		}
	}
	done := make([]int, 0, depth)
	var failed error
	reaped := func(tag uint64, n int, err error) {
		if err != nil && failed == nil {
			failed = err
		}
		done = append(done, int(tag))
	}
	now := time.Now()
	draining := false
	for {
		if !draining {
			if err := bw.place(b, bufs, starts, &free, now); err != nil {
				return now, err
			}
			if err := b.Submit(); err != nil {
				return now, err
			}
		}
		if b.Outstanding() == 0 {
			return now, nil
		}
		done = done[:0]
		if _, err := b.Reap(ctx, 1, reaped); err != nil {
			return now, err
		}
		if failed != nil {
			return now, failed
		}
		now = time.Now()
		counted := now.After(bw.win.measureFrom)
		*bw.completed += uint64(len(done))
		for _, t := range done {
			if counted {
				bw.h.Record(now.Sub(starts[t]))
			}
			if bw.w.View {
				if err := bw.consume(b, uint64(t)); err != nil {
					return now, err
				}
			}
			free = append(free, t)
		}
		// After the deadline nothing new is placed; what is in flight
		// still completes inside the window, which runs to the last.
		draining = draining || now.After(bw.win.deadline)
	}
}

// place puts a request in flight for every free tag the batch accepts.
func (bw *batchWorker) place(b *blkfront.Batch, bufs [][]byte, starts []time.Time, free *[]int, now time.Time) error {
	for len(*free) > 0 {
		t := (*free)[len(*free)-1]
		var blk int64
		if bw.w.Random {
			blk = bw.rng.Int64N(bw.span)
		} else {
			blk = bw.next % bw.span
		}
		off := blk * int64(bw.w.BlockSize)
		var err error
		switch {
		case bw.w.Write:
			err = b.Write(bufs[t], off, uint64(t))
		case bw.w.View:
			err = b.ReadView(off, bw.w.BlockSize, uint64(t))
		default:
			err = b.Read(bufs[t], off, uint64(t))
		}
		if errors.Is(err, blkfront.ErrBatchFull) {
			return nil // the queue's slots or pages are in use: reap first
		}
		if err != nil {
			return err
		}
		if !bw.w.Random {
			bw.next++
		}
		*free = (*free)[:len(*free)-1]
		starts[t] = now
	}
	return nil
}

// consume reads a reaped view in place, every byte once (the sum of its
// words), and releases it. The time counts in the case's throughput (the
// next request is placed after it), not in the request's latency.
func (bw *batchWorker) consume(b *blkfront.Batch, tag uint64) error {
	pages, err := b.View(tag)
	if err != nil {
		return err
	}
	for _, p := range pages {
		bw.sum += sumWords(p)
	}
	return b.Release(tag)
}
