package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMakeRunStopsCleanly runs `make run` as the README says and presses
// Ctrl-C (SIGINT to the terminal's process group, make included): the
// program stops cleanly, and make has no failure of its own to report
// (under `go run` it printed "make: *** [Makefile:12: run] Error 1").
func TestMakeRunStopsCleanly(t *testing.T) {
	needTool(t, "make")
	dir := t.TempDir()
	args := "ARGS=--disk " + filepath.Join(dir, "d.img") + " --size 16M --nbd " + freePort(t) + " --control " + filepath.Join(dir, "c.sock")
	cmd := exec.Command("make", "-s", "-C", filepath.Join("..", ".."), "run", args)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Ctrl-C to stop") {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("make run ended before the sim's banner: %s", stderr.String())
		}
	case <-time.After(5 * time.Minute): // the build comes first
		t.Fatalf("no banner from make run in 5 minutes: %s", stderr.String())
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("make run did not end in 2 minutes after Ctrl-C: %s", stderr.String())
	}
	// make itself was sent SIGINT too and may end by it; what it must not
	// do is report a failing recipe.
	if strings.Contains(stderr.String(), "make: ***") || strings.Contains(stderr.String(), "Error") {
		t.Errorf("make run after Ctrl-C (%v): %s", err, stderr.String())
	}
	if ee, ok := err.(*exec.ExitError); ok && !ee.Sys().(syscall.WaitStatus).Signaled() {
		t.Errorf("make run exited %d after Ctrl-C: %s", ee.ExitCode(), stderr.String())
	}
}
