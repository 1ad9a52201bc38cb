package blkback

import "sync/atomic"

// Stats are a device's request counters since it was created, across
// reconnections: what Linux's blkback shows under statistics/ in sysfs
// (rd_req, wr_req, f_req, ds_req, rd_sect, wr_sect) and xentop prints, plus
// the extension's requests and the requests answered with an error.
type Stats struct {
	ReadRequests    uint64
	WriteRequests   uint64
	FlushRequests   uint64 // flush-diskcache and write-barrier
	DiscardRequests uint64
	ReadSectors     uint64 // 512-byte sectors
	WriteSectors    uint64 // 512-byte sectors, a flush's or barrier's data too
	SCSIRequests    uint64 // extension request pairs
	PRRequests      uint64 // dedicated reservation operations
	ErrorResponses  uint64 // answered with any status but BLKIF_RSP_OKAY
}

// queueStats are one queue's counters. Only the queue's goroutine adds to
// them; they are atomic so that VBD.Stats may read them from any
// goroutine. Uncontended, an add costs a few nanoseconds.
type queueStats struct {
	rdReq, wrReq, fReq, dsReq, rdSect, wrSect, scsi, pr, errs atomic.Uint64
}

func (s *queueStats) addTo(t *Stats) {
	t.ReadRequests += s.rdReq.Load()
	t.WriteRequests += s.wrReq.Load()
	t.FlushRequests += s.fReq.Load()
	t.DiscardRequests += s.dsReq.Load()
	t.ReadSectors += s.rdSect.Load()
	t.WriteSectors += s.wrSect.Load()
	t.SCSIRequests += s.scsi.Load()
	t.PRRequests += s.pr.Load()
	t.ErrorResponses += s.errs.Load()
}

// count records a request that passed its checks, by what it asks.
func (s *queueStats) count(p *plan) {
	sectors := uint64(p.length) >> sectorShift
	switch p.kind {
	case opRead:
		s.rdReq.Add(1)
		s.rdSect.Add(sectors)
	case opWrite:
		s.wrReq.Add(1)
		s.wrSect.Add(sectors)
	case opFlush, opBarrier:
		s.fReq.Add(1)
		if p.nsegs > 0 {
			s.wrSect.Add(sectors)
		}
	case opDiscard:
		s.dsReq.Add(1)
	}
}

// Stats returns the device's counters: those of its live queues, of
// queues being stopped, and of every earlier connection.
func (d *VBD) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.pastStats
	for _, q := range d.queues {
		q.stats.addTo(&t)
	}
	for _, q := range d.stopping {
		q.stats.addTo(&t)
	}
	return t
}
