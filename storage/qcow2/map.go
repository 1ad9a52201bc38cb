package qcow2

import "github.com/xenblk/xenblk/storage"

// maxMapClusters bounds the clusters one Map call looks at, so that
// describing a huge image costs a bounded time under d.mu; the caller
// asks again from where the answer ends.
const maxMapClusters = 1 << 16

// Map describes the guest range [off, off+n) cluster by cluster: a
// cluster with no L2 entry, or a zero cluster without a host cluster, is
// a hole reading as zeros; a zero cluster with one reads as zeros but is
// allocated; compressed and standard clusters are data. Where a backing
// image shows through, the range is reported as data: its bytes are the
// backing image's, which this image does not describe.
func (d *Image) Map(off, n int64) ([]storage.Extent, error) {
	if err := storage.CheckRange(off, n, int64(d.h.Size)); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var es []storage.Extent
	add := func(e storage.Extent) {
		if k := len(es) - 1; k >= 0 && es[k].Hole == e.Hole && es[k].Zero == e.Zero {
			es[k].Length += e.Length
		} else {
			es = append(es, e)
		}
	}
	l2span := d.cs * (d.cs / 8) // guest bytes one L2 table maps
	for end, looked := off+n, 0; off < end && looked < maxMapClusters; looked++ {
		m, err := d.lookup(off)
		if err != nil {
			return nil, err
		}
		k := min(end, m.guest+d.cs) - off
		if m.l2off == 0 {
			// No L2 table: every cluster it would map is unallocated.
			k = min(end, off-off%l2span+l2span) - off
		}
		e := m.entry
		unallocated := e&offsetMask == 0 && e&flagComp == 0
		switch {
		case e&flagComp != 0:
			add(storage.Extent{Length: k})
		case e&flagZero != 0 && d.h.Version == 3:
			add(storage.Extent{Length: k, Hole: e&offsetMask == 0, Zero: true})
		case unallocated && d.backing != nil:
			add(storage.Extent{Length: k})
		case unallocated:
			add(storage.Extent{Length: k, Hole: true, Zero: true})
		default:
			add(storage.Extent{Length: k})
		}
		off += k
	}
	return es, nil
}
