package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/mapguard"
	"github.com/xenblk/xenblk/xen"
)

// GntallocLimitPath is the kernel's cap on pages one gntalloc user may
// grant (1024 by default); a frontend with deep queues and persistent
// pools needs more.
const GntallocLimitPath = "/sys/module/xen_gntalloc/parameters/limit"

// Gntalloc grants pages of our own to other domains through
// /dev/xen/gntalloc. It implements xen.Granter and is safe for concurrent
// use.
type Gntalloc struct {
	f  *os.File
	fd int
}

// gntallocWantLimit is what one multi-queue frontend with persistent
// pools and indirect pages may need (2 queues x (4096 pool + 32 x 8
// indirect) pages is about 8,700; several disks more).
const gntallocWantLimit = 262144

// OpenGntalloc opens /dev/xen/gntalloc. The kernel's default cap (1024
// pages for all users) is far below what one multi-queue frontend needs;
// when it is lower than gntallocWantLimit and we may change it (root),
// it is raised.
func OpenGntalloc() (*Gntalloc, error) {
	f, err := os.OpenFile(DevGntalloc, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("xen: %w (is the xen_gntalloc module loaded?)", err)
	}
	raiseGntallocLimit()
	return &Gntalloc{f: f, fd: int(f.Fd())}, nil
}

func raiseGntallocLimit() {
	b, err := os.ReadFile(GntallocLimitPath)
	if err != nil {
		return
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n < gntallocWantLimit {
		_ = os.WriteFile(GntallocLimitPath, []byte(strconv.Itoa(gntallocWantLimit)), 0)
	}
}

// Close closes the device; pages still granted are released by the kernel
// as their remotes unmap them.
func (a *Gntalloc) Close() error { return a.f.Close() }

// allocation is the Handle of a xen.Granted from gntalloc.
type allocation struct {
	index uint64
	count int
}

// Grant implements xen.Granter: the kernel allocates count zeroed pages,
// grants each to remote, and we map them contiguously.
func (a *Gntalloc) Grant(remote xen.DomID, count int, readOnly bool) (*xen.Granted, error) {
	if count <= 0 {
		return nil, fmt.Errorf("xen: grant of %d pages", count)
	}
	req := make([]byte, offAllocGrefs+4*count)
	binary.NativeEndian.PutUint16(req[offAllocDomid:], uint16(remote))
	if !readOnly {
		binary.NativeEndian.PutUint16(req[offAllocFlags:], GntallocFlagWritable)
	}
	binary.NativeEndian.PutUint32(req[offAllocCount:], uint32(count))
	if _, err := ioctl(a.fd, IoctlGntallocAllocGref, req); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			// ENOSPC is both gntalloc's own cap and the kernel finding no
			// free grant entry (the domain's table at gnttab_max_frames).
			return nil, fmt.Errorf("xen: gntalloc of %d pages for domain %d: over the kernel's gntalloc limit (%s) or the domain's grant table is full: %w (%w)", count, remote, GntallocLimitPath, xen.ErrGrantTableFull, err)
		}
		return nil, fmt.Errorf("xen: gntalloc of %d pages for domain %d: %w", count, remote, err)
	}
	index := binary.NativeEndian.Uint64(req[offAllocIndex:])
	refs := make([]xen.GrantRef, count)
	for i := range refs {
		refs[i] = xen.GrantRef(binary.NativeEndian.Uint32(req[offAllocGrefs+4*i:]))
	}
	mem, err := unix.Mmap(a.fd, int64(index), count*xen.PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = a.dealloc(index, count)
		return nil, fmt.Errorf("xen: map granted pages: %w", err)
	}
	return &xen.Granted{Remote: remote, ReadOnly: readOnly, Refs: refs, Mem: mem, Handle: &allocation{index: index, count: count}}, nil
}

func (a *Gntalloc) dealloc(index uint64, count int) error {
	var req [SizeofGntallocDeallocGref]byte
	binary.NativeEndian.PutUint64(req[0:], index)
	binary.NativeEndian.PutUint32(req[8:], uint32(count))
	_, err := ioctl(a.fd, IoctlGntallocDeallocGref, req[:])
	return err
}

// Revoke implements xen.Granter. The kernel ends foreign access at once
// where it can and defers freeing a page the remote still maps, so the
// references are dead for new maps as soon as this returns.
func (a *Gntalloc) Revoke(g *xen.Granted) error {
	h, ok := g.Handle.(*allocation)
	if !ok || h == nil {
		return fmt.Errorf("xen: revoke of a grant gntalloc did not make")
	}
	var err error
	if g.Mem != nil {
		// Retired, not unmapped: a slice of the pages kept past Revoke
		// faults (internal/mapguard).
		err = mapguard.Retire(g.Mem)
		g.Mem = nil
	}
	if e := a.dealloc(h.index, h.count); e != nil && err == nil {
		err = fmt.Errorf("xen: gntalloc dealloc: %w", e)
	}
	g.Handle = nil
	return err
}

// NotifyOnUnmap asks the kernel to signal port when g is unmapped here
// for any reason, including the death of this process, so the backend
// learns that the frontend is gone.
func (a *Gntalloc) NotifyOnUnmap(g *xen.Granted, port xen.Port) error {
	h, ok := g.Handle.(*allocation)
	if !ok || h == nil {
		return fmt.Errorf("xen: unmap notify on a grant gntalloc did not make")
	}
	var req [SizeofGntallocUnmapNotify]byte
	binary.NativeEndian.PutUint64(req[offNotifyIndex:], h.index)
	binary.NativeEndian.PutUint32(req[offNotifyAct:], UnmapNotifySendEvent)
	binary.NativeEndian.PutUint32(req[offNotifyPort:], uint32(port))
	if _, err := ioctl(a.fd, IoctlGntallocSetUnmapNotify, req[:]); err != nil {
		return fmt.Errorf("xen: gntalloc unmap notify: %w", err)
	}
	return nil
}
