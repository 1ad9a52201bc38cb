package blkfront

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/xenblk/xenblk/blkif"
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

// PRReserve takes a reservation of type typ (blkif.PRType*) with key.
func (d *Disk) PRReserve(ctx context.Context, key uint64, typ uint8) error {
	return d.pr(ctx, blkif.PRRequest{Action: blkif.PRReserve, Key: key, Type: typ}, nil)
}

// PRRelease releases the reservation held with key.
func (d *Disk) PRRelease(ctx context.Context, key uint64, typ uint8) error {
	return d.pr(ctx, blkif.PRRequest{Action: blkif.PRRelease, Key: key, Type: typ}, nil)
}

// PRPreempt removes the registrations (and reservation) of oldKey's
// holder using our key, taking a reservation of type typ; abort also
// aborts the preempted initiators' commands.
func (d *Disk) PRPreempt(ctx context.Context, key, oldKey uint64, typ uint8, abort bool) error {
	r := blkif.PRRequest{Action: blkif.PRPreempt, Key: key, SAKey: oldKey, Type: typ}
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
	gen = binary.BigEndian.Uint32(buf)
	n := int(binary.BigEndian.Uint32(buf[4:])) / 8
	for i := 0; i < n && 8+8*i+8 <= len(buf); i++ {
		keys = append(keys, binary.BigEndian.Uint64(buf[8+8*i:]))
	}
	return gen, keys, nil
}

// PRReservation is the current reservation, if any.
type PRReservation struct {
	Generation uint32
	Held       bool
	Key        uint64
	Type       uint8
}

// PRReadReservation returns the current reservation.
func (d *Disk) PRReadReservation(ctx context.Context) (PRReservation, error) {
	buf := make([]byte, 4096)
	if err := d.pr(ctx, blkif.PRRequest{Action: blkif.PRReadReservation}, buf); err != nil {
		return PRReservation{}, err
	}
	r := PRReservation{Generation: binary.BigEndian.Uint32(buf)}
	if binary.BigEndian.Uint32(buf[4:]) >= 16 {
		r.Held = true
		r.Key = binary.BigEndian.Uint64(buf[8:])
		r.Type = buf[21] & 0x0f
	}
	return r, nil
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
