package blkback

import (
	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/xen"
)

// handlePR serves the dedicated reservation operation (blkif/pr.go) by
// turning it into the SPC PERSISTENT RESERVE OUT/IN command it mirrors and
// running that on the device's SCSI executor: one reservation engine, two
// ways in, so a guest using either sees the other's registrations.
func (q *queue) handlePR() int16 {
	r := &q.prReq
	var cdb [10]byte
	var param [pr.OutParamsLen]byte
	dir := scsi.DirToDevice
	var data []byte
	if in, ok := prInActions[r.Action]; ok {
		cdb = pr.InCommand{Action: in, AllocLen: xen.PageSize}.CDB()
		dir = scsi.DirFromDevice
		if q.scsiBuf == nil {
			q.scsiBuf = make([]byte, maxSCSIData)
		}
		data = q.scsiBuf[:xen.PageSize]
	} else if out, ok := prOutActions[r.Action]; ok {
		// Scope LU, the only one.
		cdb = pr.OutCommand{Action: out, Type: pr.Type(r.Type), ParamLen: uint32(len(param))}.CDB()
		p := pr.OutParams{Key: r.Key, SAKey: r.SAKey, APTPL: r.Flags&blkif.PRFlagAPTPL != 0}
		data = p.Append(param[:0], out)
	} else {
		q.log.Warn("unknown reservation action", "action", r.Action, "id", r.ID)
		return blkif.RspError
	}
	// The operation has no way to carry a unit attention: pending ones
	// (POWER ON RESET, RESERVATIONS PREEMPTED, ...) are consumed, and the
	// command runs once they are gone, as an initiator would retry.
	for tries := 0; ; tries++ {
		q.scsiRes.Reset(len(data))
		q.pr.Execute(q.nexus, &scsi.Command{CDB: cdb[:], Dir: dir, Data: data}, &q.scsiRes)
		if tries >= 16 || !isUnitAttention(&q.scsiRes) {
			break
		}
	}
	switch q.scsiRes.Status {
	case scsi.StatusGood:
	case scsi.StatusReservationConflict:
		return blkif.RspReservationConflict
	default:
		q.log.Info("reservation command failed", "action", r.Action, "status", scsi.StatusName(q.scsiRes.Status), "sense", q.scsiRes.SenseBytes())
		return blkif.RspError
	}
	if dir == scsi.DirFromDevice && q.cp != nil {
		if err := q.copyPage(xen.GrantRef(r.Gref), 0, data[:len(data)-q.scsiRes.Resid], true); err != nil {
			q.log.Warn("reservation data page", "id", r.ID, "err", err)
			return blkif.RspError
		}
	} else if dir == scsi.DirFromDevice {
		m, err := q.dev.cfg.Domain.Mapper().Map(q.front, []xen.GrantRef{xen.GrantRef(r.Gref)}, false)
		if err != nil {
			q.log.Warn("reservation data page", "id", r.ID, "err", err)
			return blkif.RspError
		}
		copy(m.Bytes(), data[:len(data)-q.scsiRes.Resid])
		_ = m.Unmap()
	}
	return blkif.RspOkay
}

// prOutActions and prInActions map the dedicated operation's actions
// (blkif.PR*) to the PERSISTENT RESERVE OUT and IN service actions they
// mirror.
var (
	prOutActions = map[uint8]pr.OutAction{
		blkif.PRRegister:       pr.OutRegister,
		blkif.PRRegisterIgnore: pr.OutRegisterAndIgnore,
		blkif.PRReserve:        pr.OutReserve,
		blkif.PRRelease:        pr.OutRelease,
		blkif.PRPreempt:        pr.OutPreempt,
		blkif.PRPreemptAbort:   pr.OutPreemptAndAbort,
		blkif.PRClear:          pr.OutClear,
	}
	prInActions = map[uint8]pr.InAction{
		blkif.PRReadKeys:        pr.InReadKeys,
		blkif.PRReadReservation: pr.InReadReservation,
	}
)

func isUnitAttention(r *scsi.Result) bool {
	if r.Status != scsi.StatusCheckCondition {
		return false
	}
	s, _, ok := scsi.ParseSense(r.SenseBytes())
	return ok && s.Key == scsi.KeyUnitAttention
}
