package vbd_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/sgio"
	"github.com/xenblk/xenblk/scsi/sgio/sgiotest"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// execPastAttentions runs cdb on e for n, retrying past unit attentions
// (POWER ON RESET first of all), and returns the result.
func execPastAttentions(e scsiengine.Engine, n scsi.Nexus, cdb []byte, dir scsi.Direction, data []byte) scsi.Result {
	var r scsi.Result
	for range 4 {
		r.Reset(len(data))
		e.Execute(n, &scsi.Command{CDB: cdb, Dir: dir, Data: data}, &r)
		if s, _, ok := scsi.ParseSense(r.SenseBytes()); !ok || s.Key != scsi.KeyUnitAttention {
			break
		}
	}
	return r
}

// fakeSCSIDisks is an injected opener: /dev/sd* paths are whole SCSI disks
// (fake ones over memory), anything else is refused as the real check
// would refuse a partition.
type fakeSCSIDisks struct {
	disks  map[string]*sgiotest.Disk
	opened []string
}

func (f *fakeSCSIDisks) open(path string) (sgio.Target, error) {
	f.opened = append(f.opened, path)
	if d, ok := f.disks[path]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("%w: %s is a partition; give the whole disk, or use emulated SCSI (scsi=emulate) for a partition", sgio.ErrNotWholeDisk, path)
}

// engines is the SCSI engine provider a backend serving vbds from st
// uses (blkback.VBDEngines), with open as the SG_IO opener (nil: the
// real one).
func engines(t *testing.T, st xen.Store, open func(string) (sgio.Target, error)) func(dir string, dev storage.Device) (scsiengine.Engine, error) {
	log := slog.New(slog.DiscardHandler)
	reg := scsiengine.New(scsiengine.Config{Reservations: &pr.FileStore{Dir: t.TempDir()}, Log: log, OpenSG: open})
	return func(dir string, dev storage.Device) (scsiengine.Engine, error) {
		return vbd.Engine(st, reg, dir, dev, log)
	}
}

func vbdDir(dom int) string { return fmt.Sprintf("/local/domain/0/backend/xenblk/%d/51712", dom) }

func writeVBD(t *testing.T, st xen.Store, dir string, nodes map[string]string) {
	t.Helper()
	for k, v := range nodes {
		if err := st.Write(dir+"/"+k, v); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSCSIEnginesPassthroughForWholeDisks(t *testing.T) {
	h, _ := sim.NewHost()
	st := h.Store()
	sda := sgiotest.NewDisk(storage.NewMemory(1 << 20)) // 2048 blocks
	fake := &fakeSCSIDisks{disks: map[string]*sgiotest.Disk{"/dev/sda": sda}}
	provide := engines(t, st, fake.open)
	// The blkback device (used only by the emulation).
	mem := storage.NewMemory(1 << 20)

	// Two guests pass through to the same whole disk, reservations
	// emulated (the default); a third asks for pass-through of a
	// partition; a fourth passes reservations through too.
	a, b, part, prThrough := vbdDir(1), vbdDir(2), vbdDir(3), vbdDir(4)
	writeVBD(t, st, a, map[string]string{"params": "/dev/sda", "scsi": "passthrough"})
	writeVBD(t, st, b, map[string]string{"params": "/dev/sda", "scsi": "passthrough", "pr": "emulate"})
	writeVBD(t, st, part, map[string]string{"params": "/dev/sda1", "scsi": "passthrough"})
	writeVBD(t, st, prThrough, map[string]string{"params": "/dev/sda", "scsi": "passthrough", "pr": "passthrough", "scsi-policy": "default,-0x12"})
	na, nb := scsi.Nexus{Dom: 1, Device: a}, scsi.Nexus{Dom: 2, Device: b}

	ea, err := provide(a, mem)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ea.(*sgio.Passthrough); !ok {
		t.Fatalf("whole disk with scsi=passthrough got %T", ea)
	}
	if v, _ := st.Read(a + "/scsi-engine"); v != "passthrough" {
		t.Errorf("scsi-engine node %q", v)
	}
	eb, err := provide(b, mem)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := eb.(*sgio.Passthrough); !ok {
		t.Fatalf("second vbd of the disk got %T", eb)
	}

	// Commands reach the disk with SG_IO.
	sda.Forget()
	if r := execPastAttentions(ea, na, []byte{scsi.OpInquiry, 0, 0, 0, 36, 0}, scsi.DirFromDevice, make([]byte, 36)); r.Status != scsi.StatusGood {
		t.Fatalf("INQUIRY: %#x", r.Status)
	}
	if !sda.Saw(scsi.OpInquiry) {
		t.Fatal("INQUIRY did not reach the disk")
	}
	// READ/WRITE are checked against the capacity before the disk sees them.
	sda.Forget()
	read := func(lba uint32) scsi.Result {
		cdb := []byte{scsi.OpRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}
		binary.BigEndian.PutUint32(cdb[2:], lba)
		return execPastAttentions(ea, na, cdb, scsi.DirFromDevice, make([]byte, 512))
	}
	if r := read(2047); r.Status != scsi.StatusGood {
		t.Fatalf("READ(10) of the last block: %#x", r.Status)
	}
	sda.Forget()
	if r := read(2048); r.Status != scsi.StatusCheckCondition {
		t.Fatalf("READ(10) past the end: %#x", r.Status)
	} else if s, _, _ := scsi.ParseSense(r.SenseBytes()); s.Code != scsi.LBAOutOfRange {
		t.Fatalf("READ(10) past the end: sense %+v", s)
	}
	if sda.Saw(scsi.OpRead10) {
		t.Fatal("an out-of-range READ(10) reached the disk")
	}
	// The pass-through policy: FORMAT UNIT never reaches the disk.
	if r := execPastAttentions(ea, na, []byte{0x04, 0, 0, 0, 0, 0}, scsi.DirNone, nil); r.Status != scsi.StatusCheckCondition || sda.Saw(0x04) {
		t.Fatalf("FORMAT UNIT: status %#x, reached the disk %v", r.Status, sda.Saw(0x04))
	}

	// Reservations are emulated and shared: A's registration is seen by
	// B, and the disk never sees a PR command.
	param := make([]byte, 24)
	param[15] = 7
	if r := execPastAttentions(ea, na, []byte{scsi.OpPersistentReserveOut, 6, 0, 0, 0, 0, 0, 0, 24, 0}, scsi.DirToDevice, param); r.Status != scsi.StatusGood {
		t.Fatalf("REGISTER AND IGNORE through A: %#x", r.Status)
	}
	keys := make([]byte, 16)
	if r := execPastAttentions(eb, nb, []byte{scsi.OpPersistentReserveIn, 0, 0, 0, 0, 0, 0, 0, 16, 0}, scsi.DirFromDevice, keys); r.Status != scsi.StatusGood || keys[15] != 7 {
		t.Fatalf("READ KEYS through B: %#x % x", r.Status, keys)
	}
	if sda.Saw(scsi.OpPersistentReserveOut) || sda.Saw(scsi.OpPersistentReserveIn) {
		t.Fatal("an emulated reservation command reached the disk")
	}
	// A reserves Write Exclusive: B's WRITE conflicts before the disk.
	param = make([]byte, 24)
	param[7] = 7
	if r := execPastAttentions(ea, na, []byte{scsi.OpPersistentReserveOut, 1, 1, 0, 0, 0, 0, 0, 24, 0}, scsi.DirToDevice, param); r.Status != scsi.StatusGood {
		t.Fatalf("RESERVE through A: %#x", r.Status)
	}
	sda.Forget()
	if r := execPastAttentions(eb, nb, []byte{scsi.OpWrite10, 0, 0, 0, 0, 0, 0, 0, 1, 0}, scsi.DirToDevice, make([]byte, 512)); r.Status != scsi.StatusReservationConflict {
		t.Fatalf("B's WRITE(10) under A's Write Exclusive: %#x", r.Status)
	}
	if sda.Saw(scsi.OpWrite10) {
		t.Fatal("a conflicting WRITE(10) reached the disk")
	}

	// pr=passthrough: the disk answers reservations itself, and the
	// spec's scsi-policy applies on top of the pass-through default.
	ep, err := provide(prThrough, mem)
	if err != nil {
		t.Fatal(err)
	}
	np := scsi.Nexus{Dom: 4, Device: prThrough}
	sda.Forget()
	if r := execPastAttentions(ep, np, []byte{scsi.OpPersistentReserveIn, 0, 0, 0, 0, 0, 0, 0, 16, 0}, scsi.DirFromDevice, make([]byte, 16)); r.Status != scsi.StatusGood {
		t.Fatalf("PR IN passed through: %#x", r.Status)
	}
	if !sda.Saw(scsi.OpPersistentReserveIn) {
		t.Fatal("with pr=passthrough, PR IN did not reach the disk")
	}
	param = make([]byte, 24)
	param[15] = 9
	if r := execPastAttentions(ep, np, []byte{scsi.OpPersistentReserveOut, 6, 0, 0, 0, 0, 0, 0, 24, 0}, scsi.DirToDevice, param); r.Status != scsi.StatusGood || !sda.Saw(scsi.OpPersistentReserveOut) {
		t.Fatalf("PR OUT passed through: %#x", r.Status)
	}
	// ... and the disk's registrations are its own, not the emulated unit's.
	keys = make([]byte, 24)
	if r := execPastAttentions(ea, na, []byte{scsi.OpPersistentReserveIn, 0, 0, 0, 0, 0, 0, 0, 24, 0}, scsi.DirFromDevice, keys); r.Status != scsi.StatusGood ||
		binary.BigEndian.Uint32(keys[4:]) != 8 || keys[15] != 7 {
		t.Fatalf("emulated READ KEYS after a passed-through registration: % x", keys)
	}
	if r := execPastAttentions(ep, np, []byte{scsi.OpInquiry, 0, 0, 0, 36, 0}, scsi.DirFromDevice, make([]byte, 36)); r.Status != scsi.StatusCheckCondition {
		t.Fatalf("INQUIRY denied by scsi-policy: %#x", r.Status)
	}

	// The partition: refused with the reason in scsi-error, emulated.
	epart, err := provide(part, mem)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := epart.(*emulate.Engine); !ok {
		t.Fatalf("partition got %T, want the emulation", epart)
	}
	if v, _ := st.Read(part + "/scsi-error"); !strings.Contains(v, "partition") || !strings.Contains(v, "emulating") {
		t.Errorf("scsi-error node %q", v)
	}
	if v, _ := st.Read(part + "/scsi-engine"); v != "emulate" {
		t.Errorf("partition's scsi-engine node %q", v)
	}
	// The disk was opened once for its three vbds (and once refused).
	if strings.Join(fake.opened, " ") != "/dev/sda /dev/sda1" {
		t.Errorf("opened %v", fake.opened)
	}
}

func TestSCSIEnginesModes(t *testing.T) {
	h, _ := sim.NewHost()
	st := h.Store()
	fake := &fakeSCSIDisks{disks: map[string]*sgiotest.Disk{"/dev/sdb": sgiotest.NewDisk(storage.NewMemory(1 << 20))}}
	provide := engines(t, st, fake.open)
	mem := storage.NewMemory(1 << 20)
	for _, c := range []struct {
		nodes map[string]string
		want  string // engine type, "nil", or an error substring
	}{
		{map[string]string{"params": "/dev/sdb"}, "*emulate.Engine"},
		{map[string]string{"params": "/dev/sdb", "scsi": "emulate"}, "*emulate.Engine"},
		{map[string]string{"params": "/dev/sdb", "scsi": "off"}, "nil"},
		{map[string]string{"params": "/dev/sdb", "scsi": "passthrough"}, "*sgio.Passthrough"},
		{map[string]string{"params": "/dev/sdb", "scsi": "sgio"}, "error: want emulate, passthrough or off"},
		{map[string]string{"params": "/dev/sdb", "scsi": "passthrough", "pr": "both"}, "error: want emulate or passthrough"},
		{map[string]string{"params": "/dev/sdb", "scsi": "passthrough", "scsi-policy": "default,+bogus"}, "error: scsi-policy"},
		{map[string]string{"scsi": "passthrough"}, "*emulate.Engine"}, // no params: nothing to pass through to
	} {
		dir := fmt.Sprintf("/local/domain/0/backend/xenblk/9/%d", 100+len(fake.opened))
		st.Remove(dir)
		writeVBD(t, st, dir, c.nodes)
		e, err := provide(dir, mem)
		got := fmt.Sprintf("%T", e)
		switch {
		case err != nil:
			got = "error: " + err.Error()
		case e == nil:
			got = "nil"
		}
		if !strings.HasPrefix(got, c.want) && !(strings.HasPrefix(c.want, "error:") && strings.Contains(got, strings.TrimPrefix(c.want, "error: "))) {
			t.Errorf("%v: got %s, want %s", c.nodes, got, c.want)
		}
		st.Remove(dir)
	}
}

// With the real opener, a file is refused (files only ever get the
// emulation) and the vbd still works.
func TestSCSIEnginesRefuseFilesForPassthrough(t *testing.T) {
	h, _ := sim.NewHost()
	st := h.Store()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := vbdDir(5)
	writeVBD(t, st, dir, map[string]string{"params": img, "scsi": "passthrough"})
	e, err := engines(t, st, nil)(dir, storage.NewMemory(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.(*emulate.Engine); !ok {
		t.Fatalf("a file with scsi=passthrough got %T", e)
	}
	v, _ := st.Read(dir + "/scsi-error")
	if !strings.Contains(v, "not a block device") {
		t.Errorf("scsi-error %q", v)
	}
	if _, err := sgio.Open(img); !errors.Is(err, sgio.ErrNotWholeDisk) {
		t.Errorf("sgio.Open(file) = %v", err)
	}
	n := scsi.Nexus{Dom: 5, Device: dir}
	if r := execPastAttentions(e, n, []byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0}, scsi.DirNone, nil); r.Status != scsi.StatusGood {
		t.Fatalf("TUR on the emulation: %#x", r.Status)
	}
}

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
	provide := engines(t, st, nil)
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

// scsi-policy=@/path reads a policy file on the backend's host: its items
// apply over the engine's default exactly as inline text does, and a
// missing, relative or malformed file is an error naming the vbd and the
// file (the device gets no engine rather than the wrong policy).
func TestSCSIPolicyFromAFile(t *testing.T) {
	h, _ := sim.NewHost()
	st := h.Store()
	dirPath := t.TempDir()
	good := filepath.Join(dirPath, "no-inquiry.policy")
	if err := os.WriteFile(good, []byte("# the emulation's set, without INQUIRY\ndefault\n-0x12   # INQUIRY\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dirPath, "bad.policy")
	if err := os.WriteFile(bad, []byte("default\n+bogus\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	provide := engines(t, st, nil)

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
