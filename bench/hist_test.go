package bench

import (
	"testing"
	"time"
)

func TestBucketsAreMonotonicAndTight(t *testing.T) {
	prev := -1
	for ns := uint64(0); ns < 1<<20; ns += 1 + ns/64 {
		b := bucketOf(ns)
		if b < prev {
			t.Fatalf("bucket of %d is %d, below %d", ns, b, prev)
		}
		prev = b
		lo := lowerBound(b)
		if uint64(lo) > ns || float64(ns-uint64(lo)) > float64(ns)/subBuckets+1 {
			t.Fatalf("%d ns in bucket %d with lower bound %d", ns, b, lo)
		}
	}
}

func TestQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if got > c.want || got < c.want*7/8 {
			t.Errorf("q%.3f = %v, want within 12.5%% below %v", c.q, got, c.want)
		}
	}
	if h.Mean() != 500500*time.Nanosecond {
		t.Errorf("mean %v", h.Mean())
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&h)
	if m.N != 2000 || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Errorf("merge: n %d p50 %v", m.N, m.Quantile(0.5))
	}
	if a := testing.AllocsPerRun(100, func() { h.Record(time.Millisecond) }); a != 0 {
		t.Errorf("Record allocates %.1f", a)
	}
}
