package bench

import (
	"context"
	"testing"

	"github.com/xenblk/xenblk/storage"
)

// BenchmarkReadAt4K is one 4 KiB read at a time through the in-process
// stack over the null backend; -benchmem shows 0 allocations.
func BenchmarkReadAt4K(b *testing.B) { benchTransfer(b, false) }

// BenchmarkWriteAt4K is BenchmarkReadAt4K for writes.
func BenchmarkWriteAt4K(b *testing.B) { benchTransfer(b, true) }

func benchTransfer(b *testing.B, write bool) {
	s, err := newStack(storage.Null{Size: 8 << 20}, 1, 0, quietLog)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	ctx := context.Background()
	buf := make([]byte, 4096)
	b.SetBytes(4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		off := int64(i%2048) * 4096
		if write {
			_, err = s.front.WriteAt(ctx, buf, off)
		} else {
			_, err = s.front.ReadAt(ctx, buf, off)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// TestRunMeasures runs two short cases through the whole stack and checks
// the figures hang together.
func TestRunMeasures(t *testing.T) {
	w := []Workload{{Name: "randread", Random: true, BlockSize: 4096, QD: 4}, {Name: "seqread", BlockSize: 1 << 20, QD: 1}}
	res, err := Run(context.Background(), Options{Duration: 300e6, Backends: []string{"null", "memory"}, Queues: []int{2}, Workloads: w, FileSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("%d results, want 4", len(res))
	}
	for _, r := range res {
		if r.Ops == 0 || r.IOPS <= 0 || r.P50 <= 0 || r.P50 > r.P99 || r.P99 > r.P999 {
			t.Errorf("%+v: implausible", r)
		}
		if got := r.MBps; got < r.IOPS*float64(r.BlockSize)/1e6*0.99 || got > r.IOPS*float64(r.BlockSize)/1e6*1.01 {
			t.Errorf("%s: %.1f MB/s from %.0f IOPS of %d bytes", r.Workload, got, r.IOPS, r.BlockSize)
		}
	}
	rep := &Report{Results: res}
	if rep.Find("memory", 2, "seqread", 1) == nil {
		t.Error("Find missed a case")
	}
}
