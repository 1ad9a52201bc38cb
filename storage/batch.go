package storage

import "errors"

// ErrBatchFull is returned by Batch.Add when the batch holds as many
// operations or buffers as it was made for: Submit it, then add again.
var ErrBatchFull = errors.New("storage: batch is full")

// Batch collects vectored reads and writes and carries them out together:
// a backend queue adds every read and write of one pass over its ring,
// then submits them at once. On a File it is one io_uring submission (one
// system call for the whole pass, the operations overlapping in the
// kernel); on any other device the operations run one after another at
// Submit (SyncBatch).
//
// A Batch belongs to one goroutine. Operations in one batch may complete
// in any order and may run concurrently, as requests in flight on a disk
// do: a caller that needs one write ordered after another submits the
// first before adding the second.
//
// Steady-state Add and Submit allocate nothing.
type Batch interface {
	// Add queues a read into bufs from off (write false) or a write of
	// bufs at off. The range is checked here: an out-of-range or
	// read-only request is refused with ErrOutOfRange/ErrReadOnly and
	// nothing is queued. ErrBatchFull: nothing is queued; Submit first.
	// An operation with more buffers than the whole batch was made for is
	// refused with another error (no Submit can make room for it).
	// The batch copies bufs' headers, so the caller may reuse the slice of
	// slices at once; the memory the buffers point to must stay valid
	// until done has reported the operation. tag comes back at completion.
	Add(write bool, bufs [][]byte, off int64, tag uint32) error
	// Len is the number of operations queued and not yet submitted.
	Len() int
	// Submit carries out every queued operation, waits for all of them,
	// and calls done once per operation, as soon as that one has
	// completed (a fast operation is not held by a slow one), with its
	// tag and its outcome: nil only when every byte moved (a short
	// transfer is finished or reported as an error, never passed on as
	// success). The batch is empty afterwards. Submit's own error means the batch mechanism
	// failed; done has still been called for every operation. done must
	// not call the batch's methods.
	Submit(done func(tag uint32, err error)) error
	// Close releases the batch's kernel resources. Queued operations are
	// dropped without being carried out. Closing twice is harmless; Add
	// and Submit fail afterwards.
	Close() error
}

// Batcher is an optional interface: a device with its own batch
// mechanism (File: io_uring).
type Batcher interface {
	// NewBatch makes a batch for up to ops operations holding up to bufs
	// buffers in all. ErrNotSupported: the mechanism is not available
	// here (an old kernel, a seccomp policy); use SyncBatch.
	NewBatch(ops, bufs int) (Batch, error)
}

// NewBatch makes a batch on dev: the device's own when it is a Batcher
// and the mechanism works, otherwise a SyncBatch.
func NewBatch(dev Device, ops, bufs int) Batch {
	if b, ok := dev.(Batcher); ok {
		if batch, err := b.NewBatch(ops, bufs); err == nil {
			return batch
		}
	}
	return NewSyncBatch(dev, ops, bufs)
}
