package blkfront

import (
	"context"
	"errors"
	"fmt"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/scsi/pr"
)

// ErrReservationConflict: another initiator's reservation refused the
// operation (blkif.RspReservationConflict).
var ErrReservationConflict = errors.New("blkfront: reservation conflict")

// Persistent reservations through the dedicated blkif operation
// (blkif/pr.go), shaped like Linux's pr_ops.

// PRRegister registers newKey, replacing oldKey (0 if none); with ignore,
// whatever key is registered is replaced. newKey 0 unregisters.
func (d *Disk) PRRegister(ctx context.Context, oldKey, newKey uint64, ignore, aptpl bool) error {
	r := blkif.PRRequest{Action: blkif.PRRegister, Key: oldKey, SAKey: newKey}
	if ignore {
		r.Action = blkif.PRRegisterIgnore
	}
	if aptpl {
		r.Flags |= blkif.PRFlagAPTPL
	}
	return d.pr(ctx, r, nil)
}

// PRReserve takes a reservation of type typ with key.
func (d *Disk) PRReserve(ctx context.Context, key uint64, typ pr.Type) error {
	return d.pr(ctx, blkif.PRRequest{Action: blkif.PRReserve, Key: key, Type: uint8(typ)}, nil)
}

// PRRelease releases the reservation held with key.
func (d *Disk) PRRelease(ctx context.Context, key uint64, typ pr.Type) error {
	return d.pr(ctx, blkif.PRRequest{Action: blkif.PRRelease, Key: key, Type: uint8(typ)}, nil)
}

// PRPreempt removes the registrations (and reservation) of oldKey's
// holder using our key, taking a reservation of type typ; abort also
// aborts the preempted initiators' commands.
func (d *Disk) PRPreempt(ctx context.Context, key, oldKey uint64, typ pr.Type, abort bool) error {
	r := blkif.PRRequest{Action: blkif.PRPreempt, Key: key, SAKey: oldKey, Type: uint8(typ)}
	if abort {
		r.Action = blkif.PRPreemptAbort
	}
	return d.pr(ctx, r, nil)
}

// PRClear removes every registration and the reservation.
func (d *Disk) PRClear(ctx context.Context, key uint64) error {
	return d.pr(ctx, blkif.PRRequest{Action: blkif.PRClear, Key: key}, nil)
}

// PRReadKeys returns the generation and the registered keys.
func (d *Disk) PRReadKeys(ctx context.Context) (gen uint32, keys []uint64, err error) {
	buf := make([]byte, 4096)
	if err := d.pr(ctx, blkif.PRRequest{Action: blkif.PRReadKeys}, buf); err != nil {
		return 0, nil, err
	}
	data, _ := pr.ParseInData(buf) // a page holds the header
	return data.Generation, data.AppendKeys(nil), nil
}

// PRReservation is the current reservation, if any.
type PRReservation struct {
	Generation uint32
	Held       bool
	Key        uint64
	Type       pr.Type
}

// PRReadReservation returns the current reservation.
func (d *Disk) PRReadReservation(ctx context.Context) (PRReservation, error) {
	buf := make([]byte, 4096)
	if err := d.pr(ctx, blkif.PRRequest{Action: blkif.PRReadReservation}, buf); err != nil {
		return PRReservation{}, err
	}
	data, _ := pr.ParseInData(buf) // a page holds the header
	res, held := data.Reservation()
	return PRReservation{Generation: data.Generation, Held: held, Key: res.Key, Type: res.Type}, nil
}

// pr sends one reservation request; data receives the parameter data of
// the read actions.
func (d *Disk) pr(ctx context.Context, r blkif.PRRequest, data []byte) error {
	if !d.Info().Reservations {
		return fmt.Errorf("%w: the backend does not offer %s", ErrNotSupported, blkif.KeyFeatureReservations)
	}
	q := d.pick()
	id, err := q.acquire(ctx, 1)
	if err != nil {
		return err
	}
	s := &q.slots[id]
	page := q.page(s.pages[0])
	clear(page)
	r.ID = uint64(id)
	r.Gref = uint32(q.pool.Refs[s.pages[0]])
	s.prReq, s.kind = r, kindPR
	s.req = blkif.Request{Operation: blkif.OpReservation, ID: r.ID}
	kept, err := d.wait(ctx, q, id)
	if !kept {
		return err
	}
	defer q.releaseSlot(id)
	if err != nil {
		if s.status == blkif.RspReservationConflict {
			return ErrReservationConflict
		}
		return err
	}
	copy(data, page)
	return nil
}
