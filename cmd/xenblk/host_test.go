package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	rootCmd.SetArgs([]string{"host", "--socket", socket})
	rootCmd.SetOut(&strings.Builder{})
	go func() { done <- rootCmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("xenblk host: %v", err)
		}
	}()
	var g interface{ Close() error }
	for start := time.Now(); ; {
		d, err := sim.Connect(socket, sim.NewGuest("attached"))
		if err == nil {
			g = d
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("cannot attach to xenblk host: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
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
	for start := time.Now(); strings.Contains(ls(), "attached"); {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the detached guest is still in the store")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
