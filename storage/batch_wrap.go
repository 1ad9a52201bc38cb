package storage

// The wrappers are Batchers whatever they wrap: their batch is the inner
// device's (io_uring under a File), behind a window that checks and
// translates offsets and refuses writes to a read-only view. So a
// partition of a file image keeps io_uring.

// NewBatch makes a batch on the slice's device, seen through the window.
func (s *Slice) NewBatch(ops, bufs int) (Batch, error) {
	return &windowBatch{inner: NewBatch(s.Dev, ops, bufs), offset: s.Offset, size: s.Size}, nil
}

// NewBatch makes a batch on the wrapped device that refuses writes.
func (r readOnly) NewBatch(ops, bufs int) (Batch, error) {
	return &windowBatch{inner: NewBatch(r.Device, ops, bufs), size: -1, readOnly: true}, nil
}

// windowBatch admits an operation when it lies within [0, size) (size -1:
// the inner batch's check alone) and is not a write to a read-only view,
// and queues it on the inner batch at offset+off.
type windowBatch struct {
	inner    Batch
	offset   int64
	size     int64
	readOnly bool
}

func (w *windowBatch) Add(write bool, bufs [][]byte, off int64, tag uint32) error {
	if write && w.readOnly {
		return ErrReadOnly
	}
	if w.size >= 0 {
		if err := CheckRange(off, totalLen(bufs), w.size); err != nil {
			return err
		}
	}
	return w.inner.Add(write, bufs, w.offset+off, tag)
}

func (w *windowBatch) Len() int                                      { return w.inner.Len() }
func (w *windowBatch) Submit(done func(tag uint32, err error)) error { return w.inner.Submit(done) }
func (w *windowBatch) Close() error                                  { return w.inner.Close() }
