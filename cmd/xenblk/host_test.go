package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/xen/sim"
)

// TestHostCommand runs `xenblk host`, attaches a guest process-style
// through its socket, and lists the store with Xen's xenstore-ls.
func TestHostCommand(t *testing.T) {
	tool, err := exec.LookPath("xenstore-ls")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: xenstore-ls is not installed (package xenstore-utils, listed in scripts/deps.txt)")
	}
	dir := t.TempDir()
	socket := filepath.Join(dir, "host.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	root := newCLI()
	root.SetArgs([]string{"host", "--socket", socket})
	root.SetOut(&strings.Builder{})
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("xenblk host: %v", err)
		}
	}()
	var g interface{ Close() error }
	var connErr error
	if !eventually.Within(10*time.Second, func() bool {
		d, err := sim.Connect(socket, sim.NewGuest("attached"))
		if err != nil {
			connErr = err
			return false
		}
		g = d
		return true
	}) {
		t.Fatalf("cannot attach to xenblk host: %v", connErr)
	}
	ls := func() string {
		cmd := exec.Command(tool, "/local/domain")
		cmd.Env = append(os.Environ(), "XENSTORED_PATH="+filepath.Join(dir, "xenstored"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("xenstore-ls: %v\n%s", err, out)
		}
		return string(out)
	}
	out := ls()
	for _, want := range []string{`0 = ""`, `name = "Domain-0"`, `1 = ""`, `name = "attached"`} {
		if !strings.Contains(out, want) {
			t.Errorf("xenstore-ls lacks %q:\n%s", want, out)
		}
	}
	g.Close()
	eventually.True(t, 10*time.Second, "the detached guest gone from the store", func() bool { return !strings.Contains(ls(), "attached") })
}
