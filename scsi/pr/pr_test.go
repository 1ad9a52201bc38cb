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

var typeNames = map[string]uint8{"WE": 1, "EA": 3, "WERO": 5, "EARO": 6, "WEAR": 7, "EAAR": 8}

func typeName(t uint8) string {
	for k, v := range typeNames {
		if v == t {
			return k
		}
	}
	return fmt.Sprint(t)
}

var outActions = map[string]byte{"register": 0, "reserve": 1, "release": 2, "clear": 3, "preempt": 4,
	"preempt-abort": 5, "register-ignore": 6, "register-move": 7}

func prOut(sa byte, typ uint8, key, saKey uint64, aptpl bool) (cdb, param []byte) {
	cdb = make([]byte, 10)
	cdb[0], cdb[1], cdb[2] = scsi.OpPersistentReserveOut, sa, typ
	binary.BigEndian.PutUint32(cdb[5:], 24)
	param = make([]byte, 24)
	binary.BigEndian.PutUint64(param, key)
	binary.BigEndian.PutUint64(param[8:], saKey)
	if aptpl {
		param[20] = 1
	}
	return
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
				return fmt.Sprintf("generation=%d key=%#x type=%s", binary.BigEndian.Uint32(buf), binary.BigEndian.Uint64(buf[8:]), typeName(buf[21]&0xf))
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
					fmt.Fprintf(&b, "key=%#x holder=%v type=%d %s\n", binary.BigEndian.Uint64(buf[off:]), buf[off+12]&1 == 1, buf[off+13], name)
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
