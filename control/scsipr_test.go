package control

import (
	"context"
	"errors"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/storage"
)

// nexusTarget is one initiator's view of an emulated unit.
type nexusTarget struct {
	e *emulate.Engine
	n scsi.Nexus
}

func (t nexusTarget) ExecSCSI(_ context.Context, cdb []byte, dir scsi.Direction, buf []byte) (scsi.Result, error) {
	var res scsi.Result
	t.e.Execute(t.n, &scsi.Command{CDB: cdb, Dir: dir, Data: buf}, &res)
	return res, nil
}

// TestSCSIPR: the pr actions as PERSISTENT RESERVE commands, between two
// initiators of one emulated unit: registrations and the reservation
// read back, another's reserve is a conflict, preempt fences it.
func TestSCSIPR(t *testing.T) {
	unit, err := pr.Open(pr.NewMemoryStore(), "unit", nil)
	if err != nil {
		t.Fatal(err)
	}
	e := emulate.New(storage.NewMemory(1<<20), emulate.Config{Identity: "unit", Reservations: unit})
	a := SCSIPR(nexusTarget{e, scsi.Nexus{Dom: 1, Device: "a"}}).(PRTarget)
	b := SCSIPR(nexusTarget{e, scsi.Nexus{Dom: 2, Device: "b"}}).(PRTarget)
	ctx := context.Background()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("a registers", a.PRRegister(ctx, 0, 0xa, false, false))
	must("b registers", b.PRRegister(ctx, 0, 0xb, false, false))
	must("a reserves", a.PRReserve(ctx, 0xa, pr.Type(1)))
	gen, keys, err := b.PRReadKeys(ctx)
	if err != nil || gen != 2 || len(keys) != 2 || keys[0] != 0xa || keys[1] != 0xb {
		t.Fatalf("read keys: gen %d keys %x, %v", gen, keys, err)
	}
	r, err := b.PRReadReservation(ctx)
	if err != nil || !r.Held || r.Key != 0xa || r.Type != 1 {
		t.Fatalf("read reservation: %+v, %v", r, err)
	}
	if err := b.PRReserve(ctx, 0xb, pr.Type(1)); !errors.Is(err, ErrReservationConflict) {
		t.Fatalf("b reserves over a's reservation: %v, want a conflict", err)
	}
	must("b preempts a", b.PRPreempt(ctx, 0xb, 0xa, pr.Type(1), false))
	if _, keys, _ := a.PRReadKeys(ctx); len(keys) != 1 || keys[0] != 0xb {
		t.Fatalf("after the preempt: keys %x, want b's alone", keys)
	}
	must("b releases", b.PRRelease(ctx, 0xb, pr.Type(1)))
	must("b clears", b.PRClear(ctx, 0xb))
	if _, keys, _ := a.PRReadKeys(ctx); len(keys) != 0 {
		t.Fatalf("after the clear: keys %x", keys)
	}
}
