package control

import (
	"context"
	"fmt"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
)

// SCSIPR gives a SCSI target that has no dedicated reservation operation
// (a PVSCSI LUN) the pr op: the Target it returns is t and a PRTarget
// that sends each action as the PERSISTENT RESERVE OUT or IN command
// carrying it, so `xenblk pr` works on any device that answers SCSI. A
// RESERVATION CONFLICT status is ErrReservationConflict, as from the
// dedicated operation.
func SCSIPR(t Target) Target { return scsiPR{t} }

var _ PRTarget = scsiPR{}

type scsiPR struct{ Target }

// prInLen is the data-in length of a PR IN: a page, as blkfront's.
const prInLen = 4096

// unitAttentionRetries bounds the retries of a command that meets a unit
// attention (a new nexus's power-on, a preempted registration): each
// reports one condition and is cleared by the telling, as Linux's sd
// retries its pr_ops commands.
const unitAttentionRetries = 8

// exec runs cdb, again while it meets a unit attention.
func (p scsiPR) exec(ctx context.Context, cdb []byte, dir scsi.Direction, buf []byte) (scsi.Result, error) {
	for i := 0; ; i++ {
		res, err := p.ExecSCSI(ctx, cdb, dir, buf)
		if err != nil {
			return res, err
		}
		s, _, _ := scsi.ParseSense(res.SenseBytes())
		if res.Status != scsi.StatusCheckCondition || s.Key != scsi.KeyUnitAttention || i == unitAttentionRetries {
			return res, nil
		}
	}
}

func (p scsiPR) out(ctx context.Context, a pr.OutAction, typ pr.Type, params pr.OutParams) error {
	param := params.Append(nil, a)
	cdb := pr.OutCommand{Action: a, Type: typ, ParamLen: uint32(len(param))}.CDB()
	res, err := p.exec(ctx, cdb[:], scsi.DirToDevice, param)
	if err != nil {
		return err
	}
	return prStatus(a.String(), res)
}

func (p scsiPR) in(ctx context.Context, a pr.InAction) (pr.InData, error) {
	buf := make([]byte, prInLen)
	cdb := pr.InCommand{Action: a, AllocLen: prInLen}.CDB()
	res, err := p.exec(ctx, cdb[:], scsi.DirFromDevice, buf)
	if err != nil {
		return pr.InData{}, err
	}
	if err := prStatus(a.String(), res); err != nil {
		return pr.InData{}, err
	}
	d, ok := pr.ParseInData(buf[:len(buf)-min(max(res.Resid, 0), len(buf))])
	if !ok {
		return pr.InData{}, fmt.Errorf("PERSISTENT RESERVE IN (%s): %d bytes, shorter than its header", a, len(buf)-res.Resid)
	}
	return d, nil
}

// prStatus is the error a PR command's status means.
func prStatus(action string, res scsi.Result) error {
	switch res.Status {
	case scsi.StatusGood:
		return nil
	case scsi.StatusReservationConflict:
		return ErrReservationConflict
	}
	return fmt.Errorf("PERSISTENT RESERVE (%s): status %#x, sense % x", action, res.Status, res.SenseBytes())
}

func (p scsiPR) PRRegister(ctx context.Context, oldKey, newKey uint64, ignore, aptpl bool) error {
	a := pr.OutRegister
	if ignore {
		a = pr.OutRegisterAndIgnore
	}
	return p.out(ctx, a, 0, pr.OutParams{Key: oldKey, SAKey: newKey, APTPL: aptpl})
}

func (p scsiPR) PRReserve(ctx context.Context, key uint64, typ pr.Type) error {
	return p.out(ctx, pr.OutReserve, typ, pr.OutParams{Key: key})
}

func (p scsiPR) PRRelease(ctx context.Context, key uint64, typ pr.Type) error {
	return p.out(ctx, pr.OutRelease, typ, pr.OutParams{Key: key})
}

func (p scsiPR) PRPreempt(ctx context.Context, key, oldKey uint64, typ pr.Type, abort bool) error {
	a := pr.OutPreempt
	if abort {
		a = pr.OutPreemptAndAbort
	}
	return p.out(ctx, a, typ, pr.OutParams{Key: key, SAKey: oldKey})
}

func (p scsiPR) PRClear(ctx context.Context, key uint64) error {
	return p.out(ctx, pr.OutClear, 0, pr.OutParams{Key: key})
}

func (p scsiPR) PRReadKeys(ctx context.Context) (uint32, []uint64, error) {
	d, err := p.in(ctx, pr.InReadKeys)
	if err != nil {
		return 0, nil, err
	}
	return d.Generation, d.AppendKeys(nil), nil
}

func (p scsiPR) PRReadReservation(ctx context.Context) (blkfront.PRReservation, error) {
	d, err := p.in(ctx, pr.InReadReservation)
	if err != nil {
		return blkfront.PRReservation{}, err
	}
	r, held := d.Reservation()
	return blkfront.PRReservation{Generation: d.Generation, Held: held, Key: r.Key, Type: r.Type}, nil
}
