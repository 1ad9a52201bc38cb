package storagetest_test

import (
	"errors"
	"testing"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// The wrappers are conforming devices themselves: counting and hooks
// that do nothing change nothing.
func TestWrappersConform(t *testing.T) {
	t.Run("Counter", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
			return &storagetest.Counter{Device: storage.NewMemory(size)}
		})
	})
	t.Run("Hooks", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
			none := func(off, n int64) error { return nil }
			return &storagetest.Hooks{Device: storage.NewMemory(size), OnRead: none, OnWrite: none, OnDiscard: none, OnZero: none,
				OnFlush: func() error { return nil }}
		})
	})
}

func TestCounterCountsWhatReachesTheDevice(t *testing.T) {
	c := &storagetest.Counter{Device: storage.NewMemory(1 << 20)}
	c.WriteAt(make([]byte, 512), 0)
	c.WriteAt(make([]byte, 512), 1<<20) // refused, still counted
	c.ReadAt(make([]byte, 512), 0)
	c.Flush()
	c.Discard(0, 512, false)
	c.WriteZeroes(0, 512)
	got := [5]int64{c.Reads.Load(), c.Writes.Load(), c.Flushes.Load(), c.Discards.Load(), c.Zeroings.Load()}
	if got != [5]int64{1, 2, 1, 1, 1} {
		t.Fatalf("reads, writes, flushes, discards, zeroings = %v, want [1 2 1 1 1]", got)
	}
}

func TestHooksFailTheOperation(t *testing.T) {
	injected := errors.New("injected")
	mem := storage.NewMemory(1 << 20)
	h := &storagetest.Hooks{Device: mem, OnWrite: func(off, n int64) error {
		if off == 4096 {
			return injected
		}
		return nil
	}}
	if _, err := h.WriteAt([]byte{7}, 4096); !errors.Is(err, injected) {
		t.Fatalf("hooked write: %v, want the injected error", err)
	}
	b := make([]byte, 1)
	if mem.ReadAt(b, 4096); b[0] != 0 {
		t.Fatal("a failed write reached the device")
	}
	if _, err := h.WriteAt([]byte{7}, 0); err != nil {
		t.Fatalf("write the hook lets through: %v", err)
	}
}

func TestGuardRecordsAndRefusesOutOfRange(t *testing.T) {
	g := &storagetest.Guard{Device: storage.NewMemory(4096)}
	if _, err := g.ReadAt(make([]byte, 2), 4095); !errors.Is(err, storage.ErrOutOfRange) {
		t.Fatalf("read past the end: %v", err)
	}
	if _, err := g.ReadAt(make([]byte, 1), 4095); err != nil {
		t.Fatal(err)
	}
	if v := g.Violations(); len(v) != 1 || v[0] != "read off=4095 len=2 size=4096" {
		t.Fatalf("violations %q", v)
	}
}
