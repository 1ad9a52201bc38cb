package linux

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/mapguard"
	"github.com/xenblk/xenblk/xen"
)

// Gntdev maps foreign grants through /dev/xen/gntdev. It implements
// xen.Mapper and is safe for concurrent use (the kernel serialises the
// ioctls; mappings are independent).
type Gntdev struct {
	f  *os.File
	fd int

	// copyMu serialises Copy, which stages through stage: an anonymous
	// mapping outside the Go heap, grown as a batch needs, kept up to
	// keepStage bytes (so a steady stream of copies maps nothing) and
	// unmapped at Close. valid is Copy's scratch.
	copyMu sync.Mutex
	stage  []byte
	valid  []int
}

// keepStage bounds the staging area a Gntdev keeps between copies: a
// pass of a ring's 4 KiB requests and more.
const keepStage = 1 << 20

// OpenGntdev opens /dev/xen/gntdev.
func OpenGntdev() (*Gntdev, error) {
	f, err := os.OpenFile(DevGntdev, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("xen: %w (is the xen_gntdev module loaded?)", err)
	}
	return &Gntdev{f: f, fd: int(f.Fd())}, nil
}

// Close closes the device. Mappings still alive stay valid until unmapped
// (the kernel holds the file until the last mapping goes).
func (g *Gntdev) Close() error {
	g.copyMu.Lock()
	if g.stage != nil {
		_ = unix.Munmap(g.stage)
		g.stage = nil
	}
	g.copyMu.Unlock()
	return g.f.Close()
}

// mapping is one gntdev map: index is its offset in the device file.
type mapping struct {
	g     *Gntdev
	mem   []byte
	index uint64
	count int
	once  sync.Once
}

// Map implements xen.Mapper. The grant map hypercall happens at mmap time,
// so a bad reference (not granted to us, revoked, or read-only while we
// ask for write access) fails the mmap; the reservation is then released.
func (g *Gntdev) Map(dom xen.DomID, refs []xen.GrantRef, readOnly bool) (xen.Mapping, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("xen: map of no grants: %w", xen.ErrBadGrant)
	}
	req := make([]byte, offMapRefs+SizeofGntdevGrantRef*len(refs))
	binary.NativeEndian.PutUint32(req[offMapCount:], uint32(len(refs)))
	for i, r := range refs {
		o := offMapRefs + SizeofGntdevGrantRef*i
		binary.NativeEndian.PutUint32(req[o:], uint32(dom))
		binary.NativeEndian.PutUint32(req[o+4:], uint32(r))
	}
	if _, err := ioctl(g.fd, IoctlGntdevMapGrantRef, req); err != nil {
		return nil, fmt.Errorf("xen: gntdev map of %d grants from domain %d: %w", len(refs), dom, err)
	}
	index := binary.NativeEndian.Uint64(req[offMapIndex:])
	prot := unix.PROT_READ | unix.PROT_WRITE
	if readOnly {
		prot = unix.PROT_READ
	}
	mem, err := unix.Mmap(g.fd, int64(index), len(refs)*xen.PageSize, prot, unix.MAP_SHARED)
	if err != nil {
		_ = g.unmapIndex(index, len(refs))
		return nil, fmt.Errorf("xen: map grants %v of domain %d: %v: %w", refs, dom, err, xen.ErrBadGrant)
	}
	return &mapping{g: g, mem: mem, index: index, count: len(refs)}, nil
}

func (g *Gntdev) unmapIndex(index uint64, count int) error {
	var req [SizeofGntdevUnmapGrantRef]byte
	binary.NativeEndian.PutUint64(req[0:], index)
	binary.NativeEndian.PutUint32(req[8:], uint32(count))
	_, err := ioctl(g.fd, IoctlGntdevUnmapGrantRef, req[:])
	return err
}

func (m *mapping) Bytes() []byte { return m.mem }

// Unmap removes the mapping (replacing the range unmaps the grants) and
// releases the reservation of file offsets. The range is retired
// (internal/mapguard): a slice of the mapping used after Unmap, or an
// operation the kernel still carries out on it, faults instead of
// reaching what mmap would put there next. Idempotent.
func (m *mapping) Unmap() error {
	var err error
	m.once.Do(func() {
		err = mapguard.Retire(m.mem)
		if e := m.g.unmapIndex(m.index, m.count); err == nil && e != nil {
			err = fmt.Errorf("xen: gntdev unmap: %w", e)
		}
		m.mem = nil
	})
	return err
}

// NotifyOnUnmap asks the kernel to signal port when this mapping goes away
// for any reason, including the death of this process: the peer learns at
// once that its ring is no longer served. It implements xen.UnmapNotifier.
func (m *mapping) NotifyOnUnmap(port xen.Port) error {
	var req [SizeofGntdevUnmapNotify]byte
	binary.NativeEndian.PutUint64(req[offNotifyIndex:], m.index)
	binary.NativeEndian.PutUint32(req[offNotifyAct:], UnmapNotifySendEvent)
	binary.NativeEndian.PutUint32(req[offNotifyPort:], uint32(port))
	if _, err := ioctl(m.g.fd, IoctlGntdevSetUnmapNotify, req[:]); err != nil {
		return fmt.Errorf("xen: gntdev unmap notify: %w", err)
	}
	return nil
}

// Copy implements xen.Mapper with IOCTL_GNTDEV_GRANT_COPY: one ioctl for
// the whole batch. The kernel reads the segment array and the local
// buffers through pointers inside the request, which the Go collector
// cannot see; so both live in the Gntdev's staging area outside the Go
// heap, and local data is staged through it. Copies are serialised; a
// batch that fits the kept staging area allocates nothing.
func (g *Gntdev) Copy(segs []xen.GrantCopySegment) error {
	if len(segs) == 0 {
		return nil
	}
	g.copyMu.Lock()
	defer g.copyMu.Unlock()
	// Segments that are invalid locally never reach the kernel; valid
	// holds the index in segs of each entry of the request array.
	valid := g.valid[:0]
	defer func() { g.valid = valid[:0] }()
	failed := 0
	for i := range segs {
		s := &segs[i]
		s.Err = nil
		if len(s.Local) == 0 || int(s.Offset)+len(s.Local) > xen.PageSize {
			s.Err = fmt.Errorf("xen: grant copy segment %d: offset %d + length %d outside a page: %w", i, s.Offset, len(s.Local), xen.ErrBadGrant)
			failed++
			continue
		}
		valid = append(valid, i)
	}
	if len(valid) > 0 {
		if err := g.copyValid(segs, valid); err != nil {
			// Nothing says which segments the kernel performed: every
			// one counts as failed, so a caller that reads the
			// per-segment errors never answers an uncopied one as done.
			for _, i := range valid {
				if segs[i].Err == nil {
					segs[i].Err = err
				}
			}
			return err
		}
	}
	for _, i := range valid {
		if segs[i].Err != nil {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("xen: %d of %d grant copy segments failed: %w", failed, len(segs), xen.ErrBadGrant)
	}
	return nil
}

// staging returns g's staging area of at least n bytes. Called with
// copyMu held.
func (g *Gntdev) staging(n int) ([]byte, error) {
	if len(g.stage) >= n {
		return g.stage[:n], nil
	}
	if g.stage != nil {
		_ = unix.Munmap(g.stage)
		g.stage = nil
	}
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("xen: grant copy staging: %w", err)
	}
	g.stage = b
	return b, nil
}

// copyValid stages and copies segs[valid]. Called with copyMu held.
func (g *Gntdev) copyValid(segs []xen.GrantCopySegment, valid []int) error {
	segBytes := len(valid) * SizeofGntdevGrantCopySeg
	// Pages start page-aligned after the array: each segment's local
	// bytes lie in one page, as in the pages the caller gave.
	pagesAt := (segBytes + xen.PageSize - 1) &^ (xen.PageSize - 1)
	buf, err := g.staging(pagesAt + len(valid)*xen.PageSize)
	if err != nil {
		return err
	}
	defer func() {
		if len(g.stage) > keepStage {
			_ = unix.Munmap(g.stage)
			g.stage = nil
		}
	}()
	stageOf := func(k int) []byte { return buf[pagesAt+k*xen.PageSize : pagesAt+(k+1)*xen.PageSize] }
	for k, i := range valid {
		s := &segs[i]
		stage := stageOf(k)
		e := buf[k*SizeofGntdevGrantCopySeg : (k+1)*SizeofGntdevGrantCopySeg]
		foreign, virt := e[offCopySource:offCopySource+8], e[offCopyDest:offCopyDest+8]
		flags := uint16(GntcopySourceGref)
		if s.ToForeign {
			foreign, virt = virt, foreign
			flags = GntcopyDestGref
			copy(stage, s.Local)
		}
		binary.NativeEndian.PutUint32(foreign[offForeignRef:], uint32(s.Ref))
		binary.NativeEndian.PutUint16(foreign[offForeignOff:], s.Offset)
		binary.NativeEndian.PutUint16(foreign[offForeignDom:], uint16(s.Dom))
		binary.NativeEndian.PutUint64(virt, uint64(uintptr(unsafe.Pointer(&stage[0]))))
		binary.NativeEndian.PutUint16(e[offCopyLen:], uint16(len(s.Local)))
		binary.NativeEndian.PutUint16(e[offCopyFlags:], flags)
	}
	var req [SizeofGntdevGrantCopy]byte
	binary.NativeEndian.PutUint32(req[0:], uint32(len(valid)))
	binary.NativeEndian.PutUint64(req[offCopySegments:], uint64(uintptr(unsafe.Pointer(&buf[0]))))
	if _, err := ioctl(g.fd, IoctlGntdevGrantCopy, req[:]); err != nil {
		return fmt.Errorf("xen: grant copy: %w", err)
	}
	for k, i := range valid {
		s := &segs[i]
		e := buf[k*SizeofGntdevGrantCopySeg:]
		if st := int16(binary.NativeEndian.Uint16(e[offCopyStatus:])); st != GntstOkay {
			s.Err = fmt.Errorf("xen: grant copy of ref %d of domain %d: status %d: %w", s.Ref, s.Dom, st, xen.ErrBadGrant)
			continue
		}
		if !s.ToForeign {
			copy(s.Local, stageOf(k))
		}
	}
	return nil
}
