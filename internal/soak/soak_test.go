package soak

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSoakKillNine is `make soak` in short: 20 s of verified writes and
// flushes through xenblk front's NBD export while xenblk host, serve and
// front are killed with SIGKILL and restarted. The seed is the clock's,
// printed on failure (rerun: go run ./cmd/xenblk-soak --seed N).
func TestSoakKillNine(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "xenblk")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/xenblk/xenblk/cmd/xenblk").CombinedOutput(); err != nil {
		t.Fatalf("building xenblk: %v\n%s", err, out)
	}
	seed := uint64(time.Now().UnixNano())
	var progress strings.Builder
	rep, err := Run(context.Background(), Config{Xenblk: bin, Dir: dir, Duration: 20 * time.Second, Seed: seed,
		ImageSize: 16 << 20, BlockSize: 4096, Writers: 4, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	t.Log(rep)
	// The run must have done what it says: kills of each kind cannot be
	// promised in 20 s, but some kill, writes and flushes, and a check of
	// the whole disk after each restart and at the end, must have happened.
	if rep.KillsServe+rep.KillsFront+rep.KillsHost == 0 || rep.Writes == 0 || rep.Flushes == 0 || rep.Verification < 2 {
		t.Fatalf("a soak that proved nothing: %v", rep)
	}
}
