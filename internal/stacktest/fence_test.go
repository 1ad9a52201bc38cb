package stacktest

import (
	"context"
	"errors"
	"testing"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/scsi/pr"
)

// TestReservationsFenceThePlainBlockPath: reservations bind a guest's
// ordinary reads and writes, not only its SCSI commands. After node A
// reserves, node B's plain writes (and, under EXCLUSIVE ACCESS, its
// reads) fail with a reservation conflict; once B preempts, A is the one
// fenced off; after CLEAR both work again.
func TestReservationsFenceThePlainBlockPath(t *testing.T) {
	a, b := twoNodes(t)
	ctx := context.Background()
	buf := make([]byte, 4096)
	write := func(d *blkfront.Disk) error { _, err := d.WriteAt(ctx, buf, 0); return err }
	read := func(d *blkfront.Disk) error { _, err := d.ReadAt(ctx, buf, 0); return err }
	conflict := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, blkfront.ErrReservationConflict) {
			t.Fatalf("%s: %v, want a reservation conflict", what, err)
		}
	}
	works := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	works("B writes before any reservation", write(b))
	works("A registers", a.PRRegister(ctx, 0, 0xA, true, false))
	works("A reserves WRITE EXCLUSIVE", a.PRReserve(ctx, 0xA, pr.TypeWriteExclusive))
	works("A writes as the holder", write(a))
	conflict("B writes under A's WRITE EXCLUSIVE", write(b))
	works("B reads under WRITE EXCLUSIVE", read(b))
	conflict("B discards under A's WRITE EXCLUSIVE", b.Discard(ctx, 0, 4096, false))
	works("A releases", a.PRRelease(ctx, 0xA, pr.TypeWriteExclusive))
	works("A reserves EXCLUSIVE ACCESS", a.PRReserve(ctx, 0xA, pr.TypeExclusiveAccess))
	conflict("B reads under A's EXCLUSIVE ACCESS", read(b))
	works("B registers", b.PRRegister(ctx, 0, 0xB, true, false))
	works("B preempts A", b.PRPreempt(ctx, 0xB, 0xA, pr.TypeExclusiveAccess, false))
	conflict("A, preempted, writes", write(a))
	conflict("A, preempted, reads", read(a))
	works("B writes as the new holder", write(b))
	works("B clears", b.PRClear(ctx, 0xB))
	works("A writes after CLEAR", write(a))
	works("B writes after CLEAR", write(b))
}
