package storagetest

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/xenblk/xenblk/storage"
)

// Counter, Hooks and Guard wrap any storage.Device for tests: one memory
// device (storage.Memory) serves every test, and these add what a test
// wants to see or break.

// Counter counts the operations that reach Device, successful or not.
// Safe for concurrent use.
type Counter struct {
	storage.Device
	Reads, Writes, Flushes, Discards, Zeroings atomic.Int64
}

func (c *Counter) ReadAt(p []byte, off int64) (int, error) {
	c.Reads.Add(1)
	return c.Device.ReadAt(p, off)
}

func (c *Counter) WriteAt(p []byte, off int64) (int, error) {
	c.Writes.Add(1)
	return c.Device.WriteAt(p, off)
}

func (c *Counter) Flush() error {
	c.Flushes.Add(1)
	return c.Device.Flush()
}

func (c *Counter) Discard(off, n int64, secure bool) error {
	c.Discards.Add(1)
	return c.Device.Discard(off, n, secure)
}

func (c *Counter) WriteZeroes(off, n int64) error {
	c.Zeroings.Add(1)
	return c.Device.WriteZeroes(off, n)
}

// Hooks lets a test act inside a device's operations (fault injection):
// each hook that is set runs before its operation reaches
// Device, and an error it returns fails the operation instead. A hook
// may block (a stuck disk), or act as a hostile peer at the moment the
// code under test is busy. Set the hooks before the device is shared;
// a hook that changes later guards its own state.
type Hooks struct {
	storage.Device
	OnRead    func(off, n int64) error
	OnWrite   func(off, n int64) error
	OnFlush   func() error
	OnDiscard func(off, n int64) error
	OnZero    func(off, n int64) error
}

func (h *Hooks) ReadAt(p []byte, off int64) (int, error) {
	if h.OnRead != nil {
		if err := h.OnRead(off, int64(len(p))); err != nil {
			return 0, err
		}
	}
	return h.Device.ReadAt(p, off)
}

func (h *Hooks) WriteAt(p []byte, off int64) (int, error) {
	if h.OnWrite != nil {
		if err := h.OnWrite(off, int64(len(p))); err != nil {
			return 0, err
		}
	}
	return h.Device.WriteAt(p, off)
}

func (h *Hooks) Flush() error {
	if h.OnFlush != nil {
		if err := h.OnFlush(); err != nil {
			return err
		}
	}
	return h.Device.Flush()
}

func (h *Hooks) Discard(off, n int64, secure bool) error {
	if h.OnDiscard != nil {
		if err := h.OnDiscard(off, n); err != nil {
			return err
		}
	}
	return h.Device.Discard(off, n, secure)
}

func (h *Hooks) WriteZeroes(off, n int64) error {
	if h.OnZero != nil {
		if err := h.OnZero(off, n); err != nil {
			return err
		}
	}
	return h.Device.WriteZeroes(off, n)
}

// Guard records every access that falls outside Device (a bug in the code
// above: engines must check ranges themselves) and refuses it.
type Guard struct {
	storage.Device
	mu         sync.Mutex
	violations []string
}

func (g *Guard) check(op string, off, n int64) error {
	size := g.Device.Info().Size
	if err := storage.CheckRange(off, n, size); err != nil {
		g.mu.Lock()
		g.violations = append(g.violations, fmt.Sprintf("%s off=%d len=%d size=%d", op, off, n, size))
		g.mu.Unlock()
		return err
	}
	return nil
}

// Violations returns the out-of-range accesses seen so far.
func (g *Guard) Violations() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.violations...)
}

func (g *Guard) ReadAt(p []byte, off int64) (int, error) {
	if err := g.check("read", off, int64(len(p))); err != nil {
		return 0, err
	}
	return g.Device.ReadAt(p, off)
}

func (g *Guard) WriteAt(p []byte, off int64) (int, error) {
	if err := g.check("write", off, int64(len(p))); err != nil {
		return 0, err
	}
	return g.Device.WriteAt(p, off)
}

func (g *Guard) Discard(off, n int64, secure bool) error {
	if err := g.check("discard", off, n); err != nil {
		return err
	}
	return g.Device.Discard(off, n, secure)
}

func (g *Guard) WriteZeroes(off, n int64) error {
	if err := g.check("write-zeroes", off, n); err != nil {
		return err
	}
	return g.Device.WriteZeroes(off, n)
}

// Map passes through to Device's map, so that a counted device shows its
// holes.
func (c *Counter) Map(off, n int64) ([]storage.Extent, error) {
	return storage.Map(c.Device, off, n)
}
