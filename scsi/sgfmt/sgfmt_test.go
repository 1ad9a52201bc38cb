package sgfmt

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestDescribeSense(t *testing.T) {
	fixed := []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00, 0, 0xc0, 0, 2}
	if got, want := Sense(fixed), "Sense key: Illegal Request, asc/ascq 0x20/0x00 Invalid command operation code\n  Field replaceable: error in cdb byte 2\n"+senseMeanings[[2]byte{0x20, 0}]; got != want {
		t.Errorf("fixed: %q, want %q", got, want)
	}
	desc := []byte{0x72, 0x06, 0x2a, 0x03, 0, 0, 0, 0}
	if got := Sense(desc); got != "Sense key: Unit Attention, asc/ascq 0x2a/0x03 Reservations preempted [descriptor format]\nAnother initiator preempted the reservation: this initiator no longer holds it." {
		t.Errorf("descriptor: %q", got)
	}
	if got := Sense([]byte{0x12}); !strings.HasPrefix(got, "Sense data not understood") {
		t.Errorf("garbage: %q", got)
	}
}

// TestSenseSaysWhatItMeans: the unit attention every initiator meets first
// (POWER ON, any reset flavour) is told in plain words, as are the other
// codes xenblk's engines report; a code without a plain sentence shows its
// SPC name alone.
func TestSenseSaysWhatItMeans(t *testing.T) {
	for _, ascq := range []byte{0x00, 0x01, 0x02, 0x03, 0x07} {
		ua := []byte{0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, ascq, 0, 0, 0, 0}
		got := Sense(ua)
		if !strings.Contains(got, "\nThe unit reports it was powered on or reset") || !strings.Contains(got, "the next command will succeed") {
			t.Errorf("29/%02x: %q", ascq, got)
		}
	}
	for code := range ascNames {
		if code == [2]byte{} {
			continue // NO SENSE: nothing to explain
		}
		if senseMeaning(code[0], code[1]) == "" {
			t.Errorf("asc/ascq 0x%02x/0x%02x, which xenblk reports, has no plain meaning", code[0], code[1])
		}
	}
	other := []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x4e, 0x00, 0, 0, 0, 0}
	if got := Sense(other); strings.Contains(got, "\n") {
		t.Errorf("a code without a meaning: %q", got)
	}
}

func TestDecodeVPDRotationRate(t *testing.T) {
	for rate, want := range map[uint16]string{
		0: "Nominal rotation rate: 0 (not reported)", 1: "Nominal rotation rate: 1 (non-rotating medium)",
		7200: "Nominal rotation rate: 7200 rpm", 2: "(reserved)",
	} {
		page := []byte{0, 0xb1, 0, 60, byte(rate >> 8), byte(rate)}
		page = append(page, make([]byte, 58)...)
		got, err := VPD(page, 0xb1)
		if err != nil || !strings.Contains(got, want) {
			t.Errorf("rate %d: %q, %v; want %q", rate, got, err, want)
		}
	}
	if _, err := VPD([]byte{0, 0xb0, 0, 0}, 0xb1); err == nil {
		t.Error("page code mismatch not reported")
	}
}

func TestDecodeReadCapAndLUNs(t *testing.T) {
	got, err := ReadCapacity([]byte{0, 0, 0x0f, 0xff, 0, 0, 2, 0}, false)
	if err != nil || !strings.Contains(got, "Last LBA=4095 (0xfff), Number of logical blocks=4096") || !strings.Contains(got, "Device size: 2097152 bytes, 2.0 MiB") {
		t.Errorf("readcap10: %q %v", got, err)
	}
	if _, err := ReadCapacity([]byte{1, 2}, true); err == nil {
		t.Error("short READ CAPACITY (16) accepted")
	}
	// Two LUNs declared, only one returned.
	got = ReportLUNs([]byte{0, 0, 0, 16, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	if !strings.Contains(got, "Lun list length = 16 which imples 2 lun entries") || !strings.Contains(got, "0001000000000000") || !strings.Contains(got, "1 more not returned") {
		t.Errorf("luns: %q", got)
	}
}

func TestDecodeDesignatorsNAA(t *testing.T) {
	page := []byte{0, 0x83, 0, 12, 0x01, 0x03, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7}
	got, err := VPD(page, 0x83)
	if err != nil || !strings.Contains(got, "designator_type: NAA") || !strings.Contains(got, "0x6001020304050607") {
		t.Errorf("0x83: %q %v", got, err)
	}
}

func TestHexDump(t *testing.T) {
	b := []byte("0123456789abcdef\x00Z")
	want := " 00     30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66    0123456789abcdef\n" +
		" 10     00 5a                                               .Z\n"
	if got := HexDump(b); got != want {
		t.Errorf("HexDump:\n%q\nwant\n%q", got, want)
	}
}

// junk is what a device might leave after the data it declares.
var junk = []byte{0xff, 0x00, 0x5a, 0xa5, 0x80, 0x7f, 0x01, 0xfe, 0x20, 0x41}

// ignoresJunk checks that bytes past what render reads (declared says
// whether b holds all the data its header declares) leave its text alone.
func ignoresJunk(t *testing.T, name string, b []byte, declared bool, render func([]byte) string) {
	t.Helper()
	if !declared {
		return
	}
	if got, want := render(append(slices.Clone(b), junk...)), render(b); got != want {
		t.Errorf("%s: bytes past the declared length changed the text:\n%s\nwant\n%s", name, got, want)
	}
}

func seeds(f *testing.F) {
	for _, b := range [][]byte{
		{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00, 0, 0xc0, 0, 2},
		{0x72, 0x06, 0x2a, 0x03, 0, 0, 0, 12, 0, 10, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 5},
		{0, 0x83, 0, 12, 0x01, 0x03, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7},
		{0, 0xb1, 0, 60, 0x1c, 0x20},
		{0, 0xb0, 0, 60, 0, 1, 0, 8},
		{0, 0xb2, 0, 4, 0, 0xe4, 2, 0},
		{0, 0, 0, 16, 0, 0, 0, 0, 0, 1},
		{0, 0, 6, 0x12, 0x5b, 0, 0, 2, 'X', 'E', 'N'},
		{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0x0a},
		append([]byte{0, 0, 6, 2, 31, 0, 0, 2}, "XENBLK  VBD             0001"...),
		{0, 0, 0x0f, 0xff, 0, 0, 2, 0, 0, 0, 0, 0, 0x0b, 0x13, 0x80, 0, 0},
	} {
		f.Add(b)
	}
}

// FuzzSense: any sense bytes render without a panic, as one text.
func FuzzSense(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if Sense(b) == "" {
			t.Error("no text")
		}
	})
}

// FuzzInquiry: standard INQUIRY data renders without a panic, from its
// first 36 bytes only.
func FuzzInquiry(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		ignoresJunk(t, "Inquiry", b, len(b) >= 36, Inquiry)
	})
}

// FuzzVPD: a VPD page renders without a panic, whichever page was asked
// for, and a decoded page reads nothing past its declared length.
func FuzzVPD(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, page := range []byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2, 0x86, b2(b)} {
			render := func(b []byte) string { s, err := VPD(b, page); return fmt.Sprint(s, err) }
			_, decoded := vpdNames[page]
			declared := decoded && page != 0x86 && len(b) >= 4 && 4+int(binary.BigEndian.Uint16(b[2:4])) <= len(b)
			ignoresJunk(t, fmt.Sprintf("VPD 0x%02x", page), b, declared, render)
		}
	})
}

// FuzzReportLUNs: REPORT LUNS data renders without a panic and reads
// nothing past its declared LUN list length.
func FuzzReportLUNs(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		declared := len(b) >= 8 && 8+uint64(binary.BigEndian.Uint32(b[0:4])) <= uint64(len(b))
		ignoresJunk(t, "ReportLUNs", b, declared, ReportLUNs)
	})
}

// FuzzReadCapacity: READ CAPACITY (10) and (16) data render without a
// panic, from their first 8 and 16 bytes only.
func FuzzReadCapacity(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, long := range []bool{false, true} {
			render := func(b []byte) string { s, err := ReadCapacity(b, long); return fmt.Sprint(s, err) }
			ignoresJunk(t, fmt.Sprintf("ReadCapacity(16=%v)", long), b, len(b) >= 16, render)
		}
	})
}

// FuzzHexDump: every byte is shown, 16 a line.
func FuzzHexDump(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := strings.Count(HexDump(b), "\n"), (len(b)+15)/16; got != want {
			t.Errorf("%d lines for %d bytes, want %d", got, len(b), want)
		}
	})
}

func b2(b []byte) byte {
	if len(b) > 1 {
		return b[1]
	}
	return 0
}
