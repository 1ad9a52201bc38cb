package main

import (
	"encoding/hex"
	"testing"
)

// TestBuildPROut pins the CDB and parameter list xenblk scsi persist --out
// sends for the basic list and for REGISTER AND MOVE's.
func TestBuildPROut(t *testing.T) {
	saved := persistFlags
	t.Cleanup(func() { persistFlags = saved })
	for _, c := range []struct {
		name       string
		set        func()
		cdb, param string
	}{
		{"reserve", func() {
			persistFlags.reserve, persistFlags.rk, persistFlags.prType, persistFlags.aptpl = true, "0x1", 5, true
		}, "5f010500000000001800", "0000000000000001" + "0000000000000000" + "00000000" + "01000000"},
		{"register-move", func() {
			persistFlags.registerMove, persistFlags.rk, persistFlags.sark = true, "1", "2"
			persistFlags.aptpl, persistFlags.unreg, persistFlags.rtpi = true, true, 1
			persistFlags.transportID = "05 00 00 0c 78 65 6e 3a 64 6f 6d 32 3a 78 61 00"
		}, "5f070000000000002800", "0000000000000001" + "0000000000000002" + "0003" + "0001" + "00000010" +
			"0500000c78656e3a646f6d323a786100"},
	} {
		persistFlags = saved
		c.set()
		cdb, param, err := buildPROut()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := hex.EncodeToString(cdb[:]); got != c.cdb {
			t.Errorf("%s: CDB %s, want %s", c.name, got, c.cdb)
		}
		if got := hex.EncodeToString(param); got != c.param {
			t.Errorf("%s: parameter list %s, want %s", c.name, got, c.param)
		}
	}
}
