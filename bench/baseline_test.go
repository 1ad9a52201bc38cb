package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/cbaseline"
)

func TestGoRingPairMovesRequests(t *testing.T) {
	// As long as the C pair's window: at 50 ms a loaded machine once
	// scheduled no round trip at all under -race.
	b, err := GoRingPair(500 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if b.Value <= 0 { // a loaded machine can starve a pair; none at all is a bug
		t.Fatalf("ring pair: %.0f round trips/s", b.Value)
	}
}

func TestCRingPairBuildsAndRuns(t *testing.T) {
	requireGCC(t)
	// Long enough that a machine busy with other tests still schedules
	// both threads (at 100 ms a loaded 2-vCPU box once gave 0).
	b, err := CRingPair(context.Background(), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if b.Value <= 0 { // a loaded machine can starve a pair; none at all is a bug
		t.Fatalf("C ring pair: %.0f round trips/s", b.Value)
	}
}

// requireGCC fails where CI builds with cgo (CGO_ENABLED=1 needs a C
// compiler), and skips loudly only on a machine without one.
func requireGCC(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("LOUD SKIP: gcc is not installed (scripts/deps.txt installs it)")
	}
}

// buildBlkPair builds blkpair.c for one test.
func buildBlkPair(t *testing.T) *cProgram {
	t.Helper()
	requireGCC(t)
	p, err := buildC(context.Background(), "blkpair", cbaseline.BlkPair)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// blkpair.c reads what each backend holds: its frontend checks a word of
// every page it copies against the image's pattern (zeros for null), for
// 4 KiB random reads at QD1 and 32 and 1 MiB indirect reads, each end
// pinned or not.
func TestCBlkPairReadsTheData(t *testing.T) {
	ctx := context.Background()
	p := buildBlkPair(t)
	const size = 8 << 20
	image, err := BenchFile(t.TempDir(), size)
	if err != nil {
		t.Fatal(err)
	}
	cpus := allowedCPUs(2) // pinned where this process may run
	if len(cpus) == 0 {
		t.Fatal("no CPU in this process's affinity")
	}
	first, second := cpus[0], cpus[len(cpus)-1]
	for _, backend := range []string{"null", "memory", "file"} {
		for _, c := range []struct{ qd, bs, front, back int }{{1, 4096, -1, -1}, {32, 4096, first, first}, {2, 1 << 20, first, second}} {
			args := []string{"0.2", strconv.Itoa(c.qd), backend, strconv.Itoa(c.bs), strconv.Itoa(size), strconv.Itoa(c.front), strconv.Itoa(c.back), image}
			v, err := p.run(ctx, args...)
			if err != nil {
				t.Fatal(err)
			}
			if len(v) != 2 || v[0] <= 0 || v[1] <= 0 {
				t.Errorf("blkpair %v printed %v: want IOPS and CPU per request", args, v)
			}
		}
	}
}

// An image that does not hold the pattern fails the frontend's check:
// the check can fail, so a run that prints a rate read the right bytes.
func TestCBlkPairCatchesWrongData(t *testing.T) {
	ctx := context.Background()
	p := buildBlkPair(t)
	zeros := filepath.Join(t.TempDir(), "zeros.img")
	if err := os.WriteFile(zeros, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := p.run(ctx, "0.2", "4", "file", "4096", strconv.Itoa(1<<20), "-1", "-1", zeros)
	if err == nil || !strings.Contains(err.Error(), "read as 0") {
		t.Fatalf("blkpair on an image of zeros: %v, want the frontend's check to fail", err)
	}
}

func TestMemcpy(t *testing.T) {
	if b := Memcpy(20 * time.Millisecond); b.Value <= 0 {
		t.Fatalf("memcpy %v", b)
	}
}
