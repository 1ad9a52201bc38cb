package blkback

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/shmem"
	"github.com/xenblk/xenblk/xen"
)

// journal is the request slots this backend has consumed from one ring,
// kept in a file mapped MAP_SHARED: the page cache keeps it when the
// process is killed. A restarted backend attaches to the rings its
// predecessor left (Linux's blkfront cannot reconnect) and must answer the
// requests between the published rsp_prod and where that predecessor had
// consumed to. Those slots in the ring may already hold responses the
// dead process wrote and never published; decoded as requests they would
// be garbage (found in the Xen lab: "response has wrong operation"). So
// every request is copied into the journal before it is decoded (the
// journal copy is the one copy XSA-155 asks for), and consumed-to is
// recorded before any response can overwrite its slot; the restarted
// backend takes [rsp_prod, consumed-to) from the journal and the rest from
// the ring.
type journal struct {
	f        *os.File
	mem      []byte
	slots    uint32
	slotSize int
	// The header's words that change while the journal is in use, in
	// the shared mapping (a restarted process reads them): atomic.
	owner, rspPub, consumed *atomic.Uint32
}

// journalID names the ring a journal belongs to: a frontend that
// reconnects gets new rings, and their journal starts over. The event
// channel is not part of it (a frontend may offer a new port to a new
// backend); instead the rsp_prod last published must still be the ring's,
// which a frontend's fresh ring (rsp_prod 0) cannot fake unless the old
// connection had answered nothing at all.
type journalID struct {
	frontDom xen.DomID
	ref0     xen.GrantRef
}

const (
	journalHeader = 4096
	jMagic        = 0  // 8 bytes
	jFrontDom     = 8  // uint32
	jRspPub       = 12 // uint32, atomic: the rsp_prod last published
	jRef0         = 16 // uint32
	jSlots        = 20 // uint32
	jSlotSize     = 24 // uint32
	jReqCons      = 28 // uint32, atomic
	jOwner        = 32 // uint32: the pid of the backend process using it
)

var journalMagic = []byte("XBJRNL01")

// journalPath is the file of queue i of the vbd whose backend directory is dir.
func journalPath(base, dir string, i int) string {
	name := strings.ReplaceAll(strings.Trim(dir, "/"), "/", "_")
	return filepath.Join(base, fmt.Sprintf("%s-q%d", name, i))
}

func openJournal(path string, slots uint32, slotSize int) (*journal, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	size := int64(journalHeader) + int64(slots)*int64(slotSize)
	if fi, err := f.Stat(); err != nil || fi.Size() != size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("journal: %w", err)
		}
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: mmap %s: %w", path, err)
	}
	j := &journal{f: f, mem: mem, slots: slots, slotSize: slotSize,
		owner: shmem.MustUint32(mem, jOwner), rspPub: shmem.MustUint32(mem, jRspPub), consumed: shmem.MustUint32(mem, jReqCons)}
	if err := j.claim(); err != nil {
		j.close()
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	return j, nil
}

// claim makes this process the journal's owner. One live backend process
// per journal: a second one serving the same directory (a mistake, or
// tests sharing the default dir) must not write into the copies the first
// decodes. A dead owner's journal is taken over: that is the restart this
// exists for. The check and the claim happen under an flock.
func (j *journal) claim() error {
	fd := int(j.f.Fd())
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		return err
	}
	defer unix.Flock(fd, unix.LOCK_UN)
	owner := int(j.owner.Load())
	if me := os.Getpid(); owner != 0 && owner != me {
		if err := unix.Kill(owner, 0); err == nil || err == unix.EPERM {
			return fmt.Errorf("in use by process %d, another backend", owner)
		}
	}
	j.owner.Store(uint32(os.Getpid()))
	return nil
}

// matches reports whether the journal was kept for this very ring.
func (j *journal) matches(id journalID) bool {
	le := binary.LittleEndian
	return bytes.Equal(j.mem[jMagic:jMagic+8], journalMagic) &&
		le.Uint32(j.mem[jFrontDom:]) == uint32(id.frontDom) &&
		le.Uint32(j.mem[jRef0:]) == uint32(id.ref0) &&
		le.Uint32(j.mem[jSlots:]) == j.slots &&
		le.Uint32(j.mem[jSlotSize:]) == uint32(j.slotSize)
}

// reset starts the journal over for ring id, consumed up to reqCons.
func (j *journal) reset(id journalID, reqCons uint32) {
	le := binary.LittleEndian
	clear(j.mem[jMagic : jMagic+8])
	le.PutUint32(j.mem[jFrontDom:], uint32(id.frontDom))
	le.PutUint32(j.mem[jRef0:], uint32(id.ref0))
	le.PutUint32(j.mem[jSlots:], j.slots)
	le.PutUint32(j.mem[jSlotSize:], uint32(j.slotSize))
	j.setReqCons(reqCons)
	j.setRspPublished(reqCons)
	copy(j.mem[jMagic:], journalMagic)
}

func (j *journal) reqCons() uint32     { return j.consumed.Load() }
func (j *journal) setReqCons(v uint32) { j.consumed.Store(v) }

func (j *journal) rspPublished() uint32     { return j.rspPub.Load() }
func (j *journal) setRspPublished(v uint32) { j.rspPub.Store(v) }

// slot is the journal's copy of request index i.
func (j *journal) slot(i uint32) []byte {
	off := journalHeader + int(i%j.slots)*j.slotSize
	return j.mem[off : off+j.slotSize]
}

func (j *journal) close() {
	j.owner.CompareAndSwap(uint32(os.Getpid()), 0)
	_ = unix.Munmap(j.mem)
	_ = j.f.Close()
}
