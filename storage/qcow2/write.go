package qcow2

import (
	"encoding/binary"
	"fmt"

	"github.com/xenblk/xenblk/storage"
)

// WriteAt writes guest bytes: in place where the cluster is the image's
// own (COPIED), else into a newly allocated cluster in the order the
// package comment gives.
func (d *Image) WriteAt(p []byte, off int64) (int, error) {
	if d.readOnly {
		return 0, storage.ErrReadOnly
	}
	if err := storage.CheckRange(off, int64(len(p)), int64(d.h.Size)); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return 0, d.err
	}
	return d.write(p, off)
}

func (d *Image) write(p []byte, off int64) (int, error) {
	n, err := d.eachCluster(p, off, true)
	if cerr := d.commit(); err == nil && cerr != nil {
		return 0, d.fail(cerr)
	}
	return n, err
}

// pendingL2 is an L2 entry to write once the cluster it names is durable.
type pendingL2 struct {
	l2off  int64
	i      int
	e, old uint64
}

// maxPending bounds the L2 updates one fdatasync covers.
const maxPending = 256

// commit writes the pending L2 entries of a write after one fdatasync
// has made their clusters (and refcounts) durable, then frees what they
// replaced after another.
func (d *Image) commit() error {
	if len(d.pending) == 0 {
		return nil
	}
	defer func() { d.pending = d.pending[:0] }()
	if err := d.sync(); err != nil {
		return err
	}
	freed := false
	for _, u := range d.pending {
		if err := d.setL2(u.l2off, u.i, u.e); err != nil {
			return err
		}
		freed = freed || u.old&(flagComp|offsetMask) != 0
	}
	if !freed {
		return nil
	}
	if err := d.sync(); err != nil {
		return err
	}
	for _, u := range d.pending {
		if err := d.free(u.old); err != nil {
			return err
		}
	}
	return nil
}

// writePiece writes piece at within in the guest cluster at pos.
func (d *Image) writePiece(piece []byte, pos, within int64) error {
	m, err := d.lookup(pos)
	if err != nil {
		return err
	}
	e := m.entry
	if e&flagCopied != 0 && e&flagComp == 0 && e&flagZero == 0 && e&offsetMask != 0 {
		host, err := d.standardHost(e)
		if err != nil {
			return err
		}
		return d.writeHost(piece, host+within)
	}
	if err := d.writeNewCluster(pos, within, piece, m); err != nil {
		return d.fail(err)
	}
	return nil
}

// fail makes a metadata error sticky: after it, what is in memory may
// no longer match the file, so every later write is refused with it.
func (d *Image) fail(err error) error {
	if d.err == nil {
		d.err = fmt.Errorf("qcow2: image %s: writes stopped after an error: %w", d.name, err)
	}
	return err
}

// writeHost writes p at host offset off and notes that the file has
// writes not yet durable.
func (d *Image) writeHost(p []byte, off int64) error {
	if _, err := d.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("qcow2: image %s: write at %#x: %w", d.name, off, err)
	}
	d.fileSize = max(d.fileSize, off+int64(len(p)))
	d.dirty = true
	return nil
}

// sync makes every write so far durable.
func (d *Image) sync() error {
	if !d.dirty {
		return nil
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("qcow2: image %s: %w", d.name, err)
	}
	d.dirty = false
	return nil
}

// putEntry writes a 64-bit table entry at host offset off.
func (d *Image) putEntry(off int64, e uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], e)
	return d.writeHost(b[:], off)
}

// writeNewCluster writes piece at within into a new cluster for guest
// offset pos, whose old mapping is m; the rest of the cluster keeps what
// the guest saw there.
func (d *Image) writeNewCluster(pos, within int64, piece []byte, m mapping) error {
	l2off, err := d.ensureL2(pos)
	if err != nil {
		return err
	}
	data := piece
	if int64(len(piece)) != d.cs {
		if err := d.readCluster(d.zbuf, 0, m); err != nil {
			return err
		}
		copy(d.zbuf[within:], piece)
		data = d.zbuf
	}
	host, err := d.allocCluster()
	if err != nil {
		return err
	}
	if err := d.writeHost(data, host); err != nil {
		return err
	}
	d.pending = append(d.pending, pendingL2{l2off, m.l2i, uint64(host) | flagCopied, m.entry})
	if len(d.pending) == maxPending {
		return d.commit()
	}
	return nil
}

// setL2 makes the L2 entry i of the table at l2off e; the caller has
// made durable the cluster e names and its refcount.
func (d *Image) setL2(l2off int64, i int, e uint64) error {
	tab, err := d.l2Table(l2off)
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint64(tab[i*8:], e)
	if err := d.putEntry(l2off+int64(i)*8, e); err != nil {
		d.forgetL2(l2off)
		return err
	}
	return nil
}

// free lowers the refcounts of the clusters old names; the caller has
// made durable the table write that stopped naming them.
func (d *Image) free(old uint64) error {
	var first, last int64
	switch {
	case old&flagComp != 0:
		off, sectors := d.compressedRange(old)
		start := off &^ 511
		first, last = start>>d.cb, (start+sectors*512-1)>>d.cb
	case old&offsetMask != 0:
		first = int64(old&offsetMask) >> d.cb
		last = first
	default:
		return nil
	}
	for c := first; c <= last; c++ {
		if err := d.addRef(c, -1); err != nil {
			return err
		}
	}
	return nil
}

// ensureL2 returns the L2 table mapping guest offset pos, allocating a
// zeroed one (durable before L1 names it) when L1 has none.
func (d *Image) ensureL2(pos int64) (int64, error) {
	l1i := (uint64(pos) >> d.cb) / uint64(d.cs/8)
	e := d.l1[l1i]
	if off := int64(e & offsetMask); off != 0 {
		if e&flagCopied == 0 {
			return 0, fmt.Errorf("%w: L2 table at %#x is shared (no COPIED flag); this does not copy L2 tables", ErrUnsupported, off)
		}
		return off, nil
	}
	off, err := d.allocCluster()
	if err != nil {
		return 0, err
	}
	d.forgetL2(off)
	tab, err := d.l2Table(off) // past the end of the file: reads as zeros
	if err != nil {
		return 0, err
	}
	clear(tab)
	if err := d.writeHost(tab, off); err != nil {
		d.forgetL2(off)
		return 0, err
	}
	if err := d.sync(); err != nil {
		return 0, err
	}
	e = uint64(off) | flagCopied
	if err := d.putEntry(int64(d.h.L1Offset)+int64(l1i)*8, e); err != nil {
		return 0, err
	}
	d.l1[l1i] = e
	return off, nil
}

// Refcounts. Entries are 1<<RefcountOrder bits wide, big-endian; writing
// needs whole bytes (order 3 to 6, checked at open).

func (d *Image) refBytes() int64     { return 1 << d.h.RefcountOrder >> 3 }
func (d *Image) refsPerBlock() int64 { return d.cs / d.refBytes() }

func (d *Image) refMax() uint64 {
	if d.h.RefcountOrder == 6 {
		return 1<<63 - 1
	}
	return 1<<(1<<d.h.RefcountOrder) - 1
}

func getRef(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(b))
	case 4:
		return uint64(binary.BigEndian.Uint32(b))
	}
	return binary.BigEndian.Uint64(b)
}

func putRef(b []byte, v uint64) {
	switch len(b) {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.BigEndian.PutUint16(b, uint16(v))
	case 4:
		binary.BigEndian.PutUint32(b, uint32(v))
	default:
		binary.BigEndian.PutUint64(b, v)
	}
}

// allocCluster reserves the next cluster at the end of the file, its
// refcount raised to 1.
func (d *Image) allocCluster() (int64, error) {
	host := d.end
	d.end += d.cs
	if err := d.addRef(host>>d.cb, 1); err != nil {
		return 0, err
	}
	return host, nil
}

// addRef adds delta (+1 or -1) to the refcount of host cluster c. A
// cluster whose count drops to 0 is punched out of the file.
func (d *Image) addRef(c int64, delta int64) error {
	ti := c / d.refsPerBlock()
	if ti >= int64(len(d.rt)) || d.rt[ti] == 0 {
		if delta < 0 {
			return fmt.Errorf("%w: freeing cluster %#x, which has no refcount block", ErrCorrupt, c<<d.cb)
		}
		if ti >= int64(len(d.rt)) {
			if err := d.growRefTable(ti); err != nil {
				return err
			}
		}
		if d.rt[ti] == 0 {
			if err := d.newRefBlock(ti); err != nil {
				return err
			}
		}
	}
	return d.addRefIn(int64(d.rt[ti]), c, delta)
}

// addRefIn adds delta to cluster c's entry in the refcount block at blk.
func (d *Image) addRefIn(blk, c, delta int64) error {
	w := d.refBytes()
	at := blk + c%d.refsPerBlock()*w
	var b [8]byte
	if err := d.readHost(b[:w], at); err != nil {
		return err
	}
	v := getRef(b[:w])
	switch {
	case delta < 0 && v == 0:
		return fmt.Errorf("%w: freeing cluster %#x, whose refcount is already 0", ErrCorrupt, c<<d.cb)
	case delta > 0 && v == d.refMax():
		return fmt.Errorf("%w: refcount of cluster %#x would overflow", ErrCorrupt, c<<d.cb)
	}
	v = uint64(int64(v) + delta)
	putRef(b[:w], v)
	if err := d.writeHost(b[:w], at); err != nil {
		return err
	}
	if v == 0 {
		d.f.Punch(c<<d.cb, d.cs) // best effort: the cluster is free either way
	}
	return nil
}

// newRefBlock allocates the refcount block for refcount table entry ti:
// written whole (counting itself when it falls in its own range), made
// durable, then entered in the table.
func (d *Image) newRefBlock(ti int64) error {
	blk := d.end
	d.end += d.cs
	b := make([]byte, d.cs)
	bc := blk >> d.cb
	self := bc/d.refsPerBlock() == ti
	if self {
		w := d.refBytes()
		putRef(b[bc%d.refsPerBlock()*w:][:w], 1)
	}
	if err := d.writeHost(b, blk); err != nil {
		return err
	}
	if err := d.sync(); err != nil {
		return err
	}
	if err := d.putEntry(int64(d.h.RefTableOffset)+ti*8, uint64(blk)); err != nil {
		return err
	}
	d.rt[ti] = uint64(blk)
	if !self {
		return d.addRef(bc, 1)
	}
	return nil
}

// growRefTable moves the refcount table to a larger one at the end of
// the file with room for entry need: the new table and the refcount
// blocks that count its clusters are written and made durable, then the
// header names the new table (one write), then the old table's clusters
// are freed.
func (d *Image) growRefTable(need int64) error {
	perCluster := d.cs / 8
	entries := max(2*int64(len(d.rt)), need+1)
	var clusters int64
	for {
		clusters = (entries + perCluster - 1) / perCluster
		// The table and its own refcount blocks must fall in its range.
		last := (d.end>>d.cb + clusters + clusters/d.refsPerBlock() + 4)
		if last/d.refsPerBlock() < clusters*perCluster {
			break
		}
		entries = last/d.refsPerBlock() + 1
	}
	if clusters<<d.cb > maxRefTableBytes {
		return fmt.Errorf("%w: the refcount table would exceed %d bytes", ErrUnsupported, maxRefTableBytes)
	}
	rt := make([]uint64, clusters*perCluster)
	copy(rt, d.rt)
	tableOff := d.end
	d.end += clusters << d.cb
	fresh := map[int64][]byte{} // new refcount blocks by table index
	var work []int64
	for c := tableOff >> d.cb; c < d.end>>d.cb; c++ {
		work = append(work, c)
	}
	w := d.refBytes()
	for len(work) > 0 {
		c := work[len(work)-1]
		work = work[:len(work)-1]
		ti := c / d.refsPerBlock()
		if rt[ti] == 0 {
			blk := d.end
			d.end += d.cs
			rt[ti] = uint64(blk)
			fresh[ti] = make([]byte, d.cs)
			work = append(work, blk>>d.cb)
		}
		if b, ok := fresh[ti]; ok {
			e := b[c%d.refsPerBlock()*w:][:w]
			putRef(e, getRef(e)+1)
		} else if err := d.addRefIn(int64(rt[ti]), c, 1); err != nil {
			return err
		}
	}
	for ti, b := range fresh {
		if err := d.writeHost(b, int64(rt[ti])); err != nil {
			return err
		}
	}
	tb := make([]byte, clusters<<d.cb)
	for i, e := range rt {
		binary.BigEndian.PutUint64(tb[i*8:], e)
	}
	if err := d.writeHost(tb, tableOff); err != nil {
		return err
	}
	if err := d.sync(); err != nil {
		return err
	}
	var hb [12]byte
	binary.BigEndian.PutUint64(hb[:], uint64(tableOff))
	binary.BigEndian.PutUint32(hb[8:], uint32(clusters))
	if err := d.writeHost(hb[:], offRefTableOffset); err != nil {
		return err
	}
	if err := d.sync(); err != nil {
		return err
	}
	oldOff, oldClusters := int64(d.h.RefTableOffset), int64(d.h.RefTableClusters)
	d.rt = rt
	d.h.RefTableOffset, d.h.RefTableClusters = uint64(tableOff), uint32(clusters)
	for c := oldOff >> d.cb; c < oldOff>>d.cb+oldClusters; c++ {
		if err := d.addRef(c, -1); err != nil {
			return err
		}
	}
	return nil
}

// Flush makes every completed write durable.
func (d *Image) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("qcow2: image %s: %w", d.name, err)
	}
	d.dirty = false
	return nil
}

// Discard deallocates the whole clusters in [off, off+n) and writes
// zeros over the partial ones at its ends, so the range reads as zeros.
// Secure discard is not offered: a freed cluster's bytes are punched
// from the file, but the file system decides what that scrubs.
func (d *Image) Discard(off, n int64, secure bool) error {
	if secure {
		return storage.ErrNotSupported
	}
	return d.WriteZeroes(off, n)
}

// WriteZeroes makes [off, off+n) read as zeros: whole clusters become
// unallocated, or zero clusters where a backing file would show through
// (on a version 2 image, which has none, they are written with zeros);
// partial ones are written.
func (d *Image) WriteZeroes(off, n int64) error {
	if d.readOnly {
		return storage.ErrReadOnly
	}
	if err := storage.CheckRange(off, n, int64(d.h.Size)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	end := off + n
	first := (off + d.cs - 1) &^ (d.cs - 1)
	last := end &^ (d.cs - 1)
	if first >= last || (d.backing != nil && d.h.Version < 3) {
		return d.zeroBytes(off, end)
	}
	if err := d.zeroBytes(off, first); err != nil {
		return err
	}
	if err := d.zeroBytes(last, end); err != nil {
		return err
	}
	for pos := first; pos < last; {
		// One L2 table's worth at a time: its entries cleared in one
		// write, made durable, then the clusters they named freed.
		m, err := d.lookup(pos)
		if err != nil {
			return err
		}
		k := min(int((last-pos)>>d.cb), int(d.cs/8)-m.l2i)
		if m.l2off == 0 && d.backing != nil {
			// zero clusters need a table to be written in
			if m.l2off, err = d.ensureL2(pos); err != nil {
				return d.fail(err)
			}
		}
		pos += int64(k) << d.cb
		if m.l2off == 0 {
			continue
		}
		if err := d.unmap(m.l2off, m.l2i, k); err != nil {
			return d.fail(err)
		}
	}
	return nil
}

// zeroBytes writes zeros over [off, end), cluster by cluster, skipping
// the clusters that read as zeros already.
func (d *Image) zeroBytes(off, end int64) error {
	for off < end {
		n := min(end-off, d.cs-off&(d.cs-1))
		m, err := d.lookup(off)
		if err != nil {
			return err
		}
		if !d.readsZeros(m.entry) {
			if _, err := d.write(make([]byte, n), off); err != nil {
				return err
			}
		}
		off += n
	}
	return nil
}

// readsZeros reports whether a cluster with L2 entry e reads as zeros
// without reading it.
func (d *Image) readsZeros(e uint64) bool {
	return e == 0 && d.backing == nil || e == flagZero && d.h.Version >= 3
}

// unmapped is the L2 entry of a deallocated cluster: unallocated, or a
// zero cluster where a backing file would show through.
func (d *Image) unmapped() uint64 {
	if d.backing != nil {
		return flagZero
	}
	return 0
}

// unmap clears entries [i, i+k) of the L2 table at l2off and frees what
// they named.
func (d *Image) unmap(l2off int64, i, k int) error {
	tab, err := d.l2Table(l2off)
	if err != nil {
		return err
	}
	z := d.unmapped()
	old := make([]uint64, 0, k)
	changed := false
	for j := i; j < i+k; j++ {
		e := binary.BigEndian.Uint64(tab[j*8:])
		if e != z {
			old = append(old, e)
			changed = true
			binary.BigEndian.PutUint64(tab[j*8:], z)
		}
	}
	if !changed {
		return nil
	}
	if err := d.writeHost(tab[i*8:(i+k)*8], l2off+int64(i)*8); err != nil {
		d.forgetL2(l2off)
		return err
	}
	if err := d.sync(); err != nil {
		return err
	}
	for _, e := range old {
		if err := d.free(e); err != nil {
			return err
		}
	}
	return nil
}
