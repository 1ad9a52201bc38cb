package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/blkfront"
)

// TestFenceSCSISequence drives two guests sharing one disk with the
// sg_persist commands Linux's fence_scsi agent issues, through `xenblk
// scsi persist`: each node registers (-o -I), the first reserves WRITE
// EXCLUSIVE REGISTRANTS ONLY (-R -T 5), the second fences it off (-P -T 5,
// then -A -T 5). The fenced node's plain block writes then fail with a
// reservation conflict while its reads still work (registrants-only
// types let a non-registrant read), and the survivor writes.
func TestFenceSCSISequence(t *testing.T) {
	bin := buildXenblk(t)
	sock, a, b := twoGuestsOnOneDisk(t)
	persist := func(wantCode int, node string, args ...string) string {
		t.Helper()
		args = append([]string{"scsi", "--control", sock, "--device", node, "persist"}, args...)
		var out, errs string
		var code int
		for range 4 { // past the unit attentions a nexus sees first
			out, errs, code = runXenblkCode(t, bin, args...)
			if !strings.Contains(out, "Unit Attention") {
				break
			}
		}
		if code != wantCode {
			t.Fatalf("xenblk %s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, out, errs)
		}
		return out
	}
	ctx := context.Background()
	buf := make([]byte, 4096)
	write := func(d *blkfront.Disk) error { _, err := d.WriteAt(ctx, buf, 8192); return err }
	read := func(d *blkfront.Disk) error { _, err := d.ReadAt(ctx, buf, 8192); return err }

	// fence_scsi -o on: each node registers its key (with APTPL, as
	// fence_scsi does when asked to survive power loss).
	persist(0, "node-a", "-o", "-I", "-S", "0xa1", "-Z")
	persist(0, "node-b", "-o", "-I", "-S", "0xb1", "-Z")
	persist(0, "node-a", "-o", "-R", "-K", "0xa1", "-T", "5")
	if out := persist(0, "node-b", "-i", "-r"); !strings.Contains(out, "Key=0xa1") || !strings.Contains(out, "registrants only") {
		t.Fatalf("READ RESERVATION from B:\n%s", out)
	}
	if err := write(a); err != nil {
		t.Fatalf("holder A's write: %v", err)
	}
	if err := write(b); err != nil {
		t.Fatalf("registrant B's write under WERO (registrants may write): %v", err)
	}
	// fence_scsi -o off for node A, from node B: preempt A's key.
	persist(0, "node-b", "-o", "-P", "-K", "0xb1", "-S", "0xa1", "-T", "5")
	if out := persist(0, "node-b", "-i", "-k"); strings.Contains(out, "0xa1") || !strings.Contains(out, "0xb1") {
		t.Fatalf("keys after the preempt:\n%s", out)
	}
	if err := write(a); !errors.Is(err, blkfront.ErrReservationConflict) {
		t.Fatalf("fenced A's plain write: %v, want a reservation conflict", err)
	}
	if err := read(a); err != nil {
		t.Fatalf("fenced A's read under WERO: %v", err)
	}
	if err := write(b); err != nil {
		t.Fatalf("survivor B's write: %v", err)
	}
	// A comes back, registers again; B fences it with PREEMPT AND ABORT.
	persist(0, "node-a", "-o", "-I", "-S", "0xa2", "-Z")
	persist(0, "node-b", "-o", "-A", "-K", "0xb1", "-S", "0xa2", "-T", "5")
	if err := write(a); !errors.Is(err, blkfront.ErrReservationConflict) {
		t.Fatalf("A's write after PREEMPT AND ABORT: %v", err)
	}
	if out := persist(0, "node-b", "-i", "-c"); !strings.Contains(out, "Persist Through Power Loss Active(PTPL_A): 1") {
		t.Fatalf("REPORT CAPABILITIES:\n%s", out)
	}
}
