package pr

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/xenblk/xenblk/scsi"
)

var nexuses = map[string]scsi.Nexus{
	"A": {Dom: 1, Device: "/local/domain/0/backend/xenblk/1/51712"},
	"B": {Dom: 2, Device: "/local/domain/0/backend/xenblk/2/51712"},
	"C": {Dom: 3, Device: "/local/domain/0/backend/xenblk/3/51712"},
}

var typeNames = map[string]Type{"WE": 1, "EA": 3, "WERO": 5, "EARO": 6, "WEAR": 7, "EAAR": 8}

func typeName(t Type) string {
	for k, v := range typeNames {
		if v == t {
			return k
		}
	}
	return fmt.Sprint(t)
}

var outActions = map[string]OutAction{"register": 0, "reserve": 1, "release": 2, "clear": 3, "preempt": 4,
	"preempt-abort": 5, "register-ignore": 6, "register-move": 7}

func prOut(sa OutAction, typ Type, key, saKey uint64, aptpl bool) (cdb, param []byte) {
	cdb = make([]byte, 10)
	cdb[0], cdb[1], cdb[2] = scsi.OpPersistentReserveOut, byte(sa), byte(typ)
	binary.BigEndian.PutUint32(cdb[5:], 24)
	param = make([]byte, 24)
	binary.BigEndian.PutUint64(param, key)
	binary.BigEndian.PutUint64(param[8:], saKey)
	if aptpl {
		param[20] = 1
	}
	return
}

// registerMove builds a REGISTER AND MOVE from a transcript line:
// key, sakey, dest (a nexus letter, or tid=raw for a bad TransportID name),
// rtpi (default 1), unreg, aptpl, scope, and tidlen/plen to override the
// lengths.
func registerMove(d *datadriven.TestData, num func(string) uint64, arg func(string) string) (cdb, param []byte) {
	var tid []byte
	switch {
	case arg("tid") != "":
		tid = make([]byte, 24)
		tid[0], tid[3] = 5, 20
		copy(tid[4:], arg("tid"))
	case arg("dest") != "":
		tid = TransportID(nexuses[arg("dest")])
	}
	param = make([]byte, 24, 24+len(tid))
	binary.BigEndian.PutUint64(param, num("key"))
	binary.BigEndian.PutUint64(param[8:], num("sakey"))
	if arg("unreg") == "1" {
		param[17] |= 2
	}
	if arg("aptpl") == "1" {
		param[17] |= 1
	}
	rtpi := uint16(1)
	if arg("rtpi") != "" {
		rtpi = uint16(num("rtpi"))
	}
	binary.BigEndian.PutUint16(param[18:], rtpi)
	tidLen := uint32(len(tid))
	if arg("tidlen") != "" {
		tidLen = uint32(num("tidlen"))
	}
	binary.BigEndian.PutUint32(param[20:], tidLen)
	param = append(param, tid...)
	plen := uint32(len(param))
	if arg("plen") != "" {
		plen = uint32(num("plen"))
	}
	cdb = make([]byte, 10)
	cdb[0], cdb[1], cdb[2] = scsi.OpPersistentReserveOut, 7, byte(typeNames[arg("type")])|uint8(num("scope"))<<4
	binary.BigEndian.PutUint32(cdb[5:], plen)
	return cdb, param
}

func prIn(sa byte, alloc uint16) []byte {
	cdb := make([]byte, 10)
	cdb[0], cdb[1] = scsi.OpPersistentReserveIn, sa
	binary.BigEndian.PutUint16(cdb[7:], alloc)
	return cdb
}

func describe(res *scsi.Result) string {
	switch res.Status {
	case scsi.StatusGood:
		return "GOOD"
	case scsi.StatusReservationConflict:
		return "RESERVATION CONFLICT"
	}
	s, _, _ := scsi.ParseSense(res.SenseBytes())
	return fmt.Sprintf("CHECK CONDITION %02x/%02x/%02x", s.Key, s.ASC, s.ASCQ)
}

func TestTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		store := NewMemoryStore()
		u, _ := Open(store, "lu", nil)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(k string) string {
				for _, a := range d.CmdArgs {
					if a.Key == k && len(a.Vals) > 0 {
						return a.Vals[0]
					}
				}
				return ""
			}
			num := func(k string) uint64 {
				v, _ := strconv.ParseUint(arg(k), 0, 64)
				return v
			}
			n := nexuses[arg("nexus")]
			exec := func(cdb []byte, dir scsi.Direction, data []byte) *scsi.Result {
				var res scsi.Result
				u.Execute(n, &scsi.Command{CDB: cdb, Dir: dir, Data: data}, &res, false)
				return &res
			}
			switch d.Cmd {
			case "restart":
				var err error
				u, err = Open(store, "lu", nil)
				if err != nil {
					return err.Error()
				}
				st := u.State()
				return fmt.Sprintf("generation=%d registrations=%d reserved=%v", st.Generation, len(st.Registrations), st.Reserved)
			case "read-keys":
				buf := make([]byte, 64)
				res := exec(prIn(0, 64), scsi.DirFromDevice, buf)
				if res.Status != scsi.StatusGood {
					return describe(res)
				}
				var keys []string
				for i := 0; i < int(binary.BigEndian.Uint32(buf[4:]))/8; i++ {
					keys = append(keys, fmt.Sprintf("%#x", binary.BigEndian.Uint64(buf[8+8*i:])))
				}
				return fmt.Sprintf("generation=%d keys=[%s]", binary.BigEndian.Uint32(buf), strings.Join(keys, " "))
			case "read-reservation":
				buf := make([]byte, 24)
				res := exec(prIn(1, 24), scsi.DirFromDevice, buf)
				if res.Status != scsi.StatusGood {
					return describe(res)
				}
				if binary.BigEndian.Uint32(buf[4:]) == 0 {
					return fmt.Sprintf("generation=%d no reservation", binary.BigEndian.Uint32(buf))
				}
				return fmt.Sprintf("generation=%d key=%#x type=%s", binary.BigEndian.Uint32(buf), binary.BigEndian.Uint64(buf[8:]), typeName(Type(buf[21]&0xf)))
			case "capabilities":
				buf := make([]byte, 8)
				exec(prIn(2, 8), scsi.DirFromDevice, buf)
				return fmt.Sprintf("% x", buf)
			case "full-status":
				buf := make([]byte, 512)
				res := exec(prIn(3, 512), scsi.DirFromDevice, buf)
				if res.Status != scsi.StatusGood {
					return describe(res)
				}
				var b strings.Builder
				fmt.Fprintf(&b, "generation=%d\n", binary.BigEndian.Uint32(buf))
				end := 8 + int(binary.BigEndian.Uint32(buf[4:]))
				for off := 8; off < end; {
					tl := int(binary.BigEndian.Uint32(buf[off+20:]))
					name := strings.TrimRight(string(buf[off+28:off+24+tl]), "\x00")
					fmt.Fprintf(&b, "key=%#x holder=%v type=%d rtpi=%d %s\n", binary.BigEndian.Uint64(buf[off:]), buf[off+12]&1 == 1, buf[off+13],
						binary.BigEndian.Uint16(buf[off+18:]), name)
					off += 24 + tl
				}
				return b.String()
			case "access":
				var cdb []byte
				switch arg("op") {
				case "read":
					cdb = []byte{scsi.OpRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}
				case "write":
					cdb = []byte{scsi.OpWrite10, 0, 0, 0, 0, 0, 0, 0, 1, 0}
				case "inquiry":
					cdb = []byte{scsi.OpInquiry, 0, 0, 0, 36, 0}
				case "tur":
					cdb = []byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0}
				}
				if u.Conflict(n, cdb) {
					return "RESERVATION CONFLICT"
				}
				return "allowed"
			case "ua":
				var out []string
				for {
					c, ok := u.UnitAttention(n)
					if !ok {
						break
					}
					out = append(out, fmt.Sprintf("%02x/%02x", c.ASC, c.ASCQ))
				}
				if len(out) == 0 {
					return "none"
				}
				return strings.Join(out, " ")
			case "reserve6", "release6":
				cdb := []byte{scsi.OpReserve6, 0, 0, 0, 0, 0}
				if d.Cmd == "release6" {
					cdb[0] = scsi.OpRelease6
				}
				return describe(exec(cdb, scsi.DirNone, nil))
			}
			if d.Cmd == "register-move" {
				cdb, param := registerMove(d, num, arg)
				res := exec(cdb, scsi.DirToDevice, param)
				return fmt.Sprintf("%s generation=%d", describe(res), u.State().Generation)
			}
			sa, ok := outActions[d.Cmd]
			if !ok {
				d.Fatalf(t, "unknown command %s", d.Cmd)
			}
			cdb, param := prOut(sa, typeNames[arg("type")], num("key"), num("sakey"), arg("aptpl") == "1")
			res := exec(cdb, scsi.DirToDevice, param)
			return fmt.Sprintf("%s generation=%d", describe(res), u.State().Generation)
		})
	})
}

// The conflict table, exhaustively: every type, from the holder, another
// registrant and a non-registrant, for a read and a write.
func TestConflictTable(t *testing.T) {
	want := map[string][3][2]bool{ // [holder, registrant, other][read, write] = conflict
		"WE":   {{false, false}, {false, true}, {false, true}},
		"EA":   {{false, false}, {true, true}, {true, true}},
		"WERO": {{false, false}, {false, false}, {false, true}},
		"EARO": {{false, false}, {false, false}, {true, true}},
		"WEAR": {{false, false}, {false, false}, {false, true}},
		"EAAR": {{false, false}, {false, false}, {true, true}},
	}
	read := []byte{scsi.OpRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	write := []byte{scsi.OpWrite10, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	inq := []byte{scsi.OpInquiry, 0, 0, 0, 36, 0}
	for name, typ := range typeNames {
		s := State{Registrations: []Registration{{nexuses["A"], 1}, {nexuses["B"], 2}}, Reserved: true, Type: typ, Holder: nexuses["A"]}
		for i, who := range []string{"A", "B", "C"} {
			for j, cdb := range [][]byte{read, write} {
				if got := s.Conflict(nexuses[who], cdb); got != want[name][i][j] {
					t.Errorf("%s: nexus %s op %#x: conflict=%v, want %v", name, who, cdb[0], got, want[name][i][j])
				}
			}
			if s.Conflict(nexuses[who], inq) {
				t.Errorf("%s: INQUIRY from %s conflicts", name, who)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := Encode(State{Generation: 3, Registrations: []Registration{{nexuses["A"], 7}}, Reserved: true, Type: 1, Holder: nexuses["A"], APTPL: true})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func FuzzExecute(f *testing.F) {
	f.Add([]byte{0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0}, make([]byte, 24), uint8(0))
	f.Add([]byte{0x5e, 3, 0, 0, 0, 0, 0, 1, 0, 0}, make([]byte, 256), uint8(1))
	move := make([]byte, 24)
	move[19] = 1
	move = append(move, TransportID(nexuses["B"])...)
	move[23] = byte(len(move) - 24)
	f.Add([]byte{0x5f, 7, 0, 0, 0, 0, 0, 0, byte(len(move)), 0}, move, uint8(0))
	f.Fuzz(func(t *testing.T, cdb, data []byte, who uint8) {
		if len(cdb) < 10 {
			return
		}
		u, _ := Open(NewMemoryStore(), "lu", nil)
		n := []scsi.Nexus{nexuses["A"], nexuses["B"]}[who%2]
		var res scsi.Result
		u.Execute(n, &scsi.Command{CDB: cdb, Dir: scsi.DirToDevice, Data: data}, &res, who&2 != 0)
		if res.Resid < 0 || res.Resid > len(data) {
			t.Fatalf("resid %d of %d", res.Resid, len(data))
		}
		u.Conflict(n, cdb)
	})
}

func TestTransportIDRoundTrip(t *testing.T) {
	for _, n := range []scsi.Nexus{nexuses["A"], {Dom: 0, Device: "d"}, {Dom: 65535, Device: "/local/domain/0/backend/vbd/65535/268441856"},
		{Initiator: "6f1c0a52-7d4e-4f0b-9a51-0c2b4d7e9f10", Device: "51712"}, {Initiator: "iqn.2026-12.org.example:node-a", Device: "51728"}} {
		tid := TransportID(n)
		if len(tid) < 24 || len(tid)%4 != 0 {
			t.Errorf("%v: TransportID of %d bytes", n, len(tid))
		}
		got, ok := ParseTransportID(tid)
		if !ok || got != n {
			t.Errorf("ParseTransportID(TransportID(%v)) = %v, %v", n, got, ok)
		}
	}
	bad := map[string][]byte{
		"short":       TransportID(nexuses["A"])[:20],
		"fc protocol": append([]byte{0x00}, TransportID(nexuses["A"])[1:]...),
		"format 1":    append([]byte{0x05, 0x40}, TransportID(nexuses["A"])[2:]...),
		"no NUL":      append([]byte{5, 0, 0, 20}, "xen:dom1:0123456789ab"[:20]...),
		"junk tail":   append([]byte{5, 0, 0, 20}, "xen:dom1:d\x00\x00x\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"...),
	}
	bad["dom overflow"] = append([]byte{5, 0, 0, 20}, "xen:dom70000:d\x00\x00\x00\x00\x00\x00"...)
	bad["leading zero"] = append([]byte{5, 0, 0, 20}, "xen:dom01:d\x00\x00\x00\x00\x00\x00\x00\x00\x00"...)
	bad["no device"] = append([]byte{5, 0, 0, 20}, "xen:dom1:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"...)
	bad["no initiator"] = append([]byte{5, 0, 0, 20}, "xen:vm::51712\x00\x00\x00\x00\x00\x00\x00"...)
	bad["named, no device"] = append([]byte{5, 0, 0, 20}, "xen:vm:node-a:\x00\x00\x00\x00\x00\x00"...)
	for name, b := range bad {
		if n, ok := ParseTransportID(b); ok {
			t.Errorf("%s: parsed as %v", name, n)
		}
	}
}

func FuzzParseTransportID(f *testing.F) {
	f.Add(TransportID(nexuses["A"]))
	f.Add(TransportID(scsi.Nexus{Dom: 7, Device: "x"}))
	f.Add(append([]byte{5, 0, 0, 20}, "xen:dom70000:d\x00\x00\x00\x00\x00\x00"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := ParseTransportID(b)
		if !ok {
			return
		}
		// Whatever parses names a nexus whose canonical TransportID
		// parses back to the same nexus.
		again, ok := ParseTransportID(TransportID(n))
		if !ok || again != n {
			t.Fatalf("%q parsed as %v; its canonical form gives %v, %v", b, n, again, ok)
		}
	})
}
