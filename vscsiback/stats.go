package vscsiback

import (
	"sync/atomic"

	"github.com/xenblk/xenblk/scsi"
)

// Stats are a vhost's request counters since it was created, across
// reconnections: beside blkback's per-vbd figures, what a vhost serves.
type Stats struct {
	ReadRequests  uint64 // READ(6/10/12/16) commands accepted
	WriteRequests uint64 // WRITE(6/10/12/16) commands accepted
	OtherRequests uint64 // every other SCSI command accepted
	ReadBytes     uint64 // data-in bytes sent to the guest
	WriteBytes    uint64 // data-out bytes taken from the guest
	TaskAborts    uint64 // TASK_ABORT requests accepted
	Resets        uint64 // RESET (LOGICAL UNIT RESET) requests accepted
	// ErrorResponses counts requests refused and commands answered
	// with anything but GOOD (CHECK CONDITION, RESERVATION CONFLICT, a
	// host error); not commands ended by task management.
	ErrorResponses uint64
	// InFlight is the commands accepted and not yet answered.
	InFlight uint64
}

// counters are a vhost's Stats as its queue keeps them. Only the queue's
// goroutine adds to them (never its crew); they are atomic so that Stats
// may be read from any goroutine.
type counters struct {
	rdReq, wrReq, other, rdBytes, wrBytes, aborts, resets, errs atomic.Uint64
	inFlight                                                    atomic.Int64
}

func (c *counters) stats() Stats {
	return Stats{
		ReadRequests: c.rdReq.Load(), WriteRequests: c.wrReq.Load(), OtherRequests: c.other.Load(),
		ReadBytes: c.rdBytes.Load(), WriteBytes: c.wrBytes.Load(),
		TaskAborts: c.aborts.Load(), Resets: c.resets.Load(), ErrorResponses: c.errs.Load(),
		InFlight: uint64(max(c.inFlight.Load(), 0)),
	}
}

// accepted counts a request that passed its check, by what it asks.
func (c *counters) accepted(pl *plan) {
	switch pl.kind {
	case kindAbort:
		c.aborts.Add(1)
		return
	case kindReset:
		c.resets.Add(1)
		return
	}
	c.inFlight.Add(1)
	switch pl.cdb[0] {
	case scsi.OpRead6, scsi.OpRead10, scsi.OpRead12, scsi.OpRead16:
		c.rdReq.Add(1)
	case scsi.OpWrite6, scsi.OpWrite10, scsi.OpWrite12, scsi.OpWrite16:
		c.wrReq.Add(1)
	default:
		c.other.Add(1)
	}
}

// answered counts a command's response: transferred bytes of data moved
// in its direction, and whether it was an error.
func (c *counters) answered(dir scsi.Direction, transferred int, failed bool) {
	c.inFlight.Add(-1)
	switch dir {
	case scsi.DirFromDevice:
		c.rdBytes.Add(uint64(transferred))
	case scsi.DirToDevice:
		c.wrBytes.Add(uint64(transferred))
	}
	if failed {
		c.errs.Add(1)
	}
}

// ended counts a command ended by task management, unanswered by its
// engine.
func (c *counters) ended() { c.inFlight.Add(-1) }

// Stats returns the vhost's counters (those of its connection's queue).
func (v *Vhost) Stats() Stats { return v.q.stats.stats() }

// Stats returns the counters of the vhost served at dir, across its
// connections, and whether the server serves it.
func (s *Server) Stats(dir string) (Stats, bool) {
	d := s.vhosts.Get(dir)
	if d == nil {
		return Stats{}, false
	}
	return d.stats.stats(), true
}
