package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/scsi"
)

func TestPrintPolicyListsAllowedCommands(t *testing.T) {
	p, err := scsi.ParsePolicy("none,+0x28,+0x9e/0x10", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printPolicy(&out, p); err != nil {
		t.Fatal(err)
	}
	want := "0x28      READ(10)\n0x9e/0x10 SERVICE ACTION IN(16)\ncanonical: none,+0x28,+0x9e/0x10\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	if strings.Contains(out.String(), "WRITE") {
		t.Fatalf("lists a command the policy denies")
	}
}
