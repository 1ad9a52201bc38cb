package main

import (
	"strings"
	"testing"
)

func TestDescribeSense(t *testing.T) {
	fixed := []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00, 0, 0xc0, 0, 2}
	if got, want := describeSense(fixed), "Sense key: Illegal Request, asc/ascq 0x20/0x00 Invalid command operation code\n  Field replaceable: error in cdb byte 2\n"+senseMeanings[[2]byte{0x20, 0}]; got != want {
		t.Errorf("fixed: %q, want %q", got, want)
	}
	desc := []byte{0x72, 0x06, 0x2a, 0x03, 0, 0, 0, 0}
	if got := describeSense(desc); got != "Sense key: Unit Attention, asc/ascq 0x2a/0x03 Reservations preempted [descriptor format]\nAnother initiator preempted the reservation: this initiator no longer holds it." {
		t.Errorf("descriptor: %q", got)
	}
	if got := describeSense([]byte{0x12}); !strings.HasPrefix(got, "Sense data not understood") {
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
		got := describeSense(ua)
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
	if got := describeSense(other); strings.Contains(got, "\n") {
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
		got, err := decodeVPD(page, 0xb1)
		if err != nil || !strings.Contains(got, want) {
			t.Errorf("rate %d: %q, %v; want %q", rate, got, err, want)
		}
	}
	if _, err := decodeVPD([]byte{0, 0xb0, 0, 0}, 0xb1); err == nil {
		t.Error("page code mismatch not reported")
	}
}

func TestDecodeReadCapAndLUNs(t *testing.T) {
	got, err := decodeReadCap([]byte{0, 0, 0x0f, 0xff, 0, 0, 2, 0}, false)
	if err != nil || !strings.Contains(got, "Last LBA=4095 (0xfff), Number of logical blocks=4096") || !strings.Contains(got, "Device size: 2097152 bytes, 2.0 MiB") {
		t.Errorf("readcap10: %q %v", got, err)
	}
	if _, err := decodeReadCap([]byte{1, 2}, true); err == nil {
		t.Error("short READ CAPACITY (16) accepted")
	}
	// Two LUNs declared, only one returned.
	got = decodeLUNs([]byte{0, 0, 0, 16, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	if !strings.Contains(got, "Lun list length = 16 which imples 2 lun entries") || !strings.Contains(got, "0001000000000000") || !strings.Contains(got, "1 more not returned") {
		t.Errorf("luns: %q", got)
	}
}

func TestDecodeDesignatorsNAA(t *testing.T) {
	page := []byte{0, 0x83, 0, 12, 0x01, 0x03, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7}
	got, err := decodeVPD(page, 0x83)
	if err != nil || !strings.Contains(got, "designator_type: NAA") || !strings.Contains(got, "0x6001020304050607") {
		t.Errorf("0x83: %q %v", got, err)
	}
}

// FuzzSCSIDecoders feeds device answers to every decoder: none may panic.
func FuzzSCSIDecoders(f *testing.F) {
	f.Add([]byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00, 0, 0xc0, 0, 2}, byte(0))
	f.Add([]byte{0x72, 0x06, 0x2a, 0x03, 0, 0, 0, 12, 0, 10, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 5}, byte(0x83))
	f.Add([]byte{0, 0x83, 0, 12, 0x01, 0x03, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7}, byte(0x83))
	f.Add([]byte{0, 0xb1, 0, 60, 0x1c, 0x20}, byte(0xb1))
	f.Add([]byte{0, 0xb0, 0, 60, 0, 1, 0, 8}, byte(0xb0))
	f.Add([]byte{0, 0xb2, 0, 4, 0, 0xe4, 2, 0}, byte(0xb2))
	f.Add([]byte{0, 0, 0, 16, 0, 0, 0, 0, 0, 1}, byte(0))
	f.Add([]byte{0, 0, 6, 0x12, 0x5b, 0, 0, 2, 'X', 'E', 'N'}, byte(0x80))
	f.Add([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0x0a}, byte(0x5e))
	f.Fuzz(func(t *testing.T, b []byte, page byte) {
		describeSense(b)
		decodeStdInquiry(b)
		decodeVPD(b, page)
		decodeVPD(b, b2(b))
		decodeLUNs(b)
		decodeReadCap(b, true)
		decodeReadCap(b, false)
		hexDump(b)
		for _, sa := range []byte{0, 1, 2, 3, page} {
			decodePRIn(b, sa)
		}
	})
}

func b2(b []byte) byte {
	if len(b) > 1 {
		return b[1]
	}
	return 0
}

func TestDecodePRIn(t *testing.T) {
	keys := []byte{0, 0, 0, 1, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2}
	if got, want := decodePRIn(keys, prInReadKeys), "  PR generation=0x1, 2 registered reservation keys follow:\n    0x1\n    0x2\n"; got != want {
		t.Errorf("read keys: %q, want %q", got, want)
	}
	if got := decodePRIn([]byte{0, 0, 0, 3, 0, 0, 0, 0}, prInReadReservation); got != "  PR generation=0x3, there is NO reservation held\n" {
		t.Errorf("no reservation: %q", got)
	}
}
