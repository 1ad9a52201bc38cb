package main

import (
	"bytes"
	"errors"
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

// TestPolicyFileThatCannotBeRead: a file that is not there, or a
// directory, is a failure (exit 1) like any image that cannot be opened;
// only what a policy file says can be a usage mistake.
func TestPolicyFileThatCannotBeRead(t *testing.T) {
	dir := t.TempDir()
	for _, file := range []string{dir + "/missing.policy", dir} {
		root := newCLI()
		root.SetArgs([]string{"scsi-policy", "--file", file})
		root.SetOut(&bytes.Buffer{})
		err := root.Execute()
		var ue usageError
		if err == nil || errors.As(err, &ue) {
			t.Errorf("scsi-policy --file %s: %v; want a failure that is not a usage mistake", file, err)
		}
	}
}
