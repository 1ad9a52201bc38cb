package main

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestServeWritesItsCPUProfileWhenStopped: serve --cpuprofile leaves a
// whole profile (pprof's gzip stream) once SIGTERM has stopped it, so a
// backend can be profiled where it runs, on real Xen.
func TestServeWritesItsCPUProfileWhenStopped(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "host.sock")
	startProc(t, bin, "host", "--socket", sock, "--xenstored", filepath.Join(dir, "xenstored"))
	waitFile(t, sock)
	prof := filepath.Join(dir, "serve.pprof")
	serve := startProc(t, bin, "serve", "--host", sock, "--pr-dir", filepath.Join(dir, "pr"),
		"--journal-dir", filepath.Join(dir, "journal"), "--cpuprofile", prof)
	serve.expect(t, "xenblk serve:")
	start := time.Now()
	serve.cmd.Process.Signal(syscall.SIGTERM)
	if code, _ := waitExit(t, serve, start, 30*time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM: %s", code, serve.errb.String())
	}
	b, err := os.ReadFile(prof)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) || len(b) < 64 {
		t.Fatalf("the profile is %d bytes, not a gzip stream: % x", len(b), b[:min(len(b), 16)])
	}
}
