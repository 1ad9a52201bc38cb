package storage

import (
	"errors"
	"fmt"
)

// errBatchClosed is Add's and Submit's answer after Close.
var errBatchClosed = errors.New("storage: batch is closed")

// batchOp is one queued operation: its buffers are bufs[first:first+n]
// of the batch that holds it.
type batchOp struct {
	write    bool
	off      int64
	first, n int
	tag      uint32
}

// opQueue is the bookkeeping both batch kinds share: the queued
// operations and a copy of their buffer headers, in arrays sized once.
type opQueue struct {
	ops    []batchOp
	bufs   [][]byte
	closed bool
}

func newOpQueue(ops, bufs int) opQueue {
	return opQueue{ops: make([]batchOp, 0, max(ops, 1)), bufs: make([][]byte, 0, max(bufs, 1))}
}

// check is Add's common admission: open, the right to write, the range,
// and room for the operation.
func (q *opQueue) check(write bool, bufs [][]byte, off int64, in Info) error {
	switch {
	case q.closed:
		return errBatchClosed
	case write && in.ReadOnly:
		return ErrReadOnly
	}
	if err := CheckRange(off, totalLen(bufs), in.Size); err != nil {
		return err
	}
	if len(bufs) > cap(q.bufs) {
		return fmt.Errorf("storage: an operation of %d buffers is larger than a batch of %d can ever hold", len(bufs), cap(q.bufs))
	}
	if len(q.ops) == cap(q.ops) || len(q.bufs)+len(bufs) > cap(q.bufs) {
		return ErrBatchFull
	}
	return nil
}

// push queues an operation that passed check.
func (q *opQueue) push(write bool, bufs [][]byte, off int64, tag uint32) *batchOp {
	q.ops = append(q.ops, batchOp{write: write, off: off, first: len(q.bufs), n: len(bufs), tag: tag})
	q.bufs = append(q.bufs, bufs...)
	return &q.ops[len(q.ops)-1]
}

// buffers is op's copy of its buffer headers.
func (q *opQueue) buffers(op *batchOp) [][]byte { return q.bufs[op.first : op.first+op.n] }

// reset empties the queue, dropping the buffer references so the batch
// does not keep the caller's memory alive.
func (q *opQueue) reset() {
	clear(q.bufs)
	q.ops, q.bufs = q.ops[:0], q.bufs[:0]
}

// syncBatch carries out its operations one after another at Submit, with
// the device's ReadvAt/WritevAt.
type syncBatch struct {
	dev Device
	q   opQueue
}

// NewSyncBatch makes a batch on dev for up to ops operations holding up to
// bufs buffers in all, which runs them one by one at Submit. It works on
// every device; Batchers do better with their own (see NewBatch).
func NewSyncBatch(dev Device, ops, bufs int) Batch {
	return &syncBatch{dev: dev, q: newOpQueue(ops, bufs)}
}

func (b *syncBatch) Add(write bool, bufs [][]byte, off int64, tag uint32) error {
	if err := b.q.check(write, bufs, off, b.dev.Info()); err != nil {
		return err
	}
	b.q.push(write, bufs, off, tag)
	return nil
}

func (b *syncBatch) Len() int { return len(b.q.ops) }

func (b *syncBatch) Submit(done func(tag uint32, err error)) error {
	if b.q.closed {
		return errBatchClosed
	}
	defer b.q.reset()
	for i := range b.q.ops {
		op := &b.q.ops[i]
		done(op.tag, moveAll(b.dev, op.write, b.q.buffers(op), op.off))
	}
	return nil
}

func (b *syncBatch) Close() error {
	b.q.reset()
	b.q.closed = true
	return nil
}

// moveAll is one vectored transfer that succeeds only when every byte moved.
func moveAll(dev Device, write bool, bufs [][]byte, off int64) error {
	if totalLen(bufs) == 0 {
		// Nothing to move (File's preadv loop takes a 0 for a short count).
		return nil
	}
	var n int
	var err error
	if write {
		n, err = WritevAt(dev, bufs, off)
	} else {
		n, err = ReadvAt(dev, bufs, off)
	}
	if err == nil && int64(n) != totalLen(bufs) {
		err = fmt.Errorf("storage: short transfer: %d of %d bytes at %d", n, totalLen(bufs), off)
	}
	return err
}
