package stacktest

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
)

// twoNodes attaches one disk to two guests — the two nodes of a cluster —
// with one reservation unit for the disk.
func twoNodes(t *testing.T) (a, b *blkfront.Disk) {
	t.Helper()
	return twoNodesWith(t, "vdev=xvdb, target=shared")
}

// twoNodesWith is twoNodes with both disks attached by spec.
func twoNodesWith(t *testing.T, spec string) (a, b *blkfront.Disk) {
	t.Helper()
	shared, err := simstack.SharedSCSI("shared-disk")
	if err != nil {
		t.Fatal(err)
	}
	s := simstack.ForTest(t, newMemDisk(4<<20), simstack.Options{Backend: shared})
	disks, err := s.AttachGuests(context.Background(), spec, blkfront.Config{}, "node-a", "node-b")
	if err != nil {
		t.Fatal(err)
	}
	return disks[0], disks[1]
}

func prOutCDB(sa, typ byte, key, saKey uint64) (cdb, param []byte) {
	c := pr.OutCommand{Action: pr.OutAction(sa), Type: pr.Type(typ), ParamLen: pr.OutParamsLen}.CDB()
	p := pr.OutParams{Key: key, SAKey: saKey}
	return c[:], p.Append(nil, pr.OutAction(sa))
}

// The Windows failover cluster validation sequence, over the SCSI
// extension, between two guests; then the loser's writes conflict and its
// reads follow the type's rules.
func TestClusterOverSCSI(t *testing.T) {
	a, b := twoNodes(t)
	ctx := context.Background()
	out := func(d *blkfront.Disk, sa, typ byte, key, saKey uint64) byte {
		t.Helper()
		cdb, param := prOutCDB(sa, typ, key, saKey)
		r, err := d.ExecSCSI(ctx, cdb, scsi.DirToDevice, param)
		if err != nil {
			t.Fatal(err)
		}
		for r.Status == scsi.StatusCheckCondition && len(r.SenseBytes()) > 2 && r.SenseBytes()[2]&0xf == 6 {
			// Pending unit attentions (POWER ON RESET, RESERVATIONS
			// PREEMPTED, ...) are reported first; the command is retried,
			// as an initiator does.
			r, _ = d.ExecSCSI(ctx, cdb, scsi.DirToDevice, param)
		}
		return r.Status
	}
	const ria, clear, reserve, preempt = 6, 3, 1, 4
	const wero = 5
	if st := out(a, ria, 0, 0, 0xa); st != scsi.StatusGood {
		t.Fatalf("node A REGISTER AND IGNORE: %#x", st)
	}
	if st := out(b, ria, 0, 0, 0xb); st != scsi.StatusGood {
		t.Fatalf("node B REGISTER AND IGNORE: %#x", st)
	}
	if st := out(a, clear, 0, 0xa, 0); st != scsi.StatusGood {
		t.Fatalf("CLEAR: %#x", st)
	}
	out(a, ria, 0, 0, 0xa)
	out(b, ria, 0, 0, 0xb)
	if st := out(a, reserve, wero, 0xa, 0); st != scsi.StatusGood {
		t.Fatalf("RESERVE: %#x", st)
	}
	resv := make([]byte, 24)
	r, _ := b.ExecSCSI(ctx, []byte{0x5e, 1, 0, 0, 0, 0, 0, 0, 24, 0}, scsi.DirFromDevice, resv)
	if r.Status != scsi.StatusGood || binary.BigEndian.Uint64(resv[8:]) != 0xa || resv[21]&0xf != wero {
		t.Fatalf("READ RESERVATION from B: %#x % x", r.Status, resv)
	}
	if st := out(b, preempt, wero, 0xb, 0xa); st != scsi.StatusGood {
		t.Fatalf("PREEMPT: %#x", st)
	}
	keys := make([]byte, 32)
	b.ExecSCSI(ctx, []byte{0x5e, 0, 0, 0, 0, 0, 0, 0, 32, 0}, scsi.DirFromDevice, keys)
	if binary.BigEndian.Uint32(keys[4:]) != 8 || binary.BigEndian.Uint64(keys[8:]) != 0xb {
		t.Fatalf("READ KEYS after preempt: % x", keys)
	}
	// The loser: writes conflict (SCSI and plain blkif alike: the engine fences both),
	// reads are allowed under WRITE EXCLUSIVE REGISTRANTS ONLY.
	w, _ := a.ExecSCSI(ctx, []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, scsi.DirToDevice, make([]byte, 512))
	for w.Status == scsi.StatusCheckCondition { // pending unit attentions first
		w, _ = a.ExecSCSI(ctx, []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, scsi.DirToDevice, make([]byte, 512))
	}
	if w.Status != scsi.StatusReservationConflict {
		t.Fatalf("loser's WRITE(10): %#x", w.Status)
	}
	rd, _ := a.ExecSCSI(ctx, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, scsi.DirFromDevice, make([]byte, 512))
	if rd.Status != scsi.StatusGood {
		t.Fatalf("loser's READ(10) under WERO: %#x", rd.Status)
	}
	if wb, _ := b.ExecSCSI(ctx, []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, scsi.DirToDevice, make([]byte, 512)); wb.Status != scsi.StatusGood && wb.Status != scsi.StatusCheckCondition {
		t.Fatalf("winner's WRITE(10): %#x", wb.Status)
	}
}

// The reviewer's alternative: the dedicated reservation operation, served
// by the same engine, so it sees what the SCSI path did and vice versa;
// with the disks attached in grant-copy mode too (the keys and the
// reservation are copied into the guest's data page).
func TestClusterOverReservationOp(t *testing.T) {
	t.Run("map", func(t *testing.T) { testClusterOverReservationOp(t, "vdev=xvdb, target=shared") })
	t.Run("grant-copy", func(t *testing.T) { testClusterOverReservationOp(t, "vdev=xvdb, grant-copy=1, target=shared") })
}

func testClusterOverReservationOp(t *testing.T, spec string) {
	a, b := twoNodesWith(t, spec)
	ctx := context.Background()
	if !a.Info().Reservations {
		t.Fatal("feature-persistent-reservations not offered")
	}
	if err := a.PRRegister(ctx, 0, 0x1, true, false); err != nil {
		t.Fatal(err)
	}
	if err := b.PRRegister(ctx, 0, 0x2, true, false); err != nil {
		t.Fatal(err)
	}
	if err := a.PRReserve(ctx, 0x1, pr.TypeExclusiveAccess); err != nil {
		t.Fatal(err)
	}
	if err := b.PRReserve(ctx, 0x2, pr.TypeExclusiveAccess); !errors.Is(err, blkfront.ErrReservationConflict) {
		t.Fatalf("second reserve: %v", err)
	}
	gen, keys, err := b.PRReadKeys(ctx)
	if err != nil || len(keys) != 2 || gen != 2 {
		t.Fatalf("read keys: gen %d keys %x err %v", gen, keys, err)
	}
	res, err := b.PRReadReservation(ctx)
	if err != nil || !res.Held || res.Key != 0x1 || res.Type != pr.TypeExclusiveAccess {
		t.Fatalf("read reservation: %+v %v", res, err)
	}
	// Exclusive access: B cannot even read through the SCSI path.
	rd, _ := b.ExecSCSI(ctx, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, scsi.DirFromDevice, make([]byte, 512))
	for rd.Status == scsi.StatusCheckCondition {
		rd, _ = b.ExecSCSI(ctx, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, scsi.DirFromDevice, make([]byte, 512))
	}
	if rd.Status != scsi.StatusReservationConflict {
		t.Fatalf("READ under someone else's EXCLUSIVE ACCESS: %#x", rd.Status)
	}
	if err := b.PRPreempt(ctx, 0x2, 0x1, pr.TypeExclusiveAccess, true); err != nil {
		t.Fatalf("preempt and abort: %v", err)
	}
	if err := a.PRRelease(ctx, 0x1, pr.TypeExclusiveAccess); !errors.Is(err, blkfront.ErrReservationConflict) {
		t.Fatalf("the preempted node's release: %v", err)
	}
	if err := b.PRClear(ctx, 0x2); err != nil {
		t.Fatal(err)
	}
	if _, keys, _ := a.PRReadKeys(ctx); len(keys) != 0 {
		t.Fatalf("keys after clear: %x", keys)
	}
}
