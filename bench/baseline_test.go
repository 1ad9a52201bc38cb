package bench

import (
	"context"
	"os/exec"
	"testing"
	"time"
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
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("LOUD SKIP: gcc is not installed (scripts/deps.txt installs it)")
	}
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

// The C null path aborts on any response that is not OKAY for a request
// in flight, so a run that prints a rate validated every request.
func TestCNullPairBuildsAndRuns(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("LOUD SKIP: gcc is not installed (scripts/deps.txt installs it)")
	}
	for _, qd := range []int{1, 32, 128} {
		b, err := CNullPair(context.Background(), 100*time.Millisecond, qd)
		if err != nil {
			t.Fatal(err)
		}
		if b.Value <= 0 || b.Name != CNullPairName(qd) {
			t.Fatalf("C null pair at QD%d: %+v", qd, b)
		}
	}
}

func TestMemcpy(t *testing.T) {
	if b := Memcpy(20 * time.Millisecond); b.Value <= 0 {
		t.Fatalf("memcpy %v", b)
	}
}
