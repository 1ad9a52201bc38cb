//go:build cinterop

package layout

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// probeM32 compiles `int probe[] = { exprs }` after the includes with
// gcc -m32 -S and reads the values back from the assembly: this machine
// need not run 32-bit code. The includes are looked up in the system's
// paths and in this package's directory (extension.h).
func probeM32(t *testing.T, includes []string, exprs []string) []int {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatal("gcc is required (it is on every machine of this project)")
	}
	var b strings.Builder
	for _, h := range includes {
		fmt.Fprintf(&b, "#include %s\n", h)
	}
	b.WriteString("int probe[] = {\n")
	for _, e := range exprs {
		fmt.Fprintf(&b, "\t(int)(%s),\n", e)
	}
	b.WriteString("};\n")
	src := filepath.Join(t.TempDir(), "probe.c")
	if err := os.WriteFile(src, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	out, err := exec.Command("gcc", "-m32", "-S", "-o", "-", "-I", wd, src).CombinedOutput()
	if err != nil {
		t.Fatalf("gcc -m32 failed (is gcc-multilib installed? `make deps`): %v\n%s", err, out)
	}
	var vals []int
	for _, m := range regexp.MustCompile(`(?m)^\s*\.long\s+(-?\d+)\s*$`).FindAllStringSubmatch(string(out), -1) {
		v, _ := strconv.Atoi(m[1])
		vals = append(vals, v)
	}
	if len(vals) != len(exprs) {
		t.Fatalf("read %d values from the assembly, want %d:\n%s", len(vals), len(exprs), out)
	}
	return vals
}
