// Package qcow2 is a storage.Device over a QEMU qcow2 image (version 3,
// and version 2 images), read and written natively.
//
// Supported: versions 2 and 3; cluster sizes 512 B to 2 MiB; reading
// unallocated clusters (as zeros, or the backing file's bytes), zero
// clusters (v3), standard and compressed clusters (zlib, raw deflate as
// QEMU writes them); backing files (chains of qcow2 and raw images,
// named relative to the image or absolute, their format from the header
// extension or probed; each opened read-only and locked as a reader;
// a chain that loops is refused); writing with clusters and L2 tables
// allocated at the end of the file and refcounts kept exact (refcount
// widths of 8 to 64 bits; the refcount table grows when needed), a
// partial write into an unallocated cluster copying up the backing
// file's bytes; discard and write-zeroes deallocate whole clusters (the
// freed clusters' bytes are punched out of the file) — as zero clusters
// where a backing file would show through, and on a v2 image with a
// backing file, which has no zero clusters, by writing zeros — and
// write zeros over partial ones; internal snapshots listed (Snapshots)
// and read (OpenSnapshot); images with internal snapshots, or marked
// dirty or corrupt by QEMU, are opened read-only only.
// Not supported (refused with ErrUnsupported, naming the feature):
// encryption, external data files, extended L2 entries (subclusters),
// zstd compression, backing formats other than qcow2 and raw; writing
// compressed clusters; creating, deleting or reverting snapshots; bitmaps
// (a writer clears the autoclear bit so QEMU knows they are stale); lazy
// refcounts (never used: the dirty bit is never set).
//
// A backing file is opened as the image names it: an image from an
// untrusted source can name any file the backend may read, as with QEMU
// (qemu-img info --backing-chain shows the chain before serving it).
//
// Freed clusters are not reused: allocation always appends. The file
// keeps its length but not its blocks (the hole is punched).
//
// # Crash safety
//
// A write that allocates follows this order, and every step that makes
// metadata point at something waits (fdatasync) until that something is
// durable, so that a crash at any moment — process kill or power loss —
// leaves an image whose only fault is leaked clusters (refcount above
// zero, referenced by nobody), which qemu-img check reports and repairs
// but which lose nothing:
//
//  1. the refcount of the new cluster is raised (a refcount block it
//     needs is written whole, then made durable, then entered in the
//     refcount table; a refcount table that must grow is written whole
//     at the end of the file, made durable, and only then named by the
//     header);
//  2. the cluster's data is written (the whole cluster: the new bytes
//     merged with what the guest saw there before — zeros, or a
//     compressed or shared cluster's bytes);
//  3. fdatasync (one for all the clusters a write allocates, up to 256):
//     a refcount must be durable before any table names the cluster
//     (else a crash leaves a cluster in use with refcount 0, which QEMU
//     would hand out again — corruption, not a leak); the data must be
//     durable before the L2 entry points at it (else a crash could show
//     a copied-on-write cluster's old, flushed bytes as zeros);
//  4. the L2 entry is written. A new L2 table is written whole, made
//     durable, and only then entered in the L1 table; L1 entries thus
//     never point at a table that is not on disk;
//  5. an old cluster's refcount is lowered only after the entry that
//     named it is gone from L2 and that is durable (another fdatasync):
//     lowered first, a crash would leave an L2 entry naming a free
//     cluster.
//
// TestCrashLeavesLeaksAtMost replays a workload cut at every write, in
// both crash models, through qemu-img check.
//
// Overwriting an allocated cluster (refcount 1, the COPIED flag) writes
// in place and touches no metadata. Flush is one fdatasync.
//
// Every offset read from the image is checked before it is used: aligned,
// inside the file, within the sizes the header allows; a violation is
// ErrCorrupt with the detail, never a panic or an access outside the file.
package qcow2

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/xenblk/xenblk/storage"
)

// backend is the file under the image: positioned reads and writes,
// fdatasync, and punching a hole (best effort).
type backend interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Punch(off, n int64) error
	Close() error
}

// Image is an open qcow2 image, safe for concurrent use: one mutex
// guards the metadata (L2 cache, tables, allocator) and every write;
// reads of standard clusters' bytes happen outside it (readPiece).
type Image struct {
	mu       sync.Mutex
	f        backend
	name     string
	h        *Header
	readOnly bool
	lbs      uint32

	cb       uint32 // cluster bits
	cs       int64  // cluster size
	fileSize int64  // bytes of the file that exist (grows with allocation)
	end      int64  // next cluster to allocate, cluster-aligned, >= fileSize

	l1        []uint64
	rt        []uint64 // refcount table
	snapshots []Snapshot

	// backing: the image unallocated clusters show (nil: they read as
	// zeros), opened read-only; backingSize is its size.
	backing     storage.Device
	backingSize int64

	l2   l2Cache
	zbuf []byte // a cluster of scratch for merges
	cbuf []byte // compressed bytes
	// inflate reads inflateSrc, both reused for every compressed cluster.
	inflate    io.ReadCloser
	inflateSrc *bytes.Reader
	dirty      bool // refcount or data written since the last fdatasync
	// pending: L2 entries of the write in progress, written by commit.
	pending []pendingL2
	err     error // sticky: a metadata write failed half way
}

// l2Cache holds a bounded number of L2 tables, least recently used out.
type l2Cache struct {
	slots []l2Slot
	clock uint64
}

type l2Slot struct {
	off  int64 // 0: empty
	tab  []byte
	used uint64
}

const l2CacheSlots = 32

// Options say how to open an image.
type Options struct {
	ReadOnly bool
	// LogicalBlockSize: 512 (default) or 4096.
	LogicalBlockSize uint32
	// Lock: whom else the image is shared with while open.
	Lock storage.Lock
}

// open reads and checks the header and tables of the image in f.
func open(f backend, name string, fileSize int64, opt Options) (*Image, error) {
	if opt.LogicalBlockSize == 0 {
		opt.LogicalBlockSize = 512
	}
	if opt.LogicalBlockSize != 512 && opt.LogicalBlockSize != 4096 {
		return nil, fmt.Errorf("qcow2: logical block size %d (want 512 or 4096)", opt.LogicalBlockSize)
	}
	first := make([]byte, min(fileSize, 1<<maxClusterBits))
	if _, err := f.ReadAt(first, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("qcow2: image %s: read header: %w", name, err)
	}
	h, err := ParseHeader(first, fileSize)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if h.Size%uint64(opt.LogicalBlockSize) != 0 {
		return nil, fmt.Errorf("qcow2: image %s: virtual size %d is not a whole number of %d-byte sectors; resize it with qemu-img resize", name, h.Size, opt.LogicalBlockSize)
	}
	if h.Size == 0 {
		return nil, fmt.Errorf("qcow2: image %s: virtual size is 0; resize it with qemu-img resize", name)
	}
	if !opt.ReadOnly {
		why := ""
		switch {
		case h.Incompatible&incCorrupt != 0:
			why = "QEMU marked it corrupt; check and repair it with qemu-img check -r all"
		case h.Incompatible&incDirty != 0:
			why = "its refcounts may be stale (the dirty bit of lazy refcounts); repair them with qemu-img check -r all"
		case h.NbSnapshots != 0:
			why = fmt.Sprintf("it has %d internal snapshots, which this does not write around; remove them with qemu-img snapshot -d, or open it read-only", h.NbSnapshots)
		case h.RefcountOrder < 3:
			why = fmt.Sprintf("its refcounts are %d bits wide (this writes 8 to 64); convert it with qemu-img convert -O qcow2", 1<<h.RefcountOrder)
		}
		if why != "" {
			return nil, fmt.Errorf("%w: image %s cannot be opened for writing: %s", ErrUnsupported, name, why)
		}
	}
	d := &Image{f: f, name: name, h: h, readOnly: opt.ReadOnly, lbs: opt.LogicalBlockSize,
		cb: h.ClusterBits, cs: h.ClusterSize(), fileSize: fileSize}
	d.end = (fileSize + d.cs - 1) &^ (d.cs - 1)
	if d.l1, err = d.readTable(int64(h.L1Offset), int(h.L1Size)); err != nil {
		return nil, fmt.Errorf("qcow2: image %s: read L1 table: %w", name, err)
	}
	for i, e := range d.l1 {
		if e&l1Reserved != 0 {
			return nil, fmt.Errorf("%w: image %s: L1 entry %d (%#x) has reserved bits set", ErrCorrupt, name, i, e)
		}
		if err := d.checkCluster("L2 table", e&offsetMask, true); err != nil {
			return nil, fmt.Errorf("image %s: L1 entry %d: %w", name, i, err)
		}
	}
	if d.rt, err = d.readTable(int64(h.RefTableOffset), int(int64(h.RefTableClusters)<<d.cb/8)); err != nil {
		return nil, fmt.Errorf("qcow2: image %s: read refcount table: %w", name, err)
	}
	for i, e := range d.rt {
		if e&0x1ff != 0 {
			return nil, fmt.Errorf("%w: image %s: refcount table entry %d (%#x) has reserved bits set", ErrCorrupt, name, i, e)
		}
		if err := d.checkCluster("refcount block", e, true); err != nil {
			return nil, fmt.Errorf("image %s: refcount table entry %d: %w", name, i, err)
		}
	}
	if h.NbSnapshots != 0 {
		if err := d.readSnapshots(); err != nil {
			return nil, fmt.Errorf("image %s: %w", name, err)
		}
	}
	d.l2.slots = make([]l2Slot, l2CacheSlots)
	d.zbuf = make([]byte, d.cs)
	if !opt.ReadOnly && h.Version == 3 && h.Autoclear != 0 {
		// Bitmaps and whatever else autoclear stands for are not kept
		// up to date here: say so before the first write.
		var z [8]byte
		if _, err := f.WriteAt(z[:], offAutoclear); err != nil {
			return nil, fmt.Errorf("qcow2: image %s: clear autoclear features: %w", name, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("qcow2: image %s: %w", name, err)
		}
		h.Autoclear = 0
	}
	return d, nil
}

// readTable reads n big-endian 64-bit entries at off (already checked to
// lie inside the file).
func (d *Image) readTable(off int64, n int) ([]uint64, error) {
	b := make([]byte, n*8)
	if err := d.readHost(b, off); err != nil {
		return nil, err
	}
	t := make([]uint64, n)
	for i := range t {
		t[i] = binary.BigEndian.Uint64(b[i*8:])
	}
	return t, nil
}

// checkCluster checks that a host offset names a whole cluster inside
// the file; zero is allowed (unallocated) when zeroOK.
func (d *Image) checkCluster(what string, off uint64, zeroOK bool) error {
	if off == 0 && zeroOK {
		return nil
	}
	if off == 0 || off&uint64(d.cs-1) != 0 {
		return fmt.Errorf("%w: %s at %#x is not cluster-aligned (or is the header)", ErrCorrupt, what, off)
	}
	if off >= uint64(d.fileSize) {
		return fmt.Errorf("%w: %s at %#x lies past the end of the file (%d bytes)", ErrCorrupt, what, off, d.fileSize)
	}
	return nil
}

// readHost reads p from the file at off; what lies past the end of the
// file reads as zeros (a cluster QEMU allocated but wrote only in part),
// and nothing past it is touched.
func (d *Image) readHost(p []byte, off int64) error {
	return d.readClamped(p, off, d.fileSize)
}

// readClamped is readHost for a file of fileSize bytes.
func (d *Image) readClamped(p []byte, off, fileSize int64) error {
	n := int64(len(p))
	if off >= fileSize {
		n = 0
	} else {
		n = min(n, fileSize-off)
	}
	if n > 0 {
		if _, err := d.f.ReadAt(p[:n], off); err != nil && !isEOF(err) {
			return fmt.Errorf("qcow2: image %s: read at %#x: %w", d.name, off, err)
		}
	}
	clear(p[n:])
	return nil
}

// Info describes the virtual disk.
func (d *Image) Info() storage.Info {
	return storage.Info{Size: int64(d.h.Size), LogicalBlockSize: d.lbs, PhysicalBlockSize: max(d.lbs, 4096),
		ReadOnly: d.readOnly, CanFlush: true, CanDiscard: !d.readOnly, DiscardZeroes: true,
		DiscardGranularity: uint32(d.cs)}
}

// Header returns the image's decoded header.
func (d *Image) Header() Header { return *d.h }

// l2Table returns the L2 table at off (from the L1 table, checked at open
// or written here), from the cache or the file.
func (d *Image) l2Table(off int64) ([]byte, error) {
	c := &d.l2
	c.clock++
	victim := 0
	for i := range c.slots {
		s := &c.slots[i]
		if s.off == off {
			s.used = c.clock
			return s.tab, nil
		}
		if s.used < c.slots[victim].used {
			victim = i
		}
	}
	s := &c.slots[victim]
	if s.tab == nil {
		s.tab = make([]byte, d.cs)
	}
	s.off = 0
	if err := d.readHost(s.tab, off); err != nil {
		return nil, err
	}
	s.off, s.used = off, c.clock
	return s.tab, nil
}

// forgetL2 drops the cached copy of the L2 table at off, if any.
func (d *Image) forgetL2(off int64) {
	for i := range d.l2.slots {
		if d.l2.slots[i].off == off {
			d.l2.slots[i].off = 0
		}
	}
}

// mapping is where a guest cluster's bytes are.
type mapping struct {
	guest int64  // the guest cluster's offset
	l2off int64  // the L2 table's host offset; 0 when L1 has none
	l2i   int    // the entry's index in it
	entry uint64 // the L2 entry; 0 when unallocated
}

// lookup finds the L2 entry for the guest cluster holding guest offset off.
func (d *Image) lookup(off int64) (mapping, error) {
	vc := uint64(off) >> d.cb
	perL2 := uint64(d.cs / 8)
	l1i := vc / perL2
	m := mapping{guest: int64(vc) << d.cb, l2i: int(vc % perL2)}
	if l1i >= uint64(len(d.l1)) {
		return m, fmt.Errorf("%w: guest offset %d is beyond the L1 table", ErrCorrupt, off)
	}
	m.l2off = int64(d.l1[l1i] & offsetMask)
	if m.l2off == 0 {
		return m, nil
	}
	tab, err := d.l2Table(m.l2off)
	if err != nil {
		return m, err
	}
	m.entry = binary.BigEndian.Uint64(tab[m.l2i*8:])
	return m, nil
}

// readCluster fills p with guest bytes at in-cluster offset within the
// cluster mapped by m.
func (d *Image) readCluster(p []byte, within int64, m mapping) error {
	e := m.entry
	switch {
	case e&flagComp != 0:
		if err := d.decompress(e); err != nil {
			return err
		}
		copy(p, d.zbuf[within:])
	case e&flagZero != 0 && d.h.Version == 3, e&offsetMask == 0:
		if e&l2Reserved != 0 {
			return fmt.Errorf("%w: L2 entry %#x has reserved bits set", ErrCorrupt, e)
		}
		if e&flagZero != 0 || d.backing == nil {
			clear(p)
			return nil
		}
		return d.readBacking(p, m.guest+within)
	default:
		host, err := d.standardHost(e)
		if err != nil {
			return err
		}
		if err := d.readHost(p, host+within); err != nil {
			return err
		}
	}
	return nil
}

// readBacking reads p from the backing image at guest offset off; what
// lies past the backing image's end reads as zeros.
func (d *Image) readBacking(p []byte, off int64) error {
	n := max(0, min(int64(len(p)), d.backingSize-off))
	if n > 0 {
		if _, err := d.backing.ReadAt(p[:n], off); err != nil {
			return fmt.Errorf("qcow2: image %s: read backing file %s: %w", d.name, d.h.BackingFile, err)
		}
	}
	clear(p[n:])
	return nil
}

// standardHost checks a standard L2 entry and returns its host offset.
func (d *Image) standardHost(e uint64) (int64, error) {
	if e&l2Reserved != 0 || (e&flagZero != 0 && d.h.Version < 3) {
		return 0, fmt.Errorf("%w: L2 entry %#x has reserved bits set", ErrCorrupt, e)
	}
	host := e & offsetMask
	if err := d.checkCluster("data cluster", host, false); err != nil {
		return 0, err
	}
	return int64(host), nil
}

// compressedRange decodes a compressed cluster descriptor: the host
// offset of the compressed bytes and the 512-byte sectors they occupy,
// counted from the sector holding the offset.
func (d *Image) compressedRange(e uint64) (off int64, sectors int64) {
	x := 62 - (d.cb - 8)
	off = int64(e & (1<<x - 1))
	sectors = int64((e>>x)&(1<<(d.cb-8)-1)) + 1
	return off, sectors
}

// decompress inflates the compressed cluster e into d.zbuf.
func (d *Image) decompress(e uint64) error {
	off, sectors := d.compressedRange(e)
	end := off&^511 + sectors*512
	if off >= d.fileSize {
		return fmt.Errorf("%w: compressed cluster at %#x lies past the end of the file (%d bytes)", ErrCorrupt, off, d.fileSize)
	}
	end = min(end, d.fileSize)
	n := int(end - off)
	if cap(d.cbuf) < n {
		d.cbuf = make([]byte, n)
	}
	cb := d.cbuf[:n]
	if err := d.readHost(cb, off); err != nil {
		return err
	}
	// One inflater, reset per cluster: a fresh one costs tens of KiB.
	if d.inflate == nil {
		d.inflateSrc = bytes.NewReader(cb)
		d.inflate = flate.NewReader(d.inflateSrc)
	} else {
		d.inflateSrc.Reset(cb)
		d.inflate.(flate.Resetter).Reset(d.inflateSrc, nil)
	}
	if _, err := io.ReadFull(d.inflate, d.zbuf); err != nil {
		return fmt.Errorf("%w: compressed cluster at %#x does not inflate to a cluster: %v", ErrCorrupt, off, err)
	}
	return nil
}

// ReadAt reads guest bytes, cluster by cluster.
func (d *Image) ReadAt(p []byte, off int64) (int, error) {
	if err := storage.CheckRange(off, int64(len(p)), int64(d.h.Size)); err != nil {
		return 0, err
	}
	return d.eachCluster(p, off, false)
}

// eachCluster reads p from, or writes p to, guest offset off, one
// cluster's piece at a time. A writer holds d.mu throughout; a reader
// takes it per piece (readPiece).
func (d *Image) eachCluster(p []byte, off int64, write bool) (int, error) {
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		within := pos & (d.cs - 1)
		piece := p[done : done+int(min(int64(len(p)-done), d.cs-within))]
		var err error
		if write {
			err = d.writePiece(piece, pos, within)
		} else {
			err = d.readPiece(piece, pos, within)
		}
		if err != nil {
			return done, err
		}
		done += len(piece)
	}
	return done, nil
}

// readPiece reads piece at within in the guest cluster at pos. The bytes
// of a standard cluster are read outside d.mu, so that reads overlap
// each other and the metadata work of writes: this is safe because a
// host cluster, once freed, is never allocated again (allocation only
// appends), so a read racing the discard or rewrite of its range sees
// the old bytes or zeros (the freed cluster punched), as a read racing a
// write on any disk may.
func (d *Image) readPiece(piece []byte, pos, within int64) error {
	d.mu.Lock()
	m, err := d.lookup(pos)
	if err != nil {
		d.mu.Unlock()
		return err
	}
	if e := m.entry; e&(flagComp|flagZero) == 0 && e&offsetMask != 0 {
		host, err := d.standardHost(e)
		fileSize := d.fileSize
		d.mu.Unlock()
		if err != nil {
			return err
		}
		return d.readClamped(piece, host+within, fileSize)
	}
	defer d.mu.Unlock()
	return d.readCluster(piece, within, m)
}

// Close closes the file (and releases its lock), and the backing chain.
// It does not flush.
func (d *Image) Close() error {
	err := d.f.Close()
	if d.backing != nil {
		if berr := d.backing.Close(); err == nil {
			err = berr
		}
	}
	return err
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
