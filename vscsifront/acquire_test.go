package vscsifront

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/xenblk/xenblk/internal/slotlife"
)

// TestAcquireWakesEnoughWaiters: many more callers than slots, asking
// for different numbers of pages, some giving up (and so waking every
// waiter through their context), most never: a slot freed
// wakes one waiter when any could take it (acquire's wake), yet every
// caller gets a slot or its context's error, none is left asleep beside
// a free slot, and slots and pages all come back.
func TestAcquireWakesEnoughWaiters(t *testing.T) {
	const slots, pages, callers, rounds = 3, 8, 24, 40
	v := &Vhost{log: slog.New(slog.NewTextHandler(io.Discard, nil)), slots: make([]slot, slots), segments: pages}
	v.cond = sync.NewCond(&v.mu)
	for i := range v.slots {
		v.slots[i] = slot{state: slotlife.Free, done: make(chan struct{}, 1), pages: make([]int, 0, pages)}
		v.free = append(v.free, i)
	}
	for p := range pages {
		v.freePage = append(v.freePage, p)
	}
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for range rounds {
				ctx, cancel := context.WithCancel(context.Background())
				if c%2 == 0 && rng.IntN(4) == 0 {
					cancel() // gives up at once, or while waiting
				}
				id, err := v.acquire(ctx, 1+rng.IntN(pages))
				cancel()
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("acquire: %v", err)
					}
					continue
				}
				v.mu.Lock()
				v.to(id, slotlife.GiveUp) // filling -> free
				v.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(v.free) != slots || len(v.freePage) != pages || v.waiting != 0 {
		t.Fatalf("after: %d free slots, %d free pages, %d waiting; want %d, %d, 0", len(v.free), len(v.freePage), v.waiting, slots, pages)
	}
}
