package blkback

import (
	"errors"
	"fmt"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// SCSIExecutor runs the SCSI commands of the blkif extension
// (docs/PROTOCOL.md) for one device: scsi/emulate's Engine, or a guarded
// SG_IO pass-through. It must be safe for concurrent use (one device has
// several queues) and must never touch bytes outside the device.
type SCSIExecutor interface {
	Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result)
}

// SCSIProvider returns the executor for a vbd (its backend directory and
// storage), or nil to not offer the extension for it. Two vbds backed by
// the same disk should share reservations: that is the provider's job.
type SCSIProvider func(dir string, dev storage.Device) (SCSIExecutor, error)

// maxSCSIData bounds one SCSI command's data buffer.
const maxSCSIData = 4 << 20

var errExtra = errors.New("bad extra request")

// handleSCSI carries out the flagged request q.req with its extra slot
// q.extra, fills q.extraRsp and returns the base response's status:
// OKAY when the command ran (its SCSI status is in the extra response),
// ERROR for a transport failure, EOPNOTSUPP for an unknown extra type.
func (q *queue) handleSCSI() int16 {
	q.extraRsp = blkif.ExtraResponse{Type: q.extra.Type}
	status := q.runSCSI()
	q.extraRsp.Status = status
	return status
}

func (q *queue) runSCSI() int16 {
	r, ex := &q.req, &q.extra
	if ex.Type != blkif.ExtraTypeSCSI {
		q.log.Warn("unknown extra type", "type", ex.Type, "id", r.ID)
		return blkif.RspEOPNOTSUPP
	}
	var segs []blkif.Segment
	if r.Operation&^blkif.OpExtraFlag == blkif.OpIndirect {
		var err error
		if segs, err = q.fetchIndirect(r); err != nil {
			q.log.Warn("bad SCSI request", "id", r.ID, "err", err)
			return blkif.RspError
		}
	}
	if err := checkSCSI(r, ex, segs, q.lim, &q.plan); err != nil {
		q.log.Warn("bad SCSI request", "id", r.ID, "err", err)
		return blkif.RspError
	}
	// The command page: CDB at 0, sense written back at SenseOffset.
	cmdRef := xen.GrantRef(ex.CmdGref)
	cdb := q.cdb[:ex.CmdLen]
	var page []byte // mapped; nil in grant-copy mode
	if q.cp != nil {
		if err := q.copyPage(cmdRef, 0, cdb, false); err != nil {
			q.log.Warn("SCSI command page", "id", r.ID, "err", err)
			return blkif.RspError
		}
	} else {
		cmdMap, err := q.dev.cfg.Domain.Mapper().Map(q.front, []xen.GrantRef{cmdRef}, false)
		if err != nil {
			q.log.Warn("SCSI command page", "id", r.ID, "err", err)
			return blkif.RspError
		}
		defer cmdMap.Unmap()
		page = cmdMap.Bytes()
		copy(cdb, page[:ex.CmdLen]) // copied once; the guest may change the page
	}
	dir := scsi.DirNone
	if q.plan.nsegs > 0 {
		if q.plan.kind == opRead {
			dir = scsi.DirFromDevice
		} else {
			dir = scsi.DirToDevice
		}
		if err := q.mapSegments(); err != nil {
			q.log.Warn("SCSI data segments", "id", r.ID, "err", err)
			return blkif.RspError
		}
		defer q.unmapSegments()
	}
	if q.scsiBuf == nil {
		q.scsiBuf = make([]byte, maxSCSIData)
	}
	data := q.scsiBuf[:ex.DataLen]
	if dir == scsi.DirToDevice {
		q.gather(data)
	}
	q.scsiRes.Reset(len(data))
	q.scsi.Execute(q.nexus, &scsi.Command{CDB: cdb, Dir: dir, Data: data}, &q.scsiRes)
	res := &q.scsiRes
	if res.Resid < 0 || res.Resid > len(data) {
		res.Resid = len(data)
	}
	if dir == scsi.DirFromDevice {
		moved := data[:len(data)-res.Resid]
		q.scatter(moved)
		if q.cp != nil {
			if err := q.copyDataIn(len(moved)); err != nil {
				q.log.Warn("SCSI data segments", "id", r.ID, "err", err)
				return blkif.RspError
			}
		}
	}
	sense := res.SenseBytes()
	if len(sense) > blkif.MaxSenseLength {
		sense = sense[:blkif.MaxSenseLength]
	}
	if q.cp != nil {
		if len(sense) > 0 {
			if err := q.copyPage(cmdRef, blkif.SenseOffset, sense, true); err != nil {
				q.log.Warn("SCSI sense", "id", r.ID, "err", err)
				return blkif.RspError
			}
		}
	} else {
		copy(page[blkif.SenseOffset:], sense)
	}
	q.extraRsp.ResidLen = uint32(res.Resid)
	q.extraRsp.SenseLen = uint8(len(sense))
	q.extraRsp.SCSIStatus = res.Status
	return blkif.RspOkay
}

// checkSCSI is check for an extension pair (pure, like check): it
// validates the request r and its extra slot ex and records the data
// segments in p — r's own, or indirect, the copies fetched from its
// indirect pages when r's base operation is OpIndirect.
func checkSCSI(r *blkif.Request, ex *blkif.ExtraRequest, indirect []blkif.Segment, l *limits, p *plan) error {
	p.reset(r.ID, r.Operation)
	if ex.ID != r.ID {
		return fmt.Errorf("%w: extra id %d differs from request id %d", errExtra, ex.ID, r.ID)
	}
	if ex.CmdLen < 6 || ex.CmdLen > blkif.MaxCDBLength {
		return fmt.Errorf("%w: cmd_len %d not in 6..%d", errExtra, ex.CmdLen, blkif.MaxCDBLength)
	}
	if r.Sector != 0 {
		return fmt.Errorf("%w: sector_number %d must be 0", errExtra, r.Sector)
	}
	base := r.Operation &^ blkif.OpExtraFlag
	switch base {
	case blkif.OpRead, blkif.OpWrite:
		p.kind = opRead
		if base == blkif.OpWrite {
			p.kind = opWrite
		}
		if n := int(r.NrSegments); n > blkif.MaxSegmentsPerRequest {
			return fmt.Errorf("%w: %d", errTooManySegs, n)
		} else if err := p.addSegments(r.Seg[:n]); err != nil {
			return err
		}
	case blkif.OpIndirect:
		if l.indirectSegments == 0 {
			return fmt.Errorf("%w: indirect not offered", errExtra)
		}
		if err := p.indirect(r, indirect, l); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: base operation %d", errExtra, base)
	}
	if int64(ex.DataLen) > p.length {
		return fmt.Errorf("%w: data_len %d beyond the segments' %d bytes", errExtra, ex.DataLen, p.length)
	}
	if ex.DataLen > maxSCSIData {
		return fmt.Errorf("%w: data_len %d beyond %d", errExtra, ex.DataLen, maxSCSIData)
	}
	// A data-out command on a read-only device is the engine's to refuse
	// (WRITE PROTECTED), not a transport error.
	return nil
}

// gather copies the segments' bytes into buf (data-out).
func (q *queue) gather(buf []byte) {
	off := 0
	for i := 0; i < q.plan.nsegs && off < len(buf); i++ {
		s := q.plan.segs[i]
		off += copy(buf[off:], q.pages[i][s.start:s.end])
	}
}

// scatter copies buf into the segments (data-in).
func (q *queue) scatter(buf []byte) {
	off := 0
	for i := 0; i < q.plan.nsegs && off < len(buf); i++ {
		s := q.plan.segs[i]
		off += copy(q.pages[i][s.start:s.end], buf[off:])
	}
}
