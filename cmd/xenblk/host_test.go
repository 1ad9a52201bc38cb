package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenstore"
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

// TestSecondHostLeavesTheFirstAlone: a host given a running host's
// socket, or a socket beside it (so the same default --xenstored), is
// refused with a failure naming the flag to change, before it touches
// either socket: the running host still takes domains and still answers
// on its store.
func TestSecondHostLeavesTheFirstAlone(t *testing.T) {
	dir := t.TempDir()
	socket, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	first := newCLI()
	first.SetArgs([]string{"host", "--socket", socket})
	first.SetOut(&strings.Builder{})
	go func() { done <- first.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the first xenblk host: %v", err)
		}
	}()
	eventually.True(t, 10*time.Second, "the first host answering", func() bool {
		d, err := sim.Connect(socket, sim.AsDom0())
		if err == nil {
			d.Close()
		}
		return err == nil
	})

	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"host", "--socket", socket, "--xenstored", filepath.Join(dir, "other-xenstored")}, "--socket"},
		{[]string{"host", "--socket", filepath.Join(dir, "other.sock")}, "--xenstored"},
		{[]string{"host", "--socket", socket}, "--socket"},
	} {
		// A host that starts runs until its context ends: the bound
		// makes one that was not refused a failure, not a hang.
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		second := newCLI()
		second.SetArgs(c.args)
		second.SetOut(&strings.Builder{})
		err := second.ExecuteContext(sctx)
		scancel()
		var ue usageError
		if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "another xenblk host") || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("xenblk %s: %v; want a failure (exit 1) saying another host runs there, naming %s", strings.Join(c.args, " "), err, c.flag)
		}
	}
	d, err := sim.Connect(socket, sim.AsDom0())
	if err != nil {
		t.Fatalf("the first host after the refused ones: %v", err)
	}
	d.Close()
	st, err := xenstore.Dial(xs)
	if err != nil {
		t.Fatalf("the first host's store after the refused ones: %v", err)
	}
	st.Close()
}
