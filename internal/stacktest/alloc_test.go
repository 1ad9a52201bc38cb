package stacktest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
)

// TestDataPathAllocations guards the steady-state data path: a 4 KiB
// ReadAt or WriteAt through blkfront, the simulated host and blkback must
// not allocate once the pools are warm, with the backend sleeping on its
// event channel and with it busy-polling, and with a context that never
// ends as with one that can (the caller's wait then selects on its end).
func TestDataPathAllocations(t *testing.T) {
	for _, poll := range []time.Duration{0, 50 * time.Microsecond} {
		t.Run(fmt.Sprintf("poll=%v", poll), func(t *testing.T) {
			testDataPathAllocations(t, newStackWith(t, 8<<20, blkfront.Config{}, blkback.Config{Poll: poll}))
		})
	}
	t.Run("grant-copy", func(t *testing.T) {
		testDataPathAllocations(t, newStackWith(t, 8<<20, blkfront.Config{}, blkback.Config{GrantCopy: true}))
	})
}

func testDataPathAllocations(t *testing.T, s *stack) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	buf := make([]byte, 4096)
	got := make([]byte, 4096)
	for i := 0; i < 100; i++ { // warm the pools and persistent grants
		buf[0], buf[4095] = byte(i), byte(i+1)
		if _, err := s.front.WriteAt(ctx, buf, int64(i%64)*4096); err != nil {
			t.Fatal(err)
		}
		if _, err := s.front.ReadAt(ctx, got, int64(i%64)*4096); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, buf) {
			t.Fatalf("read %d differs from what was written", i)
		}
	}
	var off int64
	never := context.Background()
	for _, tc := range []struct {
		name string
		op   func() (int, error)
	}{
		{"read", func() (int, error) { return s.front.ReadAt(never, buf, off) }},
		{"write", func() (int, error) { return s.front.WriteAt(never, buf, off) }},
		{"read with a cancellable context", func() (int, error) { return s.front.ReadAt(ctx, buf, off) }},
		{"write with a cancellable context", func() (int, error) { return s.front.WriteAt(ctx, buf, off) }},
	} {
		var err error
		allocs := testing.AllocsPerRun(500, func() {
			off = (off + 4096) % (64 * 4096)
			if _, e := tc.op(); e != nil {
				err = e
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if allocs != 0 {
			t.Errorf("4 KiB %s: %.2f allocations per request, want 0", tc.name, allocs)
		}
	}
}
