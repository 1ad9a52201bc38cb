package nbd

import (
	"sync"

	"github.com/xenblk/xenblk/storage"
)

// memDev is an in-memory storage.Device for the tests; it counts flushes
// and discards so tests can see them arrive.
type memDev struct {
	mu       sync.RWMutex
	data     []byte
	ro       bool
	flushes  int
	discards int
}

func newMemDev(size int) *memDev { return &memDev{data: make([]byte, size)} }

func (m *memDev) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := storage.CheckRange(off, int64(len(p)), int64(len(m.data))); err != nil {
		return 0, err
	}
	return copy(p, m.data[off:]), nil
}

func (m *memDev) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ro {
		return 0, storage.ErrReadOnly
	}
	if err := storage.CheckRange(off, int64(len(p)), int64(len(m.data))); err != nil {
		return 0, err
	}
	return copy(m.data[off:], p), nil
}

func (m *memDev) Info() storage.Info {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return storage.Info{Size: int64(len(m.data)), LogicalBlockSize: 512, PhysicalBlockSize: 4096,
		ReadOnly: m.ro, CanFlush: true, CanDiscard: true, DiscardZeroes: true}
}

func (m *memDev) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flushes++
	return nil
}

func (m *memDev) Discard(off, n int64, secure bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := storage.CheckRange(off, n, int64(len(m.data))); err != nil {
		return err
	}
	clear(m.data[off : off+n])
	m.discards++
	return nil
}

func (m *memDev) WriteZeroes(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := storage.CheckRange(off, n, int64(len(m.data))); err != nil {
		return err
	}
	clear(m.data[off : off+n])
	return nil
}

func (m *memDev) Close() error { return nil }

func (m *memDev) counts() (flushes, discards int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.flushes, m.discards
}
