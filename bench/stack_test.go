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

// BenchmarkBatchRead4K is 4 KiB reads, 32 in flight from one goroutine
// through a blkfront.Batch, over the null backend; -benchmem shows 0
// allocations.
func BenchmarkBatchRead4K(b *testing.B) {
	s, err := newStack(storage.Null{Size: 8 << 20}, 1, 0, quietLog)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	const depth = 32
	bt, err := s.front.NewBatch(depth)
	if err != nil {
		b.Fatal(err)
	}
	defer bt.Close()
	bufs := make([][]byte, depth)
	free := make([]int, depth)
	for i := range bufs {
		bufs[i], free[i] = make([]byte, 4096), i
	}
	var failed error
	reaped := func(tag uint64, n int, err error) {
		if err != nil {
			failed = err
		}
		free = append(free, int(tag))
	}
	ctx := context.Background()
	b.SetBytes(4096)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for len(free) == 0 {
			if _, err := bt.Reap(ctx, 1, reaped); err != nil || failed != nil {
				b.Fatal(err, failed)
			}
		}
		t := free[len(free)-1]
		free = free[:len(free)-1]
		if err := bt.Read(bufs[t], int64(i%2048)*4096, uint64(t)); err != nil {
			b.Fatal(err)
		}
		if i++; len(free) == 0 {
			bt.Submit()
		}
	}
}

// TestRunMeasures runs two short cases in each submit mode through the
// whole stack and checks the figures hang together.
func TestRunMeasures(t *testing.T) {
	w := []Workload{{Name: "randread", Random: true, BlockSize: 4096, QD: 4}, {Name: "seqread", BlockSize: 1 << 20, QD: 1}}
	res, err := Run(context.Background(), Options{Duration: 300e6, Backends: []string{"null", "memory"}, Queues: []int{2}, Workloads: w, FileSize: 16 << 20,
		Submit: []SubmitMode{SubmitBatch, SubmitGoroutines}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 8 {
		t.Fatalf("%d results, want 8", len(res))
	}
	modes := map[SubmitMode]int{}
	for _, r := range res {
		modes[r.Submit]++
		if r.Ops == 0 || r.IOPS <= 0 || r.P50 <= 0 || r.P50 > r.P99 || r.P99 > r.P999 {
			t.Errorf("%+v: implausible", r)
		}
		if got := r.MBps; got < r.IOPS*float64(r.BlockSize)/1e6*0.99 || got > r.IOPS*float64(r.BlockSize)/1e6*1.01 {
			t.Errorf("%s: %.1f MB/s from %.0f IOPS of %d bytes", r.Workload, got, r.IOPS, r.BlockSize)
		}
	}
	if modes[SubmitBatch] != 4 || modes[SubmitGoroutines] != 4 {
		t.Errorf("results by submit mode %v, want 4 of each", modes)
	}
	rep := &Report{Results: res}
	if x := rep.Find("memory", 2, "seqread", 1); x == nil || x.Submit != SubmitBatch {
		t.Errorf("Find: %+v, want the batch mode's seqread", x)
	}
	if _, err := ParseSubmitMode("threads"); err == nil {
		t.Error("ParseSubmitMode accepted an unknown mode")
	}
}
