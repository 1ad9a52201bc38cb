package bench

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

func TestSumWordsReadsEveryWord(t *testing.T) {
	p := make([]byte, 4096+8+4) // words in and out of the unrolled loop, and a tail
	var want uint64
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], uint64(i)*0x9e3779b97f4a7c15)
		want += uint64(i) * 0x9e3779b97f4a7c15
	}
	p[len(p)-1] = 0xff // not a whole word: left out
	if got := sumWords(p); got != want {
		t.Fatalf("sum %x, want %x", got, want)
	}
	p[4096] ^= 1 // a word past the unrolled loop
	if got := sumWords(p); got == want {
		t.Fatal("a changed word left the sum alone")
	}
}

func TestRegionBaselines(t *testing.T) {
	r := NewRegion(4 << 20)
	for _, b := range []Baseline{r.Memcpy(20 * time.Millisecond), r.ReadInPlace(20 * time.Millisecond)} {
		if b.Value <= 0 || b.Unit != "MB/s" || b.Name != MemcpyRegionName(4<<20) && b.Name != ReadInPlaceName(4<<20) {
			t.Fatalf("%+v", b)
		}
	}
	if MemcpyRegionName(256<<20) != "memcpy 1 MiB from a 256 MiB region" || ReadInPlaceName(256<<20) != "read 1 MiB in place from a 256 MiB region" {
		t.Fatal(MemcpyRegionName(256<<20), ReadInPlaceName(256<<20))
	}
}

// seqread-view runs through the stack in the batch mode only, and the
// targets compare both 1 MiB reads with hot memcpy and with their region
// baselines, saying which is which.
func TestSeqreadViewCase(t *testing.T) {
	const size = 16 << 20
	var w []Workload
	for _, x := range DefaultWorkloads() {
		if x.Name == "seqread" || x.Name == "seqread-view" {
			w = append(w, x)
		}
	}
	if len(w) != 2 {
		t.Fatalf("default workloads lack the 1 MiB reads: %+v", w)
	}
	res, err := Run(context.Background(), Options{Duration: 200 * time.Millisecond, Backends: []string{"memory"}, Queues: []int{1},
		Workloads: w, FileSize: size, Submit: []SubmitMode{SubmitBatch, SubmitGoroutines}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 {
		t.Fatalf("%d results, want 3 (seqread in both modes, seqread-view in batch): %+v", len(res), res)
	}
	rep := &Report{Results: res, Baselines: []Baseline{{Name: "memcpy 1 MiB", Value: 30000},
		{Name: MemcpyRegionName(size), Value: 10000}, {Name: ReadInPlaceName(size), Value: 12000}}}
	view := rep.Find("memory", 1, "seqread-view", 1)
	if view == nil || view.Submit != SubmitBatch || view.Ops == 0 || view.BlockSize != 1<<20 {
		t.Fatalf("seqread-view: %+v", view)
	}
	var names []string
	for _, tg := range rep.Targets() {
		names = append(names, tg.Name)
	}
	want := []string{
		"memory 1M seqread (copy) / hot memcpy 1 MiB [one buffer, kept in the CPU caches]",
		"memory 1M seqread (copy) / memcpy 1 MiB from a 16 MiB region [region baseline]",
		"memory 1M seqread-view (view) / hot memcpy 1 MiB [one buffer, kept in the CPU caches]",
		"memory 1M seqread-view (view) / read 1 MiB in place from a 16 MiB region [region baseline]",
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Fatalf("targets:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
}
