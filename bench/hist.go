package bench

import (
	"math/bits"
	"time"
)

// Histogram counts latencies in log-linear buckets: for each power of two
// of nanoseconds, subBuckets equal slices, so every bucket is within
// 1/subBuckets (12.5%) of its value. Record never allocates.
type Histogram struct {
	Counts [64 * subBuckets]uint64
	N      uint64
	Sum    time.Duration
	Max    time.Duration
}

const subBits = 3
const subBuckets = 1 << subBits

func bucketOf(ns uint64) int {
	if ns < subBuckets {
		return int(ns)
	}
	e := bits.Len64(ns) - 1 // ns in [2^e, 2^(e+1))
	sub := int(ns>>(e-subBits)) & (subBuckets - 1)
	return (e-subBits+1)*subBuckets + sub
}

// lowerBound is the smallest latency that falls in bucket b.
func lowerBound(b int) time.Duration {
	if b < subBuckets {
		return time.Duration(b)
	}
	e := b/subBuckets + subBits - 1
	sub := b % subBuckets
	return time.Duration(uint64(1)<<e | uint64(sub)<<(e-subBits))
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.Counts[bucketOf(uint64(d))]++
	h.N++
	h.Sum += d
	h.Max = max(h.Max, d)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.N += o.N
	h.Sum += o.Sum
	h.Max = max(h.Max, o.Max)
}

// Quantile returns the lower bound of the bucket holding the q-quantile
// (0 < q <= 1), so it is within 12.5% below the true value.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.N == 0 {
		return 0
	}
	rank := uint64(q*float64(h.N) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for b, c := range h.Counts {
		seen += c
		if seen >= rank {
			return lowerBound(b)
		}
	}
	return h.Max
}

// Mean is the average latency.
func (h *Histogram) Mean() time.Duration {
	if h.N == 0 {
		return 0
	}
	return h.Sum / time.Duration(h.N)
}
