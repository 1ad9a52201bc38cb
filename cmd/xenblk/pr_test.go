package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/control"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
)

// twoGuestsOnOneDisk attaches one disk to two guests of a simulated host —
// the two nodes of a cluster — through blkback and blkfront, with one
// reservation unit for the disk, and serves both frontends on a control
// socket as "node-a" and "node-b".
func twoGuestsOnOneDisk(t *testing.T) (sock string, a, b *blkfront.Disk) {
	t.Helper()
	shared, err := simstack.SharedSCSI("shared-disk")
	if err != nil {
		t.Fatal(err)
	}
	s := simstack.ForTest(t, storage.NewMemory(4<<20), simstack.Options{Backend: shared})
	disks, err := s.AttachGuests(context.Background(), "vdev=xvdb, target=shared", blkfront.Config{}, "node-a", "node-b")
	if err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(t.TempDir(), "nodes.sock")
	l, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctlDone := make(chan struct{})
	go func() {
		control.Serve(l, map[string]control.Target{"node-a": disks[0], "node-b": disks[1]})
		close(ctlDone)
	}()
	t.Cleanup(func() { // before the stack's: the frontends close after the socket
		l.Close()
		<-ctlDone
	})
	return sock, disks[0], disks[1]
}

// scsiWrite sends WRITE(10) of one block at LBA 0 and returns its status,
// after the unit attentions an initiator sees first (power on,
// registrations preempted, ...).
func scsiWrite(t *testing.T, d *blkfront.Disk) byte {
	t.Helper()
	cdb := []byte{scsi.OpWrite10, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	for range 8 {
		r, err := d.ExecSCSI(context.Background(), cdb, scsi.DirToDevice, make([]byte, 512))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != scsi.StatusCheckCondition || len(r.SenseBytes()) < 3 || r.SenseBytes()[2]&0xf != 6 {
			return r.Status
		}
	}
	t.Fatal("unit attentions without end")
	return 0
}

// Two guests share a disk; `xenblk pr` drives the dedicated reservation
// operation of each through the control socket, blkfront, blkif and
// blkback into the one reservation engine, and each guest's SCSI writes
// are fenced accordingly.
func TestPRCommandsTwoGuests(t *testing.T) {
	bin := buildXenblk(t)
	sock, a, b := twoGuestsOnOneDisk(t)
	pr := func(wantCode int, want string, node string, args ...string) string {
		t.Helper()
		args = append([]string{"pr"}, args...)
		args = append(args, "--control", sock, "--device", node)
		out, errs, code := runXenblkCode(t, bin, args...)
		if code != wantCode || !strings.Contains(out+errs, want) {
			t.Fatalf("xenblk %s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\nwant %q", strings.Join(args, " "), code, wantCode, out, errs, want)
		}
		return out
	}
	pr(0, "generation=0x0 keys=0\n", "node-a", "read-keys")
	pr(0, "generation=0x0 no reservation\n", "node-b", "read-reservation")

	// Node A registers and takes WRITE EXCLUSIVE, REGISTRANTS ONLY.
	pr(0, "register: ok\n", "node-a", "register", "--key", "0xa")
	pr(0, "reserve: ok\n", "node-a", "reserve", "--key", "0xa", "--type", "we-ro")
	pr(0, "generation=0x1 key=0xa type=we-ro\n", "node-b", "read-reservation")
	if st := scsiWrite(t, a); st != scsi.StatusGood {
		t.Fatalf("holder A's WRITE(10): status %#x", st)
	}
	// Node B, not registered, cannot write, nor reserve.
	if st := scsiWrite(t, b); st != scsi.StatusReservationConflict {
		t.Fatalf("unregistered B's WRITE(10): status %#x, want RESERVATION CONFLICT", st)
	}
	pr(3, "reserve: RESERVATION CONFLICT\n", "node-b", "reserve", "--key", "0xb", "--type", "we-ro")

	// B registers and preempts A's key: A is unregistered, B holds it.
	pr(0, "register: ok\n", "node-b", "register", "--key", "0xb")
	pr(0, "generation=0x2 keys=2\n0xa\n0xb\n", "node-a", "read-keys")
	pr(0, "preempt: ok\n", "node-b", "preempt", "--key", "0xb", "--old-key", "0xa", "--type", "we-ro")
	pr(0, "generation=0x3 keys=1\n0xb\n", "node-a", "read-keys")
	pr(0, "generation=0x3 key=0xb type=we-ro\n", "node-a", "read-reservation")
	if st := scsiWrite(t, a); st != scsi.StatusReservationConflict {
		t.Fatalf("preempted A's WRITE(10): status %#x, want RESERVATION CONFLICT", st)
	}
	if st := scsiWrite(t, b); st != scsi.StatusGood {
		t.Fatalf("new holder B's WRITE(10): status %#x", st)
	}
	// A's old key is gone: its release and re-reserve conflict.
	pr(3, "RESERVATION CONFLICT", "node-a", "release", "--key", "0xa", "--type", "we-ro")

	// A re-registers (ignoring whatever it had); B, the holder, preempts
	// and aborts A's key, which only removes A's registration (the
	// reservation, not A's, keeps its type); B changes its key and
	// releases; a release of the wrong type is refused without a conflict.
	pr(0, "register: ok\n", "node-a", "register", "--key", "0xc", "--ignore")
	pr(0, "preempt-abort: ok\n", "node-b", "preempt-abort", "--key", "0xb", "--old-key", "0xc", "--type", "ea")
	pr(0, "generation=0x5 key=0xb type=we-ro\n", "node-a", "read-reservation")
	pr(0, "generation=0x5 keys=1\n0xb\n", "node-a", "read-keys")
	pr(0, "register: ok\n", "node-b", "register", "--old-key", "0xb", "--key", "0xd")
	pr(3, "RESERVATION CONFLICT", "node-b", "release", "--key", "0xb", "--type", "we-ro")
	pr(1, "release:", "node-b", "release", "--key", "0xd", "--type", "ea")
	pr(0, "release: ok\n", "node-b", "release", "--key", "0xd", "--type", "we-ro")
	pr(0, "generation=0x6 no reservation\n", "node-a", "read-reservation")
	pr(0, "clear: ok\n", "node-b", "clear", "--key", "0xd")
	pr(0, "generation=0x7 keys=0\n", "node-a", "read-keys")
	if st := scsiWrite(t, a); st != scsi.StatusGood {
		t.Fatalf("A's WRITE(10) after clear: status %#x", st)
	}

	// The frontend API itself agrees with what the commands did.
	if err := a.PRReserve(context.Background(), 0xa, 5); !errors.Is(err, blkfront.ErrReservationConflict) {
		t.Fatalf("A reserving unregistered: %v", err)
	}

	// Usage mistakes exit 2 and send nothing.
	for _, args := range [][]string{
		{"reserve", "--key", "0xa"},
		{"reserve", "--key", "0xa", "--type", "zz"},
		{"preempt", "--key", "0xa", "--type", "we"},
		{"register"},
		{"register", "--key", "xyz"},
		{"register", "--key", "1", "--old-key", "2", "--ignore"},
		{"read-keys", "extra"},
	} {
		pr(2, "", "node-a", args...)
	}
	pr(0, "generation=0x7 keys=0\n", "node-a", "read-keys")
	// An unknown device and a missing socket exit 1.
	pr(1, "no device", "node-z", "read-keys")
	if _, _, code := runXenblkCode(t, bin, "pr", "read-keys", "--control", sock+".missing"); code != 1 {
		t.Errorf("missing socket: exit %d, want 1", code)
	}
}

// REGISTER AND MOVE between two guests with xenblk scsi persist: node A
// holds Exclusive Access, learns node B's TransportID from READ FULL
// STATUS, and moves the reservation to B, unregistering itself.
func TestPersistRegisterMoveTwoGuests(t *testing.T) {
	bin := buildXenblk(t)
	sock, a, b := twoGuestsOnOneDisk(t)
	persist := func(wantCode int, node string, args ...string) string {
		t.Helper()
		args = append([]string{"scsi", "--control", sock, "--device", node, "persist"}, args...)
		var out, errs string
		var code int
		for range 4 { // past the unit attentions a new nexus sees first
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
	persist(0, "node-a", "-o", "-G", "-S", "0xa")
	persist(0, "node-b", "-o", "-G", "-S", "0xb")
	persist(0, "node-a", "-o", "-R", "-K", "0xa", "-T", "3")
	if st := scsiWrite(t, b); st != scsi.StatusReservationConflict {
		t.Fatalf("B's WRITE(10) under A's Exclusive Access: %#x", st)
	}
	// B's name, as READ FULL STATUS shows it.
	full := persist(0, "node-a", "-i", "-s")
	var aName, bName string
	for _, l := range strings.Split(full, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case !strings.HasPrefix(l, "(xen:dom"):
		case aName == "":
			aName = strings.Trim(l, "()")
		default:
			bName = strings.Trim(l, "()")
		}
	}
	if aName == "" || bName == "" || aName == bName {
		t.Fatalf("no TransportIDs for A and B in:\n%s", full)
	}
	// B cannot move what it does not hold; A cannot move to itself.
	persist(3, "node-b", "-o", "-M", "-K", "0xb", "-S", "0xc", "-X", aName)
	if out := persist(3, "node-a", "-o", "-M", "-K", "0xa", "-S", "0xc", "-X", aName); !strings.Contains(out, "Invalid field in parameter list") {
		t.Fatalf("a move to oneself:\n%s", out)
	}
	persist(0, "node-a", "-o", "-M", "-K", "0xa", "-S", "0xc", "-X", bName, "--unreg")
	if got := persist(0, "node-b", "-i", "-k"); !strings.Contains(got, "1 registered reservation key follows:\n    0xc\n") {
		t.Fatalf("keys after the move:\n%s", got)
	}
	if got := persist(0, "node-b", "-i", "-r"); !strings.Contains(got, "Key=0xc") || !strings.Contains(got, "type: Exclusive Access\n") {
		t.Fatalf("reservation after the move:\n%s", got)
	}
	if st := scsiWrite(t, b); st != scsi.StatusGood {
		t.Fatalf("B's WRITE(10) holding the moved reservation: %#x", st)
	}
	if st := scsiWrite(t, a); st != scsi.StatusReservationConflict {
		t.Fatalf("A's WRITE(10) after moving away and unregistering: %#x", st)
	}
	// The dedicated operation sees the same state.
	pr := func(node string, args ...string) string {
		out, _, _ := runXenblkCode(t, bin, append(append([]string{"pr"}, args...), "--control", sock, "--device", node)...)
		return out
	}
	if got := pr("node-a", "read-reservation"); !strings.Contains(got, "key=0xc type=ea") {
		t.Fatalf("xenblk pr read-reservation after the move: %q", got)
	}
}
