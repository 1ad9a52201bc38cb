package scsi

import (
	"strings"
	"testing"
)

func TestSenseRoundTripsInBothFormats(t *testing.T) {
	cases := []Sense{
		{Code: InvalidFieldInCDB, Field: FieldPointer{Valid: true, InCDB: true, BitValid: true, Bit: 4, Byte: 1}},
		{Code: Miscompare, InfoValid: true, Info: 517},
		{Code: LBAOutOfRange, InfoValid: true, Info: 1 << 40},
		{Code: PowerOnReset},
	}
	for _, want := range cases {
		for _, desc := range []bool{false, true} {
			var buf [MaxSense]byte
			for i := range buf {
				buf[i] = 0xee
			}
			n := want.Encode(buf[:], desc)
			got, gotDesc, ok := ParseSense(buf[:n])
			w := want
			if !desc && w.Info > 0xffffffff {
				w.InfoValid, w.Info = false, 0 // fixed format cannot carry it
			}
			if !ok || gotDesc != desc || got != w {
				t.Errorf("desc=%v: encoded % x, parsed %+v, want %+v", desc, buf[:n], got, w)
			}
			if !desc && (n != FixedSenseLen || buf[0]&0x7f != 0x70 || buf[7] != 10) {
				t.Errorf("fixed sense header % x", buf[:8])
			}
			if desc && (buf[0] != 0x72 || int(buf[7]) != n-8) {
				t.Errorf("descriptor sense header % x", buf[:8])
			}
		}
	}
}

func TestResultSetCheckZeroesStaleSense(t *testing.T) {
	var r Result
	for i := range r.Sense {
		r.Sense[i] = 0xff
	}
	r.SetCheck(Sense{Code: InvalidOpcode}, false)
	for i := r.SenseLen; i < MaxSense; i++ {
		if r.Sense[i] != 0 {
			t.Fatalf("stale byte %d = %02x after SetCheck", i, r.Sense[i])
		}
	}
}

func TestPolicyText(t *testing.T) {
	p, err := ParsePolicy("default,+0x3b,-0x42, -0x9e/0x12", EmulatedPolicy())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cdb  []byte
		want Decision
	}{
		{[]byte{0x28}, Allowed},
		{[]byte{0x3b}, Allowed},
		{[]byte{0x42}, DeniedOpcode},
		{[]byte{0x9e, 0x10}, Allowed},
		{[]byte{0x9e, 0x12}, DeniedServiceAct},
		{[]byte{0x9e, 0x1f}, DeniedServiceAct},
		{[]byte{0xc5}, DeniedOpcode},
		{nil, DeniedOpcode},
	} {
		if got := p.Allows(c.cdb); got != c.want {
			t.Errorf("% x: %v, want %v", c.cdb, got, c.want)
		}
	}
	again, err := ParsePolicy(p.String(), nil)
	if err != nil || again.String() != p.String() {
		t.Fatalf("String does not round-trip: %q -> %q (%v)", p.String(), again.String(), err)
	}
	for _, bad := range []string{"+0x100", "0x28", "+0x28/0x01", "+0x9e/0x20", "default"} {
		if _, err := ParsePolicy(bad, nil); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	var zero Policy
	if zero.Allows([]byte{0x00}) != DeniedOpcode {
		t.Errorf("the zero policy allows TEST UNIT READY")
	}
}

func TestPolicyFile(t *testing.T) {
	file := "# cluster disk\npassthrough\n+0x42   # unmap\n\n-0x3b\n"
	p, err := ReadPolicyFile(strings.NewReader(file), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Allows([]byte{0x42}) != Allowed || p.Allows([]byte{0x2a}) != Allowed || p.Allows([]byte{0x41}) != DeniedOpcode {
		t.Fatalf("policy file misread: %s", p)
	}
	if _, err := ReadPolicyFile(strings.NewReader("passthrough\n+zz\n"), nil); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("error %v does not name line 2", err)
	}
}

func TestPassthroughIsSubsetOfEmulated(t *testing.T) {
	pt, em := PassthroughPolicy(), EmulatedPolicy()
	for op := 0; op < 256; op++ {
		for sa := uint16(0); sa < 32; sa++ {
			if pt.AllowsAction(byte(op), sa) && !em.AllowsAction(byte(op), sa) {
				t.Errorf("pass-through allows %#02x/%#02x which emulation lacks", op, sa)
			}
		}
	}
	if pt.AllowsAction(OpWriteBuffer, 0) || pt.AllowsAction(OpModeSelect6, 0) {
		t.Errorf("pass-through allows firmware or mode changes")
	}
}

func FuzzParseSense(f *testing.F) {
	var buf [MaxSense]byte
	n := Sense{Code: Miscompare, InfoValid: true, Info: 9, Field: FieldPointer{Valid: true, Byte: 3}}.Encode(buf[:], true)
	f.Add(append([]byte(nil), buf[:n]...))
	n = Sense{Code: InvalidFieldInCDB, Field: FieldPointer{Valid: true, InCDB: true, Byte: 3}}.Encode(buf[:], false)
	f.Add(append([]byte(nil), buf[:n]...))
	f.Add([]byte{0x72, 5, 0x24, 0, 0, 0, 0, 0xff, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, desc, ok := ParseSense(b)
		if !ok {
			return
		}
		// What parses re-encodes to something that parses the same.
		var out [MaxSense]byte
		if !desc && s.Info > 0xffffffff {
			t.Fatalf("fixed sense produced a 64-bit INFORMATION")
		}
		m := s.Encode(out[:], desc)
		again, _, ok := ParseSense(out[:m])
		if !ok || again.Code != s.Code {
			t.Fatalf("%+v re-encoded as % x parses as %+v", s, out[:m], again)
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	f.Add("default,+0x35,-0x42")
	f.Add("none +0x9e/0x10 -0x9e/0x10")
	f.Fuzz(func(t *testing.T, text string) {
		p, err := ParsePolicy(text, EmulatedPolicy())
		if err != nil {
			return
		}
		q, err := ParsePolicy(p.String(), nil)
		if err != nil || q.String() != p.String() {
			t.Fatalf("%q -> %q does not round-trip (%v)", text, p.String(), err)
		}
	})
}
