package bench

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

func TestGoRingPairMovesRequests(t *testing.T) {
	b, err := GoRingPair(50 * time.Millisecond)
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
	b, err := CRingPair(context.Background(), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if b.Value <= 0 { // a loaded machine can starve a pair; none at all is a bug
		t.Fatalf("C ring pair: %.0f round trips/s", b.Value)
	}
}

func TestMemcpy(t *testing.T) {
	if b := Memcpy(20 * time.Millisecond); b.Value <= 0 {
		t.Fatalf("memcpy %v", b)
	}
}
