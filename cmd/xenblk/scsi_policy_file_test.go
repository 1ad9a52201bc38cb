package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen/sim"
)

// scsi-policy=@/path reads a policy file on the backend's host: its items
// apply over the engine's default exactly as inline text does, and a
// missing, relative or malformed file is an error naming the vbd and the
// file (the device gets no engine rather than the wrong policy).
func TestSCSIPolicyFromAFile(t *testing.T) {
	h, _ := sim.NewHost()
	st := h.Store()
	log := slog.New(slog.DiscardHandler)
	dirPath := t.TempDir()
	good := filepath.Join(dirPath, "no-inquiry.policy")
	if err := os.WriteFile(good, []byte("# the emulation's set, without INQUIRY\ndefault\n-0x12   # INQUIRY\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dirPath, "bad.policy")
	if err := os.WriteFile(bad, []byte("default\n+bogus\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	provide := reservationEngines(st, t.TempDir(), log)

	dir := "/local/domain/0/backend/xenblk/1/51712"
	st.Write(dir+"/params", "/shared/a.img")
	st.Write(dir+"/scsi-policy", "@"+good)
	e, err := provide(dir, storage.NewMemory(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	n := scsi.Nexus{Dom: 1, Device: dir}
	exec := func(cdb []byte, data []byte) scsi.Result {
		var r scsi.Result
		for i := 0; i < 4; i++ { // past POWER ON RESET
			r.Reset(len(data))
			e.Execute(n, &scsi.Command{CDB: cdb, Dir: scsi.DirFromDevice, Data: data}, &r)
			if s, _, ok := scsi.ParseSense(r.SenseBytes()); !ok || s.Key != scsi.KeyUnitAttention {
				break
			}
		}
		return r
	}
	if r := exec([]byte{0x12, 0, 0, 0, 36, 0}, make([]byte, 36)); r.Status != scsi.StatusCheckCondition {
		t.Errorf("INQUIRY, denied by the policy file, ran: status %#x", r.Status)
	}
	if r := exec([]byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 8)); r.Status != scsi.StatusGood {
		t.Errorf("READ CAPACITY(10), in the file's default, refused: status %#x", r.Status)
	}

	for i, c := range []struct{ node, want string }{
		{"@" + filepath.Join(dirPath, "missing.policy"), "no such file"},
		{"@relative.policy", "absolute path"},
		{"@" + bad, "bad.policy"},
	} {
		d := "/local/domain/0/backend/xenblk/2/" + string(rune('a'+i))
		st.Write(d+"/params", "/shared/b.img")
		st.Write(d+"/scsi-policy", c.node)
		if _, err := provide(d, storage.NewMemory(1<<20)); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), d) {
			t.Errorf("scsi-policy=%s: error %v, want one naming %s and saying %q", c.node, err, d, c.want)
		}
	}
}
