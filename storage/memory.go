package storage

import (
	"sync"
)

// chunkSize is the unit of a Memory device's sparse allocation.
const chunkSize = 64 << 10

// Memory is a device in RAM, allocated sparsely in 64 KiB chunks: a 1 GiB
// memory disk costs nothing until written, and discard gives chunks back.
type Memory struct {
	mu     sync.RWMutex
	size   int64
	chunks map[int64][]byte
	info   Info
}

// NewMemory returns a zeroed memory device of size bytes.
func NewMemory(size int64) *Memory {
	return NewMemoryAs(Info{
		Size: size, LogicalBlockSize: 512, PhysicalBlockSize: 4096, RotationRate: 1,
		CanDiscard: true, DiscardZeroes: true, DiscardGranularity: chunkSize,
	})
}

// NewMemoryAs returns a zeroed memory device of info.Size bytes that
// describes itself as info: other block sizes, a flush, read-only, no
// discard, as a test or a guest needs. It keeps what info promises: a
// read-only device refuses changes (ErrReadOnly), one without discard
// refuses Discard (ErrNotSupported); discarded bytes always read as zeros.
func NewMemoryAs(info Info) *Memory {
	return &Memory{size: info.Size, chunks: map[int64][]byte{}, info: info}
}

func (m *Memory) Info() Info {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.info
}

// Resize changes the size (online resize); growth reads as zeros.
func (m *Memory) Resize(size int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for c := range m.chunks {
		if c*chunkSize >= size {
			delete(m.chunks, c)
		}
	}
	if end := size % chunkSize; end != 0 {
		if b := m.chunks[size/chunkSize]; b != nil {
			clear(b[end:])
		}
	}
	m.size, m.info.Size = size, size
}

func (m *Memory) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := CheckRange(off, int64(len(p)), m.size); err != nil {
		return 0, err
	}
	for n := 0; n < len(p); {
		c, o := (off+int64(n))/chunkSize, (off+int64(n))%chunkSize
		k := min(len(p)-n, int(chunkSize-o))
		if b := m.chunks[c]; b != nil {
			copy(p[n:n+k], b[o:])
		} else {
			clear(p[n : n+k])
		}
		n += k
	}
	return len(p), nil
}

func (m *Memory) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.info.ReadOnly {
		return 0, ErrReadOnly
	}
	if err := CheckRange(off, int64(len(p)), m.size); err != nil {
		return 0, err
	}
	for n := 0; n < len(p); {
		c, o := (off+int64(n))/chunkSize, (off+int64(n))%chunkSize
		k := min(len(p)-n, int(chunkSize-o))
		b := m.chunks[c]
		if b == nil {
			b = make([]byte, chunkSize)
			m.chunks[c] = b
		}
		copy(b[o:], p[n:n+k])
		n += k
	}
	return len(p), nil
}

func (m *Memory) Flush() error { return nil }

// Discard zeroes the range, freeing whole chunks.
func (m *Memory) Discard(off, n int64, secure bool) error {
	m.mu.RLock()
	can := m.info.CanDiscard
	m.mu.RUnlock()
	if !can {
		return ErrNotSupported
	}
	return m.WriteZeroes(off, n)
}

func (m *Memory) WriteZeroes(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.info.ReadOnly {
		return ErrReadOnly
	}
	if err := CheckRange(off, n, m.size); err != nil {
		return err
	}
	for end := off + n; off < end; {
		c, o := off/chunkSize, off%chunkSize
		k := min(end-off, chunkSize-o)
		if b := m.chunks[c]; b != nil {
			if k == chunkSize {
				delete(m.chunks, c)
			} else {
				clear(b[o : o+k])
			}
		}
		off += k
	}
	return nil
}

func (m *Memory) Close() error { return nil }

// Allocated is the memory in use, in bytes.
func (m *Memory) Allocated() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int64(len(m.chunks)) * chunkSize
}

// Null reads zeros and drops writes: a device for benchmarks.
type Null struct{ Size int64 }

func (z Null) Info() Info {
	return Info{Size: z.Size, LogicalBlockSize: 512, PhysicalBlockSize: 4096, RotationRate: 1, CanDiscard: true, DiscardZeroes: true}
}
func (z Null) ReadAt(p []byte, off int64) (int, error) {
	if err := CheckRange(off, int64(len(p)), z.Size); err != nil {
		return 0, err
	}
	clear(p)
	return len(p), nil
}
func (z Null) WriteAt(p []byte, off int64) (int, error) {
	if err := CheckRange(off, int64(len(p)), z.Size); err != nil {
		return 0, err
	}
	return len(p), nil
}
func (z Null) Flush() error                            { return nil }
func (z Null) Discard(off, n int64, secure bool) error { return CheckRange(off, n, z.Size) }
func (z Null) WriteZeroes(off, n int64) error          { return CheckRange(off, n, z.Size) }
func (z Null) Close() error                            { return nil }

// Map reports unallocated chunks as holes that read as zeros.
func (m *Memory) Map(off, n int64) ([]Extent, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := CheckRange(off, n, m.size); err != nil {
		return nil, err
	}
	var es []Extent
	for end := off + n; off < end && len(es) < maxExtents; {
		c := off / chunkSize
		k := min(end-off, (c+1)*chunkSize-off)
		hole := m.chunks[c] == nil
		es = appendExtent(es, Extent{Length: k, Hole: hole, Zero: hole})
		off += k
	}
	return es, nil
}
