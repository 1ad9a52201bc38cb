package qcow2

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/xenblk/xenblk/storage"
)

// Snapshot is an internal snapshot as the image's snapshot table lists
// it. Snapshots are listed and read, never written.
type Snapshot struct {
	ID, Name string
	Date     time.Time
	VMClock  time.Duration
	Size     int64 // the virtual disk's size when it was taken
	l1Offset uint64
	l1Size   uint32
}

// Limits on the snapshot table, QEMU's: a table past them is refused.
const (
	maxSnapshots     = 65536
	maxSnapshotTable = 64 << 20
	snapHeaderLen    = 40
	maxSnapExtra     = 1024
)

// parseSnapshotEntry decodes the snapshot table entry at the start of b;
// it returns the entry and its length (padded to 8), or ErrCorrupt when
// b cannot hold it. size is the image's virtual size, for entries too
// old to record their own.
func parseSnapshotEntry(b []byte, size uint64) (Snapshot, int, error) {
	if len(b) < snapHeaderLen {
		return Snapshot{}, 0, fmt.Errorf("%w: snapshot table entry cut short", ErrCorrupt)
	}
	be := binary.BigEndian
	s := Snapshot{l1Offset: be.Uint64(b[0:]), l1Size: be.Uint32(b[8:]), Size: int64(size)}
	idLen, nameLen := int(be.Uint16(b[12:])), int(be.Uint16(b[14:]))
	s.Date = time.Unix(int64(be.Uint32(b[16:])), int64(be.Uint32(b[20:])%1e9)).UTC()
	s.VMClock = time.Duration(be.Uint64(b[24:]) & (1<<63 - 1))
	extra := int(be.Uint32(b[36:]))
	if extra > maxSnapExtra {
		return Snapshot{}, 0, fmt.Errorf("%w: snapshot extra data of %d bytes", ErrCorrupt, extra)
	}
	n := snapHeaderLen + extra + idLen + nameLen
	if n > len(b) {
		return Snapshot{}, 0, fmt.Errorf("%w: snapshot table entry of %d bytes runs past the table", ErrCorrupt, n)
	}
	if extra >= 16 {
		ds := be.Uint64(b[snapHeaderLen+8:])
		if ds > 1<<62 {
			return Snapshot{}, 0, fmt.Errorf("%w: snapshot disk size %d", ErrCorrupt, ds)
		}
		s.Size = int64(ds)
	}
	at := snapHeaderLen + extra
	s.ID = string(b[at : at+idLen])
	s.Name = string(b[at+idLen : n])
	return s, (n + 7) &^ 7, nil
}

// readSnapshots reads the snapshot table the header names, entry by
// entry, within the file and QEMU's limits.
func (d *Image) readSnapshots() error {
	off := int64(d.h.SnapshotsOffset)
	if d.h.NbSnapshots > maxSnapshots {
		return fmt.Errorf("%w: %d snapshots (at most %d)", ErrCorrupt, d.h.NbSnapshots, maxSnapshots)
	}
	buf := make([]byte, snapHeaderLen+maxSnapExtra+2*65535)
	for i := uint32(0); i < d.h.NbSnapshots; i++ {
		if off-int64(d.h.SnapshotsOffset) > maxSnapshotTable || off >= d.fileSize {
			return fmt.Errorf("%w: snapshot table runs past the file or %d bytes", ErrCorrupt, maxSnapshotTable)
		}
		b := buf[:min(int64(len(buf)), d.fileSize-off)]
		if err := d.readHost(b, off); err != nil {
			return err
		}
		s, n, err := parseSnapshotEntry(b, d.h.Size)
		if err != nil {
			return fmt.Errorf("snapshot %d: %w", i, err)
		}
		d.snapshots = append(d.snapshots, s)
		off += int64(n)
	}
	return nil
}

// Snapshots lists the image's internal snapshots, oldest first.
func (d *Image) Snapshots() []Snapshot { return append([]Snapshot(nil), d.snapshots...) }

// OpenSnapshot returns a read-only device showing the disk as it was
// when the snapshot with this ID or name was taken. It shares the
// image's file and backing chain: close it before the image.
func (d *Image) OpenSnapshot(idOrName string) (storage.Device, error) {
	var s *Snapshot
	for i := range d.snapshots {
		if d.snapshots[i].ID == idOrName || d.snapshots[i].Name == idOrName {
			s = &d.snapshots[i]
			break
		}
	}
	if s == nil {
		return nil, fmt.Errorf("qcow2: image %s has no snapshot %q", d.name, idOrName)
	}
	if s.Size <= 0 || s.Size%int64(d.lbs) != 0 {
		return nil, fmt.Errorf("qcow2: image %s: snapshot %q has size %d, not a whole number of %d-byte sectors", d.name, idOrName, s.Size, d.lbs)
	}
	h := *d.h
	h.Size, h.L1Offset, h.L1Size = uint64(s.Size), s.l1Offset, s.l1Size
	// Check the snapshot's L1 table as a header's.
	if uint64(s.l1Size) < l1Needed(uint64(s.Size), d.cb) || uint64(s.l1Size)*8 > maxL1Bytes {
		return nil, fmt.Errorf("%w: image %s: snapshot %q has an L1 table of %d entries for %d bytes", ErrCorrupt, d.name, idOrName, s.l1Size, s.Size)
	}
	if err := checkTable("snapshot L1 table", s.l1Offset, uint64(s.l1Size)*8, 8, d.fileSize); err != nil {
		return nil, fmt.Errorf("image %s: snapshot %q: %w", d.name, idOrName, err)
	}
	v := &Image{f: sharedFile{d.f}, name: d.name + "@" + s.Name, h: &h, readOnly: true, lbs: d.lbs,
		cb: d.cb, cs: d.cs, fileSize: d.fileSize, end: d.end, backingSize: d.backingSize}
	if d.backing != nil {
		v.backing = sharedDevice{d.backing}
	}
	l1, err := v.readTable(int64(s.l1Offset), int(s.l1Size))
	if err != nil {
		return nil, err
	}
	for i, e := range l1 {
		if e&l1Reserved != 0 {
			return nil, fmt.Errorf("%w: image %s: snapshot %q: L1 entry %d (%#x) has reserved bits set", ErrCorrupt, d.name, idOrName, i, e)
		}
		if err := v.checkCluster("L2 table", e&offsetMask, true); err != nil {
			return nil, fmt.Errorf("image %s: snapshot %q: L1 entry %d: %w", d.name, idOrName, i, err)
		}
	}
	v.l1 = l1
	v.l2.slots = make([]l2Slot, l2CacheSlots)
	v.zbuf = make([]byte, v.cs)
	return v, nil
}

// sharedFile and sharedDevice lend a snapshot view the image's file and
// backing chain: the view's Close leaves them open.
type sharedFile struct{ backend }

func (sharedFile) Close() error { return nil }

type sharedDevice struct{ storage.Device }

func (sharedDevice) Close() error { return nil }
