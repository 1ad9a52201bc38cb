package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParsePair(t *testing.T) {
	p, err := ParsePair("blkif/file:vscsi/qcow2")
	if err != nil || p != (Pair{Side{"blkif", "file"}, Side{"vscsi", "qcow2"}}) {
		t.Fatalf("ParsePair: %+v %v", p, err)
	}
	for _, bad := range []string{"blkif/null", "blkif/null:", "nvme/null:blkif/null", "blkif/null:vscsi/tape", "blkif:vscsi"} {
		if _, err := ParsePair(bad); err == nil {
			t.Errorf("ParsePair(%q) accepted", bad)
		}
	}
}

// A suite with comparisons runs each workload on both sides of each pair,
// interleaved, and reports a ratio from every pair: vscsi beside blkif on
// one stack, an allocated qcow2 beside the raw file, a fresh qcow2's
// allocating writes, and blkif in grant-copy mode beside blkif mapping.
func TestRunSuiteCompares(t *testing.T) {
	var progress strings.Builder
	pairs := []Pair{
		{Side{"blkif", "null"}, Side{"vscsi", "null"}},
		{Side{"blkif", "file"}, Side{"blkif", "qcow2"}},
		{Side{"blkif", "file"}, Side{"blkif", "qcow2-fresh"}},
		{Side{"blkif", "file"}, Side{"blkif-copy", "file"}},
	}
	wl := []Workload{{Name: "randread", Random: true, BlockSize: 4096, QD: 1}, {Name: "randwrite", Write: true, Random: true, BlockSize: 4096, QD: 4}}
	s := Suite{Options: Options{Duration: 50 * time.Millisecond, FileSize: 4 << 20, Dir: t.TempDir(), Workloads: wl, Progress: &progress},
		Compare: pairs, Pairs: 2}
	rep, err := RunSuite(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 0 || len(rep.Comparisons) != len(pairs)*len(wl) {
		t.Fatalf("%d results, %d comparisons; want 0 and %d", len(rep.Results), len(rep.Comparisons), len(pairs)*len(wl))
	}
	for i, c := range rep.Comparisons {
		p, w := pairs[i/len(wl)], wl[i%len(wl)]
		if c.A != p.A || c.B != p.B || c.Workload != w.Name || c.QD != w.QD || c.Pairs != 2 {
			t.Errorf("comparison %d: %+v, want %v %s qd%d in 2 pairs", i, c, p, w.Name, w.QD)
		}
		if c.AIOPS <= 0 || c.BIOPS <= 0 || c.RatioMin <= 0 || c.RatioMin > c.Ratio || c.Ratio > c.RatioMax ||
			c.CPURatioMin <= 0 || c.CPURatioMin > c.CPURatio || c.CPURatio > c.CPURatioMax {
			t.Errorf("comparison %d: %+v: implausible figures", i, c)
		}
	}
	if n := strings.Count(progress.String(), "compare "); n != 2*len(pairs)*len(wl) {
		t.Errorf("%d progress lines for pairs, want %d:\n%s", n, 2*len(pairs)*len(wl), progress.String())
	}
	var out strings.Builder
	WriteComparisons(&out, rep)
	if !strings.Contains(out.String(), "vscsi/null") || strings.Count(out.String(), "\n") != len(rep.Comparisons) {
		t.Errorf("WriteComparisons:\n%s", out.String())
	}
}

// A workload that reads in place needs blkfront's Batch: not compared.
func TestCompareRefusesAView(t *testing.T) {
	w := Workload{Name: "seqread-view", BlockSize: 1 << 20, QD: 1, View: true}
	if _, err := Compare(context.Background(), Options{Dir: t.TempDir()}, Pair{Side{"blkif", "null"}, Side{"vscsi", "null"}}, w, 1); err == nil {
		t.Error("compared a view workload")
	}
}
