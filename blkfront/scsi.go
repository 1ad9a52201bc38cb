package blkfront

import (
	"context"
	"fmt"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/xen"
)

// ExecSCSI sends one SCSI command through the blkif extension
// (docs/PROTOCOL.md): cdb in a granted command page, buf as the data
// (read into for scsi.DirFromDevice, sent for scsi.DirToDevice; any
// length up to 4 MiB, not only multiples of 512). It fails with
// ErrNotSupported when the backend does not offer the extension.
func (d *Disk) ExecSCSI(ctx context.Context, cdb []byte, dir scsi.Direction, buf []byte) (scsi.Result, error) {
	if !d.Info().ExtraRequest {
		return scsi.Result{}, fmt.Errorf("%w: the backend does not offer %s", ErrNotSupported, blkif.KeyFeatureExtraRequest)
	}
	if len(cdb) < 6 || len(cdb) > blkif.MaxCDBLength {
		return scsi.Result{}, fmt.Errorf("blkfront: CDB of %d bytes (want 6..%d)", len(cdb), blkif.MaxCDBLength)
	}
	if dir == scsi.DirNone {
		buf = nil
	}
	dataPages := (len(buf) + xen.PageSize - 1) / xen.PageSize
	if dataPages > d.segsPerReq {
		return scsi.Result{}, fmt.Errorf("blkfront: %d bytes of SCSI data exceed one request's %d", len(buf), d.segsPerReq*xen.PageSize)
	}
	q := d.pick()
	id, err := q.acquirePair(ctx, 1+dataPages)
	if err != nil {
		return scsi.Result{}, err
	}
	s := &q.slots[id]
	cmdPage := q.page(s.pages[0])
	clear(cmdPage)
	copy(cmdPage, cdb)
	base := uint8(blkif.OpRead)
	if dir == scsi.DirToDevice {
		base = blkif.OpWrite
		for i := 0; i < dataPages; i++ {
			copy(q.page(s.pages[1+i]), buf[i*xen.PageSize:])
		}
	}
	s.req = blkif.Request{ID: uint64(id)}
	q.fillSegments(s, base, blkif.OpExtraFlag, s.pages[1:1+dataPages], len(buf))
	s.extra = blkif.ExtraRequest{Type: blkif.ExtraTypeSCSI, CmdLen: uint8(len(cdb)), ID: uint64(id),
		CmdGref: uint32(q.pool.Refs[s.pages[0]]), DataLen: uint32(len(buf))}
	kept, err := d.wait(ctx, q, id)
	if !kept {
		return scsi.Result{}, err
	}
	defer q.releaseSlot(id)
	if err != nil {
		return scsi.Result{}, err
	}
	x := s.extraRsp
	if x.Status != blkif.RspOkay {
		return scsi.Result{}, fmt.Errorf("%w: extra response status %d", ErrIO, x.Status)
	}
	res := scsi.Result{Status: x.SCSIStatus, Resid: int(x.ResidLen)}
	if res.Resid > len(buf) {
		res.Resid = len(buf)
	}
	if n := int(x.SenseLen); n > 0 {
		n = min(n, blkif.MaxSenseLength)
		res.SenseLen = copy(res.Sense[:], cmdPage[blkif.SenseOffset:blkif.SenseOffset+n])
	}
	if dir == scsi.DirFromDevice {
		for i := 0; i < dataPages; i++ {
			copy(buf[i*xen.PageSize:], q.page(s.pages[1+i]))
		}
	}
	return res, nil
}
