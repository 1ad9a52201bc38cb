package main

import (
	"log/slog"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen/sim"
)

// The disk spec's scsi-policy reaches the device's engine, and vbds of one
// backing disk share their reservations.
func TestReservationEnginesHonourPolicyAndShareUnits(t *testing.T) {
	h, _ := sim.NewHost()
	st := h.Store()
	a, b := "/local/domain/0/backend/xenblk/1/51712", "/local/domain/0/backend/xenblk/2/51712"
	for _, dir := range []string{a, b} {
		st.Write(dir+"/params", "/shared/disk.img")
	}
	st.Write(a+"/scsi-policy", "default,-0x12")
	provide := reservationEngines(st, t.TempDir(), slog.New(slog.DiscardHandler))
	ea, err := provide(a, storage.NewMemory(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	eb, _ := provide(b, storage.NewMemory(1<<20))
	run := func(e interface {
		Execute(scsi.Nexus, *scsi.Command, *scsi.Result)
	}, n scsi.Nexus, cdb []byte, dir scsi.Direction, data []byte) scsi.Result {
		var r scsi.Result
		for i := 0; i < 4; i++ { // past POWER ON RESET
			r.Reset(len(data))
			e.Execute(n, &scsi.Command{CDB: cdb, Dir: dir, Data: data}, &r)
			if s, _, ok := scsi.ParseSense(r.SenseBytes()); !ok || s.Key != scsi.KeyUnitAttention {
				break
			}
		}
		return r
	}
	na, nb := scsi.Nexus{Dom: 1, Device: a}, scsi.Nexus{Dom: 2, Device: b}
	if r := run(ea, na, []byte{0x12, 0, 0, 0, 36, 0}, scsi.DirFromDevice, make([]byte, 36)); r.Status != scsi.StatusCheckCondition {
		t.Fatalf("INQUIRY denied by the spec's policy ran: %#x", r.Status)
	}
	if r := run(eb, nb, []byte{0x12, 0, 0, 0, 36, 0}, scsi.DirFromDevice, make([]byte, 36)); r.Status != scsi.StatusGood {
		t.Fatalf("INQUIRY on the other vbd (default policy): %#x", r.Status)
	}
	// A registration through one vbd is seen through the other.
	param := make([]byte, 24)
	param[15] = 7 // service action key 7
	if r := run(ea, na, []byte{0x5f, 6, 0, 0, 0, 0, 0, 0, 24, 0}, scsi.DirToDevice, param); r.Status != scsi.StatusGood {
		t.Fatalf("REGISTER AND IGNORE: %#x", r.Status)
	}
	keys := make([]byte, 16)
	if r := run(eb, nb, []byte{0x5e, 0, 0, 0, 0, 0, 0, 0, 16, 0}, scsi.DirFromDevice, keys); r.Status != scsi.StatusGood || keys[15] != 7 {
		t.Fatalf("READ KEYS through the other vbd: %#x % x", r.Status, keys)
	}
}
