package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/etcdtest"
	"github.com/xenblk/xenblk/scsi/pr/etcdstore"
)

// A suite with PRStores measures both stores' PR command latency and
// each workload on a reserved LUN with both stores, every pair reporting.
// The cluster runs in the test's process: the bench only dials it.
func TestRunSuiteComparesPRStores(t *testing.T) {
	const members = 3
	cluster := etcdtest.Start(t, members)
	es, err := etcdstore.Open(etcdstore.Config{Endpoints: cluster.Endpoints(), Prefix: "/bench-test/"})
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	var progress strings.Builder
	wl := []Workload{{Name: "randread", Random: true, BlockSize: 4096, QD: 1}, {Name: "randwrite", Write: true, Random: true, BlockSize: 4096, QD: 4}}
	s := Suite{Options: Options{Duration: 100 * time.Millisecond, FileSize: 4 << 20, Dir: t.TempDir(), Workloads: wl, Progress: &progress},
		PRStores: es, Pairs: 2}
	rep, err := RunSuite(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	c := rep.PRStores
	if c == nil || c.Members != members || c.Pairs != 2 || len(c.Latency) != 2*len(prCommands) || len(c.IOPS) != len(wl) {
		t.Fatalf("PRStores = %+v; want latency of %d commands in 2 stores and %d workloads", c, len(prCommands), len(wl))
	}
	for _, l := range c.Latency {
		if l.Ops < 2 || l.P50 <= 0 || l.P99 < l.P50 {
			t.Errorf("latency %+v: implausible figures", l)
		}
	}
	for i, r := range c.IOPS {
		if r.Workload != wl[i].Name || r.QD != wl[i].QD || r.AIOPS <= 0 || r.BIOPS <= 0 || r.RatioMin > r.Ratio || r.Ratio > r.RatioMax {
			t.Errorf("IOPS comparison %d: %+v: implausible figures", i, r)
		}
	}
	if n := strings.Count(progress.String(), "pr-stores "); n != 2*2+2*len(wl) {
		t.Errorf("%d progress lines, want %d:\n%s", n, 2*2+2*len(wl), progress.String())
	}
	var out strings.Builder
	WritePRStoreComparison(&out, c)
	if strings.Count(out.String(), "\n") != len(c.Latency)+len(c.IOPS) {
		t.Errorf("WritePRStoreComparison:\n%s", out.String())
	}
}
