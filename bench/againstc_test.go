package bench

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSpreadOf(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want Spread
	}{
		{nil, Spread{}},
		{[]float64{2}, Spread{Median: 2, Min: 2, Q1: 2, Q3: 2, Max: 2}},
		{[]float64{5, 1, 4, 2, 3}, Spread{Median: 3, Min: 1, Q1: 2, Q3: 4, Max: 5}},
		{[]float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}, Spread{Median: 6, Min: 1, Q1: 3, Q3: 8, Max: 10}},
	} {
		if got := SpreadOf(c.in); got != c.want {
			t.Errorf("SpreadOf(%v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

// A verdict needs three pairs in four on one side of the goal; a median
// on one side with the middle half across it concludes nothing.
func TestJudge(t *testing.T) {
	for _, c := range []struct {
		s    Spread
		want string
	}{
		{Spread{Median: 1.0, Min: 0.5, Q1: 0.8, Q3: 1.2, Max: 3}, VerdictMet},
		{Spread{Median: 0.5, Min: 0.1, Q1: 0.4, Q3: 0.79, Max: 2}, VerdictMissed},
		{Spread{Median: 0.9, Min: 0.3, Q1: 0.7, Q3: 1.1, Max: 1.5}, VerdictUnclear},
		{Spread{Median: 0.7, Min: 0.3, Q1: 0.6, Q3: 0.8, Max: 1.5}, VerdictUnclear},
	} {
		if got := Judge(c.s, 0.8); got != c.want {
			t.Errorf("Judge(%+v, 0.8) = %q, want %q", c.s, got, c.want)
		}
	}
}

// RunAgainstC measures every target in every placement against blkpair.c,
// each from interleaved pairs, and the ring-only pairs last; the report
// prints a row for each.
func TestRunAgainstC(t *testing.T) {
	requireGCC(t)
	dir := t.TempDir()
	const size = 8 << 20
	var progress strings.Builder
	o := Options{Duration: 50 * time.Millisecond, Dir: dir, FileSize: size, Progress: &progress,
		BackendCommand: testBackendCommandFor(dir, size)}
	got, err := RunAgainstC(context.Background(), o, 2)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	want := len(CCases())*len(Placements()) + 1
	if len(got) != want {
		t.Fatalf("%d comparisons, want %d: %+v", len(got), want, got)
	}
	for _, c := range got {
		if c.Pairs != 2 || c.GoIOPS <= 0 || c.CIOPS <= 0 || c.Ratio.Min <= 0 || c.Ratio.Min > c.Ratio.Median || c.Ratio.Median > c.Ratio.Max || c.Verdict == "" {
			t.Errorf("%+v: implausible", c)
		}
		if c.Backend != ringOnlyBackend && c.CPURatio.Min <= 0 {
			t.Errorf("%+v: no CPU per request", c)
		}
	}
	if n := strings.Count(progress.String(), "against C "); n != 2*want {
		t.Errorf("%d progress lines, want %d:\n%s", n, 2*want, progress.String())
	}
	var md strings.Builder
	rep := &Report{AgainstC: got}
	if err := WriteMarkdown(&md, rep); err != nil {
		t.Fatal(err)
	}
	if rows := strings.Count(md.String(), "| same work in C |"); rows != want || strings.Contains(md.String(), "Every case") {
		t.Errorf("markdown has %d rows against C, want %d, and no empty sections:\n%s", rows, want, md.String())
	}
}

// The placements use CPUs this process may run on: pinning to one it
// may not would fail (a container's cpuset need not hold CPU 0).
func TestPlacementsUseAllowedCPUs(t *testing.T) {
	allowed := allowedCPUs(1 << 10)
	p := Placements()
	if len(p) == 0 || len(p) > 2 || len(p) == 2 && len(allowed) < 2 {
		t.Fatalf("placements %+v with CPUs %v", p, allowed)
	}
	for _, pl := range p {
		if !slices.Contains(allowed, pl.Front) || !slices.Contains(allowed, pl.Back) {
			t.Errorf("%+v: a CPU outside %v", pl, allowed)
		}
	}
	if p[0].Front != p[0].Back || len(p) == 2 && p[1].Front == p[1].Back {
		t.Errorf("placements %+v: want one CPU, then two", p)
	}
}

// --backend, --workload and --qd narrow the targets against C; by
// default every one runs.
func TestSelectCCases(t *testing.T) {
	all := Options{}
	all.defaults()
	if got := selectCCases(all); len(got) != len(CCases()) {
		t.Errorf("defaults select %d targets, want %d", len(got), len(CCases()))
	}
	o := Options{Backends: []string{"null", "memory"}, Workloads: SelectWorkloads([]string{"randread"}, []int{32})}
	got := selectCCases(o)
	if len(got) != 1 || got[0].Backend != "null" || got[0].Workload.QD != 32 {
		t.Errorf("null and memory, randread QD32: %+v", got)
	}
}
