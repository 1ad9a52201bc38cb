package scsitest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// Target is anything that executes SCSI commands: the emulation engine,
// the pass-through, or a frontend's view of a backend.
type Target interface {
	Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result)
}

// NewTarget builds the target under test over dev. The target must allow
// every command of scsi.EmulatedPolicy and must not emulate reservations.
type NewTarget func(t *testing.T, dev storage.Device) Target

// Config is one device shape the suite runs against.
type Config struct {
	Name       string
	BlockSize  uint32
	Blocks     int64
	ReadOnly   bool
	SliceStart int64 // in blocks; > 0 runs through a storage.Slice of a larger device
}

// Configs are the shapes Run covers: 512 and 4096-byte blocks, read-only,
// and a slice of a larger device.
var Configs = []Config{
	{Name: "512", BlockSize: 512, Blocks: 512},
	{Name: "4096", BlockSize: 4096, Blocks: 64},
	{Name: "512-readonly", BlockSize: 512, Blocks: 512, ReadOnly: true},
	{Name: "4096-readonly", BlockSize: 4096, Blocks: 64, ReadOnly: true},
	{Name: "512-slice", BlockSize: 512, Blocks: 300, SliceStart: 100},
	{Name: "4096-slice", BlockSize: 4096, Blocks: 40, SliceStart: 7},
}

// H is one case's harness: a fresh device and target.
type H struct {
	T      *testing.T
	Cfg    Config
	Target Target
	Mem    *Memory // the whole backing memory (larger than the device for slices)
	Dev    storage.Device
	Nexus  scsi.Nexus
	BS     int
	// refusals: the kinds of command the target's transport refuses.
	refusals Refusals
}

// Exec runs one command and returns its result; a transport must
// deliver it.
func (h *H) Exec(cdb []byte, dir scsi.Direction, data []byte) *scsi.Result {
	h.T.Helper()
	res := new(scsi.Result)
	cmd := &scsi.Command{CDB: cdb, Dir: dir, Data: data}
	if tr, ok := h.Target.(Transport); ok {
		if err := tr.Deliver(h.Nexus, cmd, res); err != nil {
			h.T.Fatalf("%s: the transport refused it: %v", opName(cdb), err)
		}
	} else {
		h.Target.Execute(h.Nexus, cmd, res)
	}
	if res.SenseLen < 0 || res.SenseLen > scsi.MaxSense || res.Resid < 0 || res.Resid > len(data) {
		h.T.Fatalf("%s: malformed result: sense len %d, resid %d of %d", opName(cdb), res.SenseLen, res.Resid, len(data))
	}
	return res
}

// Refusable runs a command of a kind a transport may refuse. Through a
// transport that refuses the kind, the command must be refused as the
// run's Refusals say, and Refusable returns nil: the engine never saw it.
// Otherwise it is Exec, and returns the engine's answer for the case to
// check.
func (h *H) Refusable(kind Refusable, cdb []byte, dir scsi.Direction, data []byte) *scsi.Result {
	h.T.Helper()
	check, ok := h.refusals[kind]
	if !ok {
		return h.Exec(cdb, dir, data)
	}
	err := h.Target.(Transport).Deliver(h.Nexus, &scsi.Command{CDB: cdb, Dir: dir, Data: data}, new(scsi.Result))
	if err == nil {
		h.T.Fatalf("%s (% x, %s): delivered, but the transport refuses it", kind, cdb, dir)
	}
	if bad := check(err); bad != nil {
		h.T.Fatalf("%s (% x, %s): refused with %v: %v", kind, cdb, dir, err, bad)
	}
	return nil
}

// opName names a CDB's operation, or says there is none.
func opName(cdb []byte) string {
	if len(cdb) == 0 {
		return "empty CDB"
	}
	return scsi.OpName(cdb[0])
}

// In runs a data-in command with a buffer of n bytes.
func (h *H) In(cdb []byte, n int) (*scsi.Result, []byte) {
	buf := make([]byte, n)
	return h.Exec(cdb, scsi.DirFromDevice, buf), buf
}

// Out runs a data-out command.
func (h *H) Out(cdb []byte, data []byte) *scsi.Result {
	return h.Exec(cdb, scsi.DirToDevice, data)
}

// Good fails the case unless res is GOOD.
func (h *H) Good(res *scsi.Result) {
	h.T.Helper()
	if res.Status != scsi.StatusGood {
		s, _, _ := scsi.ParseSense(res.SenseBytes())
		h.T.Fatalf("status %s, sense %x/%02x/%02x, want GOOD", scsi.StatusName(res.Status), s.Key, s.ASC, s.ASCQ)
	}
}

// Check fails the case unless res is CHECK CONDITION with code c, and
// returns the decoded sense.
func (h *H) Check(res *scsi.Result, c scsi.Code) scsi.Sense {
	h.T.Helper()
	if res.Status != scsi.StatusCheckCondition {
		h.T.Fatalf("status %s, want CHECK CONDITION %x/%02x/%02x", scsi.StatusName(res.Status), c.Key, c.ASC, c.ASCQ)
	}
	s, _, ok := scsi.ParseSense(res.SenseBytes())
	if !ok {
		h.T.Fatalf("unparseable sense % x", res.SenseBytes())
	}
	if s.Code != c {
		h.T.Fatalf("sense %x/%02x/%02x, want %x/%02x/%02x", s.Key, s.ASC, s.ASCQ, c.Key, c.ASC, c.ASCQ)
	}
	return s
}

// Case is one conformance behaviour. Writes marks cases that need a
// writable device; ReadOnly marks cases only meaningful on a read-only one.
type Case struct {
	Name     string
	Writes   bool
	ReadOnly bool
	Run      func(h *H)
}

// Run runs every case against every config.
func Run(t *testing.T, newTarget NewTarget) { RunTransport(t, newTarget, nil) }

// Refusable is a kind of command that a transport may refuse itself,
// before any engine sees it: a case sends such a command with
// H.Refusable, naming its kind.
type Refusable int

const (
	// NoCDB: a command with an empty CDB.
	NoCDB Refusable = iota + 1
	// ShortCDB: a CDB of 1 to 5 bytes (no SCSI command is shorter than 6).
	ShortCDB
	// AgainstDirection: data moving the other way from what the CDB's
	// operation moves (READ with data-out).
	AgainstDirection
)

func (k Refusable) String() string {
	switch k {
	case NoCDB:
		return "no CDB"
	case ShortCDB:
		return "a CDB under 6 bytes"
	case AgainstDirection:
		return "data against the CDB's direction"
	}
	return fmt.Sprintf("Refusable(%d)", int(k))
}

// Transport is a Target behind a transport that refuses some commands
// itself, before any engine sees them (vscsiif's backend refuses a CDB
// under 6 bytes, and data moving against its CDB's direction, with host
// status ERROR, as Linux's scsiback does). Deliver is Execute that says
// so: for a command the transport refused it returns that refusal (what
// the transport answered) and leaves res alone.
type Transport interface {
	Target
	Deliver(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) error
}

// Refusals says which kinds of command a transport refuses, and how: each
// kind's function checks the refusal Deliver returned, nil when it is
// exactly the transport's answer for that kind.
type Refusals map[Refusable]func(refusal error) error

// RunTransport is Run through a transport (newTarget builds a Transport
// when refusals is not empty). A command of a kind in refusals must be
// refused, with the refusal its function accepts, and the case goes on
// without the engine's answer to it; every other command, of a
// refusable kind or not, must be delivered and is held to the engine's
// answer.
func RunTransport(t *testing.T, newTarget NewTarget, refusals Refusals) {
	for _, cfg := range Configs {
		t.Run(cfg.Name, func(t *testing.T) {
			for _, c := range Cases {
				if (c.Writes && cfg.ReadOnly) || (c.ReadOnly && !cfg.ReadOnly) {
					continue // not applicable to this shape, by construction
				}
				t.Run(c.Name, func(t *testing.T) { runCase(t, cfg, c, newTarget, refusals) })
			}
		})
	}
}

func runCase(t *testing.T, cfg Config, c Case, newTarget NewTarget, refusals Refusals) {
	size := cfg.Blocks * int64(cfg.BlockSize)
	start := cfg.SliceStart * int64(cfg.BlockSize)
	total := size + 2*start
	mem := NewMemory(storage.Info{
		Size: total, LogicalBlockSize: cfg.BlockSize, PhysicalBlockSize: 4096,
		ReadOnly: cfg.ReadOnly, RotationRate: 1, CanFlush: true, CanDiscard: true,
		DiscardZeroes: true, DiscardGranularity: 4096,
	})
	// Recognisable content outside the slice: it must never change.
	content := make([]byte, total)
	fill(content, 0xa5)
	inner := content[start:][:size]
	for i := range inner {
		inner[i] = byte(i * 7 / int(cfg.BlockSize))
	}
	if _, err := mem.mem.WriteAt(content, 0); err != nil {
		t.Fatal(err)
	}
	var dev storage.Device = mem
	if cfg.SliceStart > 0 {
		dev = &storage.Slice{Dev: mem, Offset: start, Size: size}
	}
	guard := &storagetest.Guard{Device: dev}
	h := &H{T: t, Cfg: cfg, Mem: mem, Dev: guard, Nexus: scsi.Nexus{Dom: 1, Device: "xvda"}, BS: int(cfg.BlockSize), refusals: refusals}
	h.Target = newTarget(t, guard)
	if _, ok := h.Target.(Transport); !ok && len(refusals) > 0 {
		t.Fatalf("refusals given for a %T, which is no Transport", h.Target)
	}
	// Consume the power-on unit attention so cases start clean.
	h.Exec([]byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0}, scsi.DirNone, nil)
	before := mem.Contents()
	c.Run(h)
	if v := guard.Violations(); len(v) > 0 {
		t.Errorf("accesses outside the device: %v", v)
	}
	after := mem.Contents()
	if !bytes.Equal(before[:start], after[:start]) || !bytes.Equal(before[start+size:], after[start+size:]) {
		t.Errorf("bytes outside the slice changed")
	}
}

// CDB builders.

func Read10(lba uint32, n uint16) []byte  { return rw10(scsi.OpRead10, lba, n) }
func Write10(lba uint32, n uint16) []byte { return rw10(scsi.OpWrite10, lba, n) }

func rw10(op byte, lba uint32, n uint16) []byte {
	c := make([]byte, 10)
	c[0] = op
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], n)
	return c
}

func Read16(lba uint64, n uint32) []byte  { return rw16(scsi.OpRead16, lba, n) }
func Write16(lba uint64, n uint32) []byte { return rw16(scsi.OpWrite16, lba, n) }

func rw16(op byte, lba uint64, n uint32) []byte {
	c := make([]byte, 16)
	c[0] = op
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], n)
	return c
}

func rw12(op byte, lba, n uint32) []byte {
	c := make([]byte, 12)
	c[0] = op
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint32(c[6:], n)
	return c
}

func rw6(op byte, lba uint32, n byte) []byte {
	return []byte{op, byte(lba>>16) & 0x1f, byte(lba >> 8), byte(lba), n, 0}
}

// Inquiry builds an INQUIRY CDB.
func Inquiry(evpd bool, page byte, alloc uint16) []byte {
	c := []byte{scsi.OpInquiry, 0, page, byte(alloc >> 8), byte(alloc), 0}
	if evpd {
		c[1] = 1
	}
	return c
}

func readCapacity16(alloc uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1] = scsi.OpServiceActionIn16, scsi.SAReadCapacity16
	binary.BigEndian.PutUint32(c[10:], alloc)
	return c
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*31)
	}
	return b
}

func (h *H) blocks() uint64 { return uint64(h.Cfg.Blocks) }

// content returns the device's current bytes [off, off+n) as the guest sees them.
func (h *H) content(off, n int) []byte {
	b := make([]byte, n)
	if _, err := h.Mem.mem.ReadAt(b, h.Cfg.SliceStart*int64(h.BS)+int64(off)); err != nil {
		h.T.Fatalf("reading the device past the target: %v", err)
	}
	return b
}

func fill(b []byte, v byte) {
	if len(b) == 0 {
		return
	}
	b[0] = v
	for n := 1; n < len(b); n *= 2 {
		copy(b[n:], b[:n])
	}
}
