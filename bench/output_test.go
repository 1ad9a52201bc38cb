package bench

import (
	"strings"
	"testing"
)

func TestPerSecondShowsTheValue(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0.00", 7: "7.00", 950: "950", 12345: "12.3k", 101000: "101k", 22614926: "22.6M", 1.5e6: "1.50M",
	} {
		if got := perSecond(v); got != want {
			t.Errorf("perSecond(%v) = %q, want %q", v, got, want)
		}
	}
}

// TestRingTargetSmallRates: a slow machine's ring pairs (tens of thousands
// of round trips a second) read as such, not as "0.01M".
func TestRingTargetSmallRates(t *testing.T) {
	rep := &Report{Baselines: []Baseline{{Name: "ring-only pair, Go", Value: 12345}, {Name: "ring-only pair, C ring.h", Value: 10100}}}
	for _, tg := range rep.Targets() {
		if strings.HasPrefix(tg.Name, "Go ring-only pair") {
			if tg.Measured != "12.3k / 10.1k round trips/s = 1.22x" {
				t.Errorf("measured %q", tg.Measured)
			}
			return
		}
	}
	t.Fatal("no ring-only pair target")
}
