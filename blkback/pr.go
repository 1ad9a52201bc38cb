package blkback

import (
	"encoding/binary"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/xen"
)

// handlePR serves the dedicated reservation operation (blkif/pr.go) by
// turning it into the SPC PERSISTENT RESERVE OUT/IN command it mirrors and
// running that on the device's SCSI executor: one reservation engine, two
// ways in, so a guest using either sees the other's registrations.
func (q *queue) handlePR() int16 {
	r := &q.prReq
	var cdb [10]byte
	var param [24]byte
	dir := scsi.DirToDevice
	var data []byte
	switch r.Action {
	case blkif.PRReadKeys, blkif.PRReadReservation:
		cdb[0] = 0x5e // PERSISTENT RESERVE IN
		cdb[1] = 0    // READ KEYS
		if r.Action == blkif.PRReadReservation {
			cdb[1] = 1 // READ RESERVATION
		}
		binary.BigEndian.PutUint16(cdb[7:], xen.PageSize)
		dir = scsi.DirFromDevice
		if q.scsiBuf == nil {
			q.scsiBuf = make([]byte, maxSCSIData)
		}
		data = q.scsiBuf[:xen.PageSize]
	default:
		var sa byte
		switch r.Action {
		case blkif.PRRegister:
			sa = 0x00
		case blkif.PRReserve:
			sa = 0x01
		case blkif.PRRelease:
			sa = 0x02
		case blkif.PRClear:
			sa = 0x03
		case blkif.PRPreempt:
			sa = 0x04
		case blkif.PRPreemptAbort:
			sa = 0x05
		case blkif.PRRegisterIgnore:
			sa = 0x06
		default:
			q.log.Warn("unknown reservation action", "action", r.Action, "id", r.ID)
			return blkif.RspError
		}
		cdb[0] = 0x5f // PERSISTENT RESERVE OUT
		cdb[1] = sa
		cdb[2] = r.Type & 0x0f // scope LU
		binary.BigEndian.PutUint32(cdb[5:], uint32(len(param)))
		binary.BigEndian.PutUint64(param[0:], r.Key)
		binary.BigEndian.PutUint64(param[8:], r.SAKey)
		if r.Flags&blkif.PRFlagAPTPL != 0 {
			param[20] = 1
		}
		data = param[:]
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
	if dir == scsi.DirFromDevice {
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

func isUnitAttention(r *scsi.Result) bool {
	if r.Status != scsi.StatusCheckCondition {
		return false
	}
	s, _, ok := scsi.ParseSense(r.SenseBytes())
	return ok && s.Key == scsi.KeyUnitAttention
}
