package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// A serve or front given a socket no simulated host listens on fails
// (exit 1) and says how to start one and which flag names it.
func TestMissingHostSocketHint(t *testing.T) {
	bin := buildXenblk(t)
	missing := filepath.Join(t.TempDir(), "no-host.sock")
	for _, cmd := range []string{"serve", "front"} {
		_, errs, code := runXenblkCode(t, bin, cmd, "--host", missing)
		if code != 1 {
			t.Errorf("%s --host %s: exit %d, want 1 (stderr %q)", cmd, missing, code, errs)
		}
		for _, want := range []string{missing, "xenblk host", "--host"} {
			if !strings.Contains(errs, want) {
				t.Errorf("%s --host %s: stderr %q does not say %q", cmd, missing, errs, want)
			}
		}
	}
}
