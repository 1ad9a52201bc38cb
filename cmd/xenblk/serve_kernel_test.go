package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serve refuses backend/vbd while xen-blkback is loaded (it would answer
// the same frontends), and serves other types, or vbd without it.
func TestKernelClaims(t *testing.T) {
	with := t.TempDir()
	if err := os.Mkdir(filepath.Join(with, "xen_blkback"), 0o755); err != nil {
		t.Fatal(err)
	}
	without := t.TempDir()
	for _, c := range []struct {
		modules, backendType string
		refused              bool
	}{
		{with, "vbd", true},
		{with, "xenblk", false},
		{without, "vbd", false},
		{filepath.Join(without, "missing"), "vbd", false},
	} {
		err := kernelClaims(c.modules, c.backendType)
		if (err != nil) != c.refused {
			t.Errorf("%s, --backend-type %s: %v, want refused=%v", c.modules, c.backendType, err, c.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "module_blacklist=xen_blkback") {
			t.Errorf("the refusal does not say how to keep the module out: %v", err)
		}
	}
}
