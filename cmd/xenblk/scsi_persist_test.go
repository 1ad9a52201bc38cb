package main

import "testing"

func TestDecodePRIn(t *testing.T) {
	keys := []byte{0, 0, 0, 1, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2}
	if got, want := decodePRIn(keys, prInReadKeys), "  PR generation=0x1, 2 registered reservation keys follow:\n    0x1\n    0x2\n"; got != want {
		t.Errorf("read keys: %q, want %q", got, want)
	}
	if got := decodePRIn([]byte{0, 0, 0, 3, 0, 0, 0, 0}, prInReadReservation); got != "  PR generation=0x3, there is NO reservation held\n" {
		t.Errorf("no reservation: %q", got)
	}
}

// FuzzDecodePRIn feeds device answers to the PR IN decoder: it may not panic.
func FuzzDecodePRIn(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2}, byte(0))
	f.Add([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0x0a}, byte(0x5e))
	f.Fuzz(func(t *testing.T, b []byte, page byte) {
		for _, sa := range []byte{0, 1, 2, 3, page} {
			decodePRIn(b, sa)
		}
	})
}
