package qcow2

import (
	"github.com/xenblk/xenblk/storage"
)

// NewBatch makes a batch for a backend's pass (storage.Batcher): a read
// whose clusters are all standard ones, one run in the file, goes to the
// image file on io_uring with the pass's other such reads, its host range
// resolved at Add under d.mu; everything else (writes, and reads of
// unallocated, zero or compressed clusters or the backing file's) runs
// through ReadAt and WriteAt at Submit, as a SyncBatch would. Reading a
// resolved range after d.mu is released is safe for the reason readPiece
// gives: a host cluster is never allocated again once freed.
// ErrNotSupported: the image is not over a file, or the kernel will not
// make a ring.
func (d *Image) NewBatch(ops, bufs int) (storage.Batch, error) {
	f, ok := d.f.(osFile)
	if !ok {
		return nil, storage.ErrNotSupported
	}
	ops, bufs = max(ops, 1), max(bufs, 1)
	ring, err := storage.NewReadBatch(f.File, ops, bufs)
	if err != nil {
		return nil, err
	}
	return &imageBatch{d: d, ring: ring, sync: storage.NewSyncBatch(d, ops, bufs), ops: ops, bufs: bufs}, nil
}

// imageBatch is an Image's batch: mapped reads on ring, the rest on sync.
// Together they hold at most ops operations and bufs buffers, as the
// batch was made for; used counts the buffers queued on either.
type imageBatch struct {
	d          *Image
	ring, sync storage.Batch
	ops, bufs  int
	used       int
}

func (b *imageBatch) Add(write bool, bufs [][]byte, off int64, tag uint32) error {
	if b.Len() == b.ops || b.used+len(bufs) > b.bufs {
		if len(bufs) > b.bufs {
			return b.sync.Add(write, bufs, off, tag) // its error says why never
		}
		return storage.ErrBatchFull
	}
	var err error
	if host, ok := b.d.hostRun(write, bufs, off); ok {
		err = b.ring.Add(false, bufs, host, tag)
	} else {
		err = b.sync.Add(write, bufs, off, tag)
	}
	if err == nil {
		b.used += len(bufs)
	}
	return err
}

func (b *imageBatch) Len() int { return b.ring.Len() + b.sync.Len() }

func (b *imageBatch) Submit(done func(tag uint32, err error)) error {
	b.used = 0
	err := b.ring.Submit(done)
	if serr := b.sync.Submit(done); err == nil {
		err = serr
	}
	return err
}

func (b *imageBatch) Close() error {
	err := b.ring.Close()
	if serr := b.sync.Close(); err == nil {
		err = serr
	}
	return err
}

// hostRun reports where in the file a read of bufs at guest offset off
// lies, when all of it is in standard clusters that follow each other in
// the file and end inside it (a read that may reach past the file's end
// is clamped by readPiece instead). Writes never: they keep WriteAt's
// order of metadata and data.
func (d *Image) hostRun(write bool, bufs [][]byte, off int64) (int64, bool) {
	if write {
		return 0, false
	}
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	if n == 0 || storage.CheckRange(off, n, int64(d.h.Size)) != nil {
		return 0, false // SyncBatch's check answers it
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var start, next int64
	for pos, end := off, off+n; pos < end; {
		m, err := d.lookup(pos)
		if err != nil {
			return 0, false
		}
		e := m.entry
		if e&(flagComp|flagZero) != 0 || e&offsetMask == 0 {
			return 0, false
		}
		host, err := d.standardHost(e)
		if err != nil {
			return 0, false
		}
		within := pos - m.guest
		if pos == off {
			start = host + within
		} else if host != next {
			return 0, false
		}
		k := min(end, m.guest+d.cs) - pos
		next = host + within + k
		pos += k
	}
	if next > d.fileSize {
		return 0, false
	}
	return start, true
}
