// Package scsitest is the SCSI conformance suite (SPC-4, SBC-3 behaviours,
// one case per clause) that every xenblk SCSI target runs: the emulation
// over memory, and the pass-through over a fake SG_IO disk. It also holds
// the in-memory devices those runs use, with a guard that records any
// access outside the device.
package scsitest

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/xenblk/xenblk/storage"
)

// Memory is a storage.Device in memory that counts flushes and discards.
type Memory struct {
	mu   sync.RWMutex
	buf  []byte
	info storage.Info

	Flushes  atomic.Int64
	Discards atomic.Int64
	Zeroings atomic.Int64
	WriteOps atomic.Int64
}

// NewMemory returns a zeroed device described by info (info.Size bytes).
func NewMemory(info storage.Info) *Memory {
	return &Memory{buf: make([]byte, info.Size), info: info}
}

func (m *Memory) Info() storage.Info {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.info
}

// Resize grows or shrinks the device, as an online resize does.
func (m *Memory) Resize(size int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if size > int64(len(m.buf)) {
		m.buf = append(m.buf, make([]byte, size-int64(len(m.buf)))...)
	}
	m.buf = m.buf[:size]
	m.info.Size = size
}

// Bytes is the device's content (for assertions; not synchronised).
func (m *Memory) Bytes() []byte { return m.buf }

func (m *Memory) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := storage.CheckRange(off, int64(len(p)), m.info.Size); err != nil {
		return 0, err
	}
	copy(p, m.buf[off:])
	return len(p), nil
}

func (m *Memory) WriteAt(p []byte, off int64) (int, error) {
	if m.info.ReadOnly {
		return 0, storage.ErrReadOnly
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := storage.CheckRange(off, int64(len(p)), m.info.Size); err != nil {
		return 0, err
	}
	copy(m.buf[off:], p)
	m.WriteOps.Add(1)
	return len(p), nil
}

func (m *Memory) Flush() error {
	m.Flushes.Add(1)
	return nil
}

func (m *Memory) Discard(off, n int64, secure bool) error {
	if !m.info.CanDiscard {
		return storage.ErrNotSupported
	}
	if m.info.ReadOnly {
		return storage.ErrReadOnly
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := storage.CheckRange(off, n, m.info.Size); err != nil {
		return err
	}
	m.Discards.Add(1)
	if m.info.DiscardZeroes {
		clear(m.buf[off : off+n])
	}
	return nil
}

func (m *Memory) WriteZeroes(off, n int64) error {
	if m.info.ReadOnly {
		return storage.ErrReadOnly
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := storage.CheckRange(off, n, m.info.Size); err != nil {
		return err
	}
	m.Zeroings.Add(1)
	clear(m.buf[off : off+n])
	return nil
}

func (m *Memory) Close() error { return nil }

// Window is a device that shows [Base, Base+Size) of another device, as
// a partition or slice does; it refuses anything outside.
type Window struct {
	storage.Device
	Base, Size int64
}

func (w *Window) Info() storage.Info {
	i := w.Device.Info()
	i.Size = w.Size
	return i
}

func (w *Window) ReadAt(p []byte, off int64) (int, error) {
	if err := storage.CheckRange(off, int64(len(p)), w.Size); err != nil {
		return 0, err
	}
	return w.Device.ReadAt(p, w.Base+off)
}

func (w *Window) WriteAt(p []byte, off int64) (int, error) {
	if err := storage.CheckRange(off, int64(len(p)), w.Size); err != nil {
		return 0, err
	}
	return w.Device.WriteAt(p, w.Base+off)
}

func (w *Window) Discard(off, n int64, secure bool) error {
	if err := storage.CheckRange(off, n, w.Size); err != nil {
		return err
	}
	return w.Device.Discard(w.Base+off, n, secure)
}

func (w *Window) WriteZeroes(off, n int64) error {
	if err := storage.CheckRange(off, n, w.Size); err != nil {
		return err
	}
	return w.Device.WriteZeroes(w.Base+off, n)
}

// Guard wraps a device and records every access that falls outside it (an
// engine bug: engines must check ranges themselves). The access is refused.
type Guard struct {
	storage.Device
	mu         sync.Mutex
	violations []string
}

func (g *Guard) check(op string, off, n int64) error {
	if err := storage.CheckRange(off, n, g.Device.Info().Size); err != nil {
		g.mu.Lock()
		g.violations = append(g.violations, fmt.Sprintf("%s off=%d len=%d size=%d", op, off, n, g.Device.Info().Size))
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
