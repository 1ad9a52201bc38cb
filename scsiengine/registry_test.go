package scsiengine_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/sgio"
	"github.com/xenblk/xenblk/scsi/sgio/sgiotest"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
)

// closingDisk is a fake whole disk that counts its closes.
type closingDisk struct {
	*sgiotest.Disk
	closes int
}

func (d *closingDisk) Close() error { d.closes++; return nil }

// TestSCSIEnginesReleaseTheDisk: a disk opened for SG_IO stays open while
// any vbd passes through to it, is closed when the last one's engine is
// closed (blkback closes a removed vbd's engine), and is opened afresh
// for the next.
func TestSCSIEnginesReleaseTheDisk(t *testing.T) {
	disk := &closingDisk{Disk: sgiotest.NewDisk(storage.NewMemory(1 << 20))}
	opens := 0
	open := func(string) (sgio.Target, error) { opens++; return disk, nil }
	reg := newRegistry(t, open)
	mem := storage.NewMemory(1 << 20)
	unit := func(name string) scsiengine.Unit {
		return scsiengine.Unit{Name: name, ID: "/dev/sda", Path: "/dev/sda", Options: diskspec.Options{SCSI: diskspec.SCSIPassthrough}}
	}
	ea, c, err := reg.Open(unit("a"), mem)
	if err != nil || c.Engine != diskspec.SCSIPassthrough {
		t.Fatal(c, err)
	}
	eb, _, err := reg.Open(unit("b"), mem)
	if err != nil {
		t.Fatal(err)
	}
	if opens != 1 {
		t.Fatalf("the disk was opened %d times for two vbds, want once", opens)
	}
	ea.(io.Closer).Close()
	ea.(io.Closer).Close() // twice: counted once
	if disk.closes != 0 {
		t.Fatal("the disk was closed while another vbd still passes through to it")
	}
	eb.(io.Closer).Close()
	if disk.closes != 1 {
		t.Fatalf("closes after the last vbd went: %d, want 1", disk.closes)
	}
	if _, _, err := reg.Open(unit("a"), mem); err != nil {
		t.Fatal(err)
	}
	if opens != 2 {
		t.Fatalf("opens after a new vbd: %d, want 2", opens)
	}
}

func newRegistry(t *testing.T, open func(string) (sgio.Target, error)) *scsiengine.Registry {
	return scsiengine.New(scsiengine.Config{Reservations: &pr.FileStore{Dir: t.TempDir()}, Log: slog.New(slog.DiscardHandler), OpenSG: open})
}

// TestOpenChooses: the engine and the Choice each configuration gets.
// Only a unit that asked for pass-through has a Choice; a refusal keeps
// its reason and the unit gets the emulation.
func TestOpenChooses(t *testing.T) {
	whole := sgiotest.NewDisk(storage.NewMemory(1 << 20))
	open := func(path string) (sgio.Target, error) {
		if path == "/dev/sda" {
			return whole, nil
		}
		return nil, fmt.Errorf("%w: %s", sgio.ErrNotWholeDisk, path)
	}
	pass := diskspec.Options{SCSI: diskspec.SCSIPassthrough}
	for _, c := range []struct {
		name    string
		path    string
		opts    diskspec.Options
		engine  string // the engine's type, or "nil"
		choice  string // Choice.Engine
		refused bool
	}{
		{"off", "/dev/sda", diskspec.Options{SCSI: diskspec.SCSIOff}, "nil", "", false},
		{"default", "/dev/sda", diskspec.Options{}, "*emulate.Engine", "", false},
		{"emulate", "/dev/sda", diskspec.Options{SCSI: diskspec.SCSIEmulate}, "*emulate.Engine", "", false},
		{"whole disk", "/dev/sda", pass, "*sgio.Passthrough", diskspec.SCSIPassthrough, false},
		{"partition", "/dev/sda1", pass, "*emulate.Engine", diskspec.SCSIEmulate, true},
		{"no path", "", pass, "*emulate.Engine", diskspec.SCSIEmulate, true},
	} {
		reg := newRegistry(t, open)
		e, ch, err := reg.Open(scsiengine.Unit{Name: c.name, ID: "lu", Path: c.path, Options: c.opts}, storage.NewMemory(1<<20))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		got := fmt.Sprintf("%T", e)
		if e == nil {
			got = "nil"
		}
		if got != c.engine || ch.Engine != c.choice || (ch.Refused != nil) != c.refused {
			t.Errorf("%s: %s, %+v; want %s, choice %q, refused %v", c.name, got, ch, c.engine, c.choice, c.refused)
		}
		if ch.Refused != nil && !errors.Is(ch.Refused, sgio.ErrNotWholeDisk) {
			t.Errorf("%s: refused with %v, want sgio.ErrNotWholeDisk", c.name, ch.Refused)
		}
		if cl, ok := e.(io.Closer); ok {
			cl.Close()
		}
	}
}

// TestUnitsOfOneDiskShareReservations: a registration made through one
// unit's engine is seen through another unit with the same ID, and not
// through a unit of another disk.
func TestUnitsOfOneDiskShareReservations(t *testing.T) {
	reg := newRegistry(t, nil)
	engine := func(name, id string) scsiengine.Engine {
		e, _, err := reg.Open(scsiengine.Unit{Name: name, ID: id, Path: id}, storage.NewMemory(1<<20))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b, other := engine("a", "/disk"), engine("b", "/disk"), engine("c", "/other")
	run := func(e scsiengine.Engine, dom int, cdb []byte, dir scsi.Direction, data []byte) scsi.Result {
		var r scsi.Result
		for range 4 { // past POWER ON RESET
			r.Reset(len(data))
			e.Execute(scsi.Nexus{Dom: uint16(dom), Device: "d"}, &scsi.Command{CDB: cdb, Dir: dir, Data: data}, &r)
			if s, _, ok := scsi.ParseSense(r.SenseBytes()); !ok || s.Key != scsi.KeyUnitAttention {
				break
			}
		}
		return r
	}
	param := make([]byte, 24)
	param[15] = 7 // service action key 7
	if r := run(a, 1, []byte{scsi.OpPersistentReserveOut, 6, 0, 0, 0, 0, 0, 0, 24, 0}, scsi.DirToDevice, param); r.Status != scsi.StatusGood {
		t.Fatalf("REGISTER AND IGNORE through a: %#x", r.Status)
	}
	for _, c := range []struct {
		name string
		e    scsiengine.Engine
		keys uint32 // bytes of keys READ KEYS lists
	}{{"b, the same disk", b, 8}, {"c, another disk", other, 0}} {
		keys := make([]byte, 16)
		if r := run(c.e, 2, []byte{scsi.OpPersistentReserveIn, 0, 0, 0, 0, 0, 0, 0, 16, 0}, scsi.DirFromDevice, keys); r.Status != scsi.StatusGood {
			t.Fatalf("READ KEYS through %s: %#x", c.name, r.Status)
		}
		if n := binary.BigEndian.Uint32(keys[4:]); n != c.keys {
			t.Errorf("READ KEYS through %s lists %d bytes of keys, want %d", c.name, n, c.keys)
		}
	}
}
