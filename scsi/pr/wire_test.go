package pr

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"

	"github.com/xenblk/xenblk/scsi"
)

func TestTypeNames(t *testing.T) {
	for _, c := range []struct {
		t            Type
		name, abbrev string
	}{
		{TypeWriteExclusive, "Write Exclusive", "we"},
		{TypeExclusiveAccess, "Exclusive Access", "ea"},
		{TypeWriteExclusiveRegOnly, "Write Exclusive, registrants only", "we-ro"},
		{TypeExclusiveAccessRegOnly, "Exclusive Access, registrants only", "ea-ro"},
		{TypeWriteExclusiveAllRegs, "Write Exclusive, all registrants", "we-ar"},
		{TypeExclusiveAccessAllRegs, "Exclusive Access, all registrants", "ea-ar"},
	} {
		if c.t.String() != c.name || c.t.Abbrev() != c.abbrev || !c.t.Valid() {
			t.Errorf("type %d: %q %q %v, want %q %q", c.t, c.t.String(), c.t.Abbrev(), c.t.Valid(), c.name, c.abbrev)
		}
		if got, ok := ParseTypeAbbrev(c.abbrev); !ok || got != c.t {
			t.Errorf("ParseTypeAbbrev(%q) = %d, %v", c.abbrev, got, ok)
		}
	}
	if got, ok := ParseTypeAbbrev("WE-RO"); !ok || got != TypeWriteExclusiveRegOnly {
		t.Errorf("upper case: %d %v", got, ok)
	}
	if _, ok := ParseTypeAbbrev("wero"); ok {
		t.Error("an unknown name parsed")
	}
	for _, bad := range []Type{0, 2, 4, 9, 15} {
		if bad.Valid() || bad.String() != fmt.Sprintf("obsolete [%d]", bad) || bad.Abbrev() != fmt.Sprintf("type-%d", bad) {
			t.Errorf("type %d: valid=%v %q %q", bad, bad.Valid(), bad.String(), bad.Abbrev())
		}
	}
	if got := TypeAbbrevs(); !slices.Equal(got, []string{"we", "ea", "we-ro", "ea-ro", "we-ar", "ea-ar"}) {
		t.Errorf("TypeAbbrevs = %q", got)
	}
}

func TestActionNames(t *testing.T) {
	if got := OutRegisterAndIgnore.String(); got != "register and ignore existing key" {
		t.Errorf("OutRegisterAndIgnore: %q", got)
	}
	if got := OutPreemptAndAbort.String(); got != "preempt and abort" {
		t.Errorf("OutPreemptAndAbort: %q", got)
	}
	if got := OutAction(0x1f).String(); got != "service action 0x1f" {
		t.Errorf("unknown out: %q", got)
	}
	if got := InReadFullStatus.String(); got != "read full status" {
		t.Errorf("InReadFullStatus: %q", got)
	}
	if got := InAction(4).String(); got != "service action 0x04" {
		t.Errorf("unknown in: %q", got)
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCDBs pins the bytes of both CDBs (SPC-4 6.16.1, 6.17.1) and their
// decoding.
func TestCDBs(t *testing.T) {
	out := OutCommand{Action: OutPreemptAndAbort, Type: TypeExclusiveAccessRegOnly, ParamLen: 24}
	cdb := out.CDB()
	if want := unhex(t, "5f0506000000000018"+"00"); !bytes.Equal(cdb[:], want) {
		t.Errorf("PR OUT CDB % x, want % x", cdb, want)
	}
	if got := ParseOutCDB(cdb[:]); got != out {
		t.Errorf("ParseOutCDB = %+v, want %+v", got, out)
	}
	if got := ParseOutCDB(unhex(t, "5fe7150000000000ff00")); got != (OutCommand{Action: OutRegisterAndMove, Scope: 1, Type: 5, ParamLen: 0xff}) {
		t.Errorf("ParseOutCDB ignores the high bits and reads the scope: %+v", got)
	}
	in := InCommand{Action: InReadFullStatus, AllocLen: 0x1234}
	cdb = in.CDB()
	if want := unhex(t, "5e030000000000123400"); !bytes.Equal(cdb[:], want) {
		t.Errorf("PR IN CDB % x, want % x", cdb, want)
	}
	if got := ParseInCDB(cdb[:]); got != in {
		t.Errorf("ParseInCDB = %+v, want %+v", got, in)
	}
}

// TestOutParams pins both parameter lists (SPC-4 6.17.3, 6.17.4).
func TestOutParams(t *testing.T) {
	basic := OutParams{Key: 0x0102030405060708, SAKey: 0xa, APTPL: true, AllTgPt: true}
	b := basic.Append(nil, OutRegister)
	if want := unhex(t, "0102030405060708"+"000000000000000a"+"00000000"+"05000000"); !bytes.Equal(b, want) {
		t.Errorf("basic list % x, want % x", b, want)
	}
	if got, ok := ParseOutParams(OutRegister, b); !ok || !equalParams(got, basic) {
		t.Errorf("ParseOutParams(basic) = %+v, %v", got, ok)
	}
	move := OutParams{Key: 1, SAKey: 2, APTPL: true, Unreg: true, RelativeTargetPort: RelativeTargetPort, TransportID: []byte{5, 0, 0, 4, 'x', 0, 0, 0}}
	b = move.Append(nil, OutRegisterAndMove)
	if want := unhex(t, "0000000000000001"+"0000000000000002"+"0003"+"0001"+"00000008"+"05000004"+"78000000"); !bytes.Equal(b, want) {
		t.Errorf("move list % x, want % x", b, want)
	}
	move.TransportIDLen = 8
	if got, ok := ParseOutParams(OutRegisterAndMove, b); !ok || !equalParams(got, move) {
		t.Errorf("ParseOutParams(move) = %+v, %v", got, ok)
	}
	if _, ok := ParseOutParams(OutRegister, b[:23]); ok {
		t.Error("a 23-byte list parsed")
	}
}

func equalParams(a, b OutParams) bool {
	return a.Key == b.Key && a.SAKey == b.SAKey && a.APTPL == b.APTPL && a.SpecIPT == b.SpecIPT && a.AllTgPt == b.AllTgPt &&
		a.Unreg == b.Unreg && a.RelativeTargetPort == b.RelativeTargetPort && a.TransportIDLen == b.TransportIDLen &&
		bytes.Equal(a.TransportID, b.TransportID)
}

// TestInDataReadsTheEngine decodes what the engine answers to each PR IN
// service action and finds the state it was asked about.
func TestInDataReadsTheEngine(t *testing.T) {
	a, b := nexuses["A"], nexuses["B"]
	s := State{Generation: 7, Registrations: []Registration{{a, 0xa}, {b, 0xb}}, Reserved: true, Type: TypeWriteExclusiveRegOnly, Holder: b, APTPL: true}
	in := func(sa InAction) InData {
		cdb := InCommand{Action: sa, AllocLen: 0xffff}.CDB()
		out := s.In(a, cdb[:])
		d, ok := ParseInData(out.Data)
		if out.Status != scsi.StatusGood || !ok || d.Truncated() || d.Generation != 7 {
			t.Fatalf("%v: %+v %+v %v", sa, out, d, ok)
		}
		return d
	}
	if keys := in(InReadKeys).AppendKeys(nil); !slices.Equal(keys, []uint64{0xa, 0xb}) {
		t.Errorf("keys %x", keys)
	}
	if r, ok := in(InReadReservation).Reservation(); !ok || r != (Reservation{Key: 0xb, Type: TypeWriteExclusiveRegOnly}) {
		t.Errorf("reservation %+v %v", r, ok)
	}
	body := in(InReadFullStatus).Body
	var got []StatusDescriptor
	for len(body) > 0 {
		sd, n, ok := ParseStatusDescriptor(body)
		if !ok {
			t.Fatalf("full status: a descriptor does not parse: % x", body)
		}
		got = append(got, sd)
		body = body[n:]
	}
	if len(got) != 2 || got[0].Key != 0xa || got[0].Holder || got[1].Key != 0xb || !got[1].Holder ||
		got[1].Type != TypeWriteExclusiveRegOnly || got[0].RelativeTargetPort != RelativeTargetPort {
		t.Fatalf("full status %+v", got)
	}
	if n, ok := ParseTransportID(got[1].TransportID); !ok || n != b {
		t.Errorf("holder's TransportID names %+v %v", n, ok)
	}
	cdb := InCommand{Action: InReportCapabilities, AllocLen: 8}.CDB()
	c, ok := ParseCapabilities(s.In(a, cdb[:]).Data)
	if !ok || !c.CRH || !c.PTPLC || !c.TMV || !c.PTPLA || c.SIPC || c.ATPC {
		t.Errorf("capabilities %+v", c)
	}
	for _, e := range types {
		if !c.Supports(e.t) {
			t.Errorf("capabilities: type %v not in the mask %#04x", e.t, c.TypeMask)
		}
	}
	if c.Supports(2) || c.Supports(4) {
		t.Errorf("capabilities: an obsolete type in the mask %#04x", c.TypeMask)
	}
}

func TestInDataShortAndTruncated(t *testing.T) {
	if _, ok := ParseInData(make([]byte, 7)); ok {
		t.Error("a 7-byte header parsed")
	}
	// Declares two keys, returns one and a half.
	d, ok := ParseInData(unhex(t, "00000001"+"00000010"+"000000000000000a"+"0000"))
	if !ok || !d.Truncated() || !slices.Equal(d.AppendKeys(nil), []uint64{0xa}) {
		t.Errorf("truncated keys: %+v %v", d, ok)
	}
	// Declares 8 bytes of a 16-byte descriptor: no reservation.
	d, _ = ParseInData(unhex(t, "00000001"+"00000008"+"000000000000000a"+"0000000000000005"))
	if _, ok := d.Reservation(); ok || d.Truncated() {
		t.Errorf("a reservation from 8 declared bytes: %+v", d)
	}
	if _, _, ok := ParseStatusDescriptor(append(make([]byte, 20), 0, 0, 0, 1)); ok {
		t.Error("a descriptor declaring a TransportID it does not hold parsed")
	}
}

// FuzzInData: the PR IN decoders never panic, and what they return lies
// within the data and its declared length.
func FuzzInData(f *testing.F) {
	f.Add(unhex(f, "00000001"+"00000010"+"000000000000000a"+"000000000000000b"))
	f.Add(append(unhex(f, "00000001"+"00000030"), appendStatusDescriptor(nil, &StatusDescriptor{Key: 1, Holder: true, Type: 5, TransportID: TransportID(nexuses["A"])})...))
	f.Add(unhex(f, "0008"+"11"+"81"+"ea01"+"0000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseCapabilities(b)
		d, ok := ParseInData(b)
		if !ok {
			return
		}
		if uint64(len(d.Body)) > uint64(d.Length) || len(d.Body) > len(b)-8 {
			t.Fatalf("body of %d bytes from %d declared, %d given", len(d.Body), d.Length, len(b))
		}
		if keys := d.AppendKeys(nil); len(keys) != len(d.Body)/8 {
			t.Fatalf("%d keys from %d bytes", len(keys), len(d.Body))
		}
		d.Reservation()
		for body := d.Body; ; {
			sd, n, ok := ParseStatusDescriptor(body)
			if !ok {
				break
			}
			if n < statusDescriptorLen || n > len(body) || len(sd.TransportID) != n-statusDescriptorLen {
				t.Fatalf("descriptor of %d bytes from %d", n, len(body))
			}
			body = body[n:]
		}
	})
}

// FuzzOutParams: a parameter list parses without a panic, and a parsed
// list encodes back to its bytes but for the reserved bits.
func FuzzOutParams(f *testing.F) {
	basic := OutParams{Key: 1, SAKey: 2, APTPL: true}
	f.Add(basic.Append(nil, OutRegister), uint8(OutRegister))
	move := OutParams{Key: 1, SAKey: 2, Unreg: true, RelativeTargetPort: 1, TransportID: TransportID(nexuses["B"])}
	f.Add(move.Append(nil, OutRegisterAndMove), uint8(OutRegisterAndMove))
	f.Fuzz(func(t *testing.T, b []byte, sa uint8) {
		a := OutAction(sa & 0x1f)
		p, ok := ParseOutParams(a, b)
		if !ok {
			return
		}
		again, ok := ParseOutParams(a, p.Append(nil, a))
		if a == OutRegisterAndMove {
			again.TransportIDLen = p.TransportIDLen // Append writes the length it carries
		}
		if !ok || !equalParams(again, p) {
			t.Fatalf("%+v encodes to a list that parses as %+v", p, again)
		}
	})
}
