package storage

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/uring"
)

// fileBatch carries out a batch on a file descriptor (a File's image, a
// BlockDev's device) with io_uring: one READV/WRITEV
// SQE per operation (per IOV_MAX buffers of it; READ/WRITE for a single
// buffer), all submitted and waited for in one io_uring_enter where the
// kernel takes them in one go.
//
// Memory handed to the kernel: the SQEs name iovec arrays in b.iov, and
// the iovecs name the caller's buffers. Both stay referenced by the batch
// (b.iov holds the buffers' pointers, b.q.bufs their headers) until
// Submit has reaped every completion, and neither can move: b.iov is a
// heap array, and buffers are either outside Go's heap (blkback's mapped
// grant pages) or heap objects (they escape into b.q.bufs), which Go's
// collector never moves.
type fileBatch struct {
	t    ringTarget
	ring *uring.Ring // nil once broken: everything then runs synchronously
	q    opQueue
	iov  []unix.Iovec // iov[i] describes q.bufs[i]
	segs []fileSeg    // one per SQE; the SQE's user data is its index
	ops  []fileOpState
	// waiting counts segments whose completion has not been reaped
	// (queued, in flight, or posted).
	waiting int
	// done is Submit's callback while Submit runs: an operation is
	// reported as soon as its last segment is reaped (finish).
	done func(tag uint32, err error)
}

// fileSeg is the part of an operation one SQE moves: q.bufs[first:first+n]
// at off, length bytes.
type fileSeg struct {
	op       int
	first, n int
	off      int64
	length   int64
}

type fileOpState struct {
	// sync: carried out by dev at Submit, beside the ring: an O_DIRECT
	// transfer with an unaligned buffer (it bounces), or a write that
	// the target writes inline.
	sync     bool
	segsLeft int // segments not completed
	err      error
	reported bool // done has been called for it
}

// ringTarget is what a ring batch needs of the device it serves.
type ringTarget struct {
	// dev carries out what the ring does not, synchronously: bounced
	// O_DIRECT operations, the rest of short transfers, everything once
	// the ring is broken. Its reads and writes must reach fd.
	dev      Device
	fd       int
	path     string // for errors
	size     int64
	readOnly bool
	// aligned reports whether a buffer at an offset may go to fd as it
	// is; nil: always (fd is not O_DIRECT).
	aligned func(p []byte, off int64) bool
	// writeInline: writes are carried out by dev, not the ring. For a
	// file written through the page cache: a file system without async
	// buffered writes (ext4) makes io_uring hand each such write to a
	// worker thread, one at a time per file, which costs more than the
	// copy into the page cache that pwrite does in place.
	writeInline bool
}

// IOUringAvailable reports why this process cannot make an io_uring (an
// old kernel, io_uring_disabled, a seccomp policy), or nil when it can.
// Without one, File and BlockDev batches fall back to one system call per
// operation (NewBatch does that silently, per batch); a daemon says so
// once at startup.
func IOUringAvailable() error {
	r, err := uring.New(1)
	if err != nil {
		return err
	}
	return r.Close()
}

// NewBatch makes an io_uring batch on the file. ErrNotSupported when the
// kernel will not make a ring here (storage.NewBatch then makes a
// SyncBatch).
func (d *File) NewBatch(ops, bufs int) (Batch, error) {
	t := ringTarget{dev: d, fd: int(d.f.Fd()), path: d.path, size: d.size, readOnly: d.opt.ReadOnly}
	if d.opt.Direct {
		t.aligned = d.aligned
	} else {
		t.writeInline = true
	}
	return newRingBatch(t, ops, bufs)
}

// newRingBatch makes an io_uring batch on t for up to ops operations
// holding up to bufs buffers (see Batcher.NewBatch).
func newRingBatch(t ringTarget, ops, bufs int) (Batch, error) {
	ops, bufs = max(ops, 1), max(bufs, 1)
	// Each operation takes ceil(n/IOV_MAX) SQEs, so ops + bufs/IOV_MAX
	// SQEs hold any batch that fits ops and bufs.
	sqes := ops + bufs/maxIovecs
	if sqes > uring.MaxEntries {
		return nil, fmt.Errorf("storage: a batch of %d operations is beyond io_uring's %d entries: %w", ops, uring.MaxEntries, ErrNotSupported)
	}
	ring, err := uring.New(uint32(sqes))
	if err != nil {
		return nil, fmt.Errorf("storage: %s: %w (%w)", t.path, ErrNotSupported, err)
	}
	b := &fileBatch{
		t: t, ring: ring, q: newOpQueue(ops, bufs),
		iov: make([]unix.Iovec, bufs), segs: make([]fileSeg, 0, sqes), ops: make([]fileOpState, 0, ops),
	}
	// A batch dropped without Close still gives its ring back.
	runtime.AddCleanup(b, func(r *uring.Ring) { r.Close() }, ring)
	return b, nil
}

func (b *fileBatch) Add(write bool, bufs [][]byte, off int64, tag uint32) error {
	if err := b.q.check(write, bufs, off, Info{Size: b.t.size, ReadOnly: b.t.readOnly}); err != nil {
		return err
	}
	sync := write && b.t.writeInline || !b.t.allAligned(bufs, off)
	nsegs := 0
	if !sync {
		nsegs = (len(bufs) + maxIovecs - 1) / maxIovecs
	}
	if len(b.segs)+nsegs > cap(b.segs) {
		return ErrBatchFull
	}
	op := b.q.push(write, bufs, off, tag)
	b.ops = append(b.ops, fileOpState{sync: sync, segsLeft: nsegs})
	for i, buf := range bufs {
		b.iov[op.first+i] = unix.Iovec{Base: unsafe.SliceData(buf), Len: uint64(len(buf))}
	}
	pos := off
	for first := 0; first < nsegs*maxIovecs && first < len(bufs); first += maxIovecs {
		n := min(len(bufs)-first, maxIovecs)
		length := totalLen(bufs[first : first+n])
		b.segs = append(b.segs, fileSeg{op: len(b.ops) - 1, first: op.first + first, n: n, off: pos, length: length})
		pos += length
	}
	return nil
}

// allAligned reports whether every buffer can go straight to the
// descriptor (always, unless O_DIRECT).
func (t *ringTarget) allAligned(bufs [][]byte, off int64) bool {
	if t.aligned == nil {
		return true
	}
	for _, buf := range bufs {
		if !t.aligned(buf, off) {
			return false
		}
		off += int64(len(buf))
	}
	return true
}

func (b *fileBatch) Len() int { return len(b.q.ops) }

func (b *fileBatch) Submit(done func(tag uint32, err error)) error {
	if b.q.closed {
		return errBatchClosed
	}
	defer b.reset()
	b.done = done
	var err error
	if b.ring == nil {
		b.runAllSync()
	} else {
		err = b.runRing()
	}
	for i := range b.q.ops {
		b.finish(i) // those a broken ring left unfinished
	}
	return err
}

// finish reports operation i to Submit's callback, once.
func (b *fileBatch) finish(i int) {
	if st := &b.ops[i]; !st.reported {
		st.reported = true
		b.done(b.q.ops[i].tag, st.err)
	}
}

// runRing queues every segment on the ring, carries out the operations
// that must bounce while the ring's run, and waits for the ring.
func (b *fileBatch) runRing() error {
	for i := range b.segs {
		sqe := b.ring.NextSQE()
		if sqe == nil { // cannot happen: the ring holds cap(segs) and is empty here
			b.waiting++
			b.segDone(i, b.finishSync(i, 0))
			continue
		}
		b.prep(sqe, i)
		b.waiting++
	}
	bounced := false
	for i := range b.ops {
		if b.ops[i].sync {
			if !bounced {
				// Start the ring's work first, so it overlaps the bounces;
				// a failure here is met again, and handled, in await.
				b.ring.Submit()
				bounced = true
			}
			op := &b.q.ops[i]
			b.ops[i].err = moveAll(b.t.dev, op.write, b.q.buffers(op), op.off)
			b.finish(i)
		}
	}
	return b.await()
}

func (b *fileBatch) prep(sqe *uring.SQE, seg int) {
	s := &b.segs[seg]
	write := b.q.ops[s.op].write
	if s.n == 1 {
		// One buffer: READ/WRITE spare the kernel importing an iovec.
		buf := b.q.bufs[s.first]
		if write {
			sqe.PrepWrite(b.t.fd, buf, s.off, uint64(seg))
		} else {
			sqe.PrepRead(b.t.fd, buf, s.off, uint64(seg))
		}
		return
	}
	iov := b.iov[s.first : s.first+s.n]
	if write {
		sqe.PrepWritev(b.t.fd, iov, s.off, uint64(seg))
	} else {
		sqe.PrepReadv(b.t.fd, iov, s.off, uint64(seg))
	}
}

// await submits what the kernel has not taken and waits until every
// segment has completed, reporting each operation as its last segment
// is reaped: it waits for one completion at a time, so that an operation
// that completes early is not held until the slowest one has. Reads the
// page cache holds complete as they are submitted, so a batch of them
// is still one io_uring_enter.
func (b *fileBatch) await() error {
	for {
		b.ring.Reap(b.onCQE)
		if b.waiting == 0 {
			return nil
		}
		_, err := b.ring.SubmitAndWait(1)
		switch {
		case err == nil:
		case err == unix.EAGAIN || err == unix.EBUSY:
			// The kernel is short of resources, or its completions are
			// backed up: what is in flight frees them as it completes.
			// With nothing in flight, the rest is done synchronously.
			if b.waiting > b.ring.Unsubmitted() {
				if err := b.ring.Wait(1); err != nil && err != unix.EAGAIN && err != unix.EBUSY {
					return b.fail(err)
				}
			} else {
				b.ring.DropUnsubmitted(b.finishDropped)
			}
		default:
			return b.fail(err)
		}
	}
}

// onCQE records one segment's completion. A short transfer, or one the
// kernel gave up on (EAGAIN, EINTR), is finished synchronously.
func (b *fileBatch) onCQE(c *uring.CQE) {
	seg := int(c.UserData)
	s := &b.segs[seg]
	var err error
	switch res := c.Res; {
	case res == -int32(unix.EAGAIN) || res == -int32(unix.EINTR):
		err = b.finishSync(seg, 0)
	case res < 0:
		err = fmt.Errorf("storage: %s: %w", b.t.path, unix.Errno(-res))
	case int64(res) < s.length:
		err = b.finishSync(seg, int64(res))
	}
	b.segDone(seg, err)
}

func (b *fileBatch) finishDropped(userData uint64) {
	seg := int(userData)
	b.segDone(seg, b.finishSync(seg, 0))
}

// segDone counts a segment complete, keeping its operation's first
// error, and reports the operation when it was its last.
func (b *fileBatch) segDone(seg int, err error) {
	op := b.segs[seg].op
	st := &b.ops[op]
	if st.err == nil {
		st.err = err
	}
	st.segsLeft--
	b.waiting--
	if st.segsLeft == 0 {
		b.finish(op)
	}
}

// finishSync moves what is left of a segment after its first moved bytes,
// with preadv/pwritev.
func (b *fileBatch) finishSync(seg int, moved int64) error {
	s := &b.segs[seg]
	bufs := advance(b.q.bufs[s.first:s.first+s.n], int(moved))
	return moveAll(b.t.dev, b.q.ops[s.op].write, bufs, s.off+moved)
}

// fail gives up on the ring after an io_uring_enter error that waiting
// cannot cure: what the kernel never took is done synchronously, what it
// took is reported failed (closing the ring waits for it to end, so no
// buffer of the batch is written after Submit returns), and the batch
// runs synchronously from now on.
func (b *fileBatch) fail(err error) error {
	b.ring.DropUnsubmitted(b.finishDropped)
	err = fmt.Errorf("storage: %s: io_uring_enter: %w", b.t.path, err)
	for i := range b.ops {
		if st := &b.ops[i]; st.segsLeft > 0 && st.err == nil {
			st.err = err
		}
	}
	b.ring.Close()
	b.ring = nil
	return err
}

func (b *fileBatch) runAllSync() {
	for i := range b.q.ops {
		op := &b.q.ops[i]
		b.ops[i].err = moveAll(b.t.dev, op.write, b.q.buffers(op), op.off)
		b.finish(i)
	}
}

// reset empties the batch, dropping every reference to the caller's buffers.
func (b *fileBatch) reset() {
	clear(b.iov[:len(b.q.bufs)])
	clear(b.ops)
	b.q.reset()
	b.segs, b.ops, b.waiting = b.segs[:0], b.ops[:0], 0
	b.done = nil
}

func (b *fileBatch) Close() error {
	if b.q.closed {
		return nil
	}
	b.reset()
	b.q.closed = true
	if b.ring == nil {
		return nil
	}
	return b.ring.Close()
}
