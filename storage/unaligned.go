package storage

import "sync"

// BlockRW reads (write false) or writes whole blocks of a device: off
// and len(p) are multiples of its block size, and the range is in it.
type BlockRW func(p []byte, off int64, write bool) error

// Unaligned serves reads and writes of any offset and length on a device
// that moves whole blocks only (a frontend's disk): the partial blocks
// at either end are read, merged and written back. Two unaligned writes
// into one block must not lose each other's bytes, so a write holds the
// locks of its first and last block's stripes (in order, once each).
// The range is the caller's to check. The zero value is ready.
type Unaligned struct {
	stripes [64]sync.Mutex
}

// ReadAt reads p at off (not block-aligned) through rw, blocks of bs
// bytes.
func (u *Unaligned) ReadAt(rw BlockRW, bs int64, p []byte, off int64) (int, error) {
	start, end := blockSpan(bs, off, len(p))
	buf := make([]byte, end-start)
	if err := rw(buf, start, false); err != nil {
		return 0, err
	}
	return copy(p, buf[off-start:]), nil
}

// WriteAt writes p at off (not block-aligned) through rw, blocks of bs
// bytes: the first and last block are read, p merged in, and the whole
// span written.
func (u *Unaligned) WriteAt(rw BlockRW, bs int64, p []byte, off int64) (int, error) {
	start, end := blockSpan(bs, off, len(p))
	a, b := (start/bs)%int64(len(u.stripes)), ((end-bs)/bs)%int64(len(u.stripes))
	if a > b {
		a, b = b, a
	}
	u.stripes[a].Lock()
	defer u.stripes[a].Unlock()
	if b != a {
		u.stripes[b].Lock()
		defer u.stripes[b].Unlock()
	}
	buf := make([]byte, end-start)
	if err := rw(buf[:bs], start, false); err != nil {
		return 0, err
	}
	if end-bs > start {
		if err := rw(buf[len(buf)-int(bs):], end-bs, false); err != nil {
			return 0, err
		}
	}
	copy(buf[off-start:], p)
	if err := rw(buf, start, true); err != nil {
		return 0, err
	}
	return len(p), nil
}

// blockSpan is the whole blocks [start, end) that n bytes at off touch.
func blockSpan(bs, off int64, n int) (start, end int64) {
	return off / bs * bs, (off + int64(n) + bs - 1) / bs * bs
}
