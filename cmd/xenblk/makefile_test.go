package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// TestMakeTestReportsSkipsAndKeepsTheStatus runs `make test` with a stand-in
// for go whose `go test` prints a recorded -json stream and then exits as
// told, while `go run` is the real one (scripts/testreport): the skips are
// listed at the end, and make fails whenever go test failed, even when the
// stream shows no failure (a build error printed as text), through
// pipefail.
func TestMakeTestReportsSkipsAndKeepsTheStatus(t *testing.T) {
	needTool(t, "make")
	realGo, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	passing := `{"Action":"run","Package":"p","Test":"TestX"}
{"Action":"output","Package":"p","Test":"TestX","Output":"    x_test.go:3: needs real Xen: run in make xenlab\n"}
{"Action":"skip","Package":"p","Test":"TestX","Elapsed":0}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}
{"Action":"pass","Package":"p","Elapsed":0.1}
`
	if err := os.WriteFile(filepath.Join(dir, "stream.json"), []byte(passing), 0o644); err != nil {
		t.Fatal(err)
	}
	fakeGo := filepath.Join(dir, "go")
	script := "#!/bin/sh\nif [ \"$1\" = test ]; then cat " + filepath.Join(dir, "stream.json") + "; exit $GO_TEST_STATUS; fi\nexec " + realGo + " \"$@\"\n"
	if err := os.WriteFile(fakeGo, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, status := range []int{0, 1} {
		cmd := exec.Command("make", "-s", "-C", filepath.Join("..", ".."), "test", "GO="+fakeGo)
		cmd.Env = append(os.Environ(), "GO_TEST_STATUS="+strconv.Itoa(status))
		out, err := cmd.CombinedOutput()
		if !strings.Contains(string(out), "1 tests skipped:\n  SKIP p TestX: x_test.go:3: needs real Xen: run in make xenlab") {
			t.Errorf("go test exiting %d: make test's output lacks the skip list:\n%s", status, out)
		}
		if failed := err != nil; failed != (status != 0) {
			t.Errorf("go test exited %d; make test: %v\n%s", status, err, out)
		}
	}
}
