package main

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// TestBuildPROut pins the CDB and parameter list xenblk scsi persist --out
// sends for the basic list and for REGISTER AND MOVE's.
func TestBuildPROut(t *testing.T) {
	for _, c := range []struct {
		name       string
		flags      persistOptions
		cdb, param string
	}{
		{"reserve", persistOptions{reserve: true, rk: "0x1", prType: 5, aptpl: true},
			"5f010500000000001800", "0000000000000001" + "0000000000000000" + "00000000" + "01000000"},
		{"register-move", persistOptions{registerMove: true, rk: "1", sark: "2", aptpl: true, unreg: true, rtpi: 1,
			transportID: "05 00 00 0c 78 65 6e 3a 64 6f 6d 32 3a 78 61 00"},
			"5f070000000000002800", "0000000000000001" + "0000000000000002" + "0003" + "0001" + "00000010" +
				"0500000c78656e3a646f6d323a786100"},
	} {
		cdb, param, err := buildPROut(&c.flags)
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

// TestParseKey pins what a reservation key flag accepts, and that a
// refusal is a usage mistake saying what a key looks like, in the user's
// words rather than the parser's.
func TestParseKey(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
	}{
		{"", 0}, {"0", 0}, {"a1", 0xa1}, {"0xA1", 0xa1}, {"0X1234abcd", 0x1234abcd}, {"ffffffffffffffff", 1<<64 - 1},
	} {
		if got, err := parseKey("--key", c.in); err != nil || got != c.want {
			t.Errorf("parseKey(%q) = %#x, %v; want %#x", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"zz", "0x", "-1", "1 2", "10000000000000000", "0x1g"} {
		_, err := parseKey("--key", in)
		want := `--key "` + in + `": want a hex key of up to 16 digits, such as 0x1234abcd`
		var ue usageError
		if !errors.As(err, &ue) || err.Error() != want {
			t.Errorf("parseKey(%q): %v; want the usage error %q", in, err, want)
		}
	}
}

// TestKeyFlagMessages: the key flags of xenblk pr and xenblk scsi persist
// refuse a bad key with parseKey's message, before any socket is opened.
func TestKeyFlagMessages(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pr", "register", "--key", "zz"}, `--key "zz": want a hex key of up to 16 digits, such as 0x1234abcd`},
		{[]string{"pr", "preempt", "--key", "1", "--old-key", "0xq", "--type", "we"}, `--old-key "0xq": want a hex key`},
		{[]string{"scsi", "persist", "-o", "-G", "-S", "zz"}, `--param-sark "zz": want a hex key of up to 16 digits`},
		{[]string{"scsi", "persist", "-o", "-R", "-K", "0xzz", "-T", "1"}, `--param-rk "0xzz": want a hex key`},
	} {
		root := newCLI()
		root.SetArgs(append(c.args, "--control", "/nonexistent/xenblk-test.sock"))
		err := root.Execute()
		var ue usageError
		if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "strconv") {
			t.Errorf("xenblk %q: %v; want the usage error %q...", c.args, err, c.want)
		}
	}
}
