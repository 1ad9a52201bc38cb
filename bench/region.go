package bench

import (
	"encoding/binary"
	"fmt"
	"time"
)

// The honest ceilings of a 1 MiB read from the memory backend. Memcpy
// copies one hot 1 MiB buffer, which stays in the caches; a 1 MiB read of
// the memory backend must fetch its source from a region as large as the
// disk (256 MiB by default), which they do not hold, at least once. These
// baselines walk such a region 1 MiB at a time.

// Region is a buffer of the bench disk's size, written through (its pages
// are real memory, not the shared zero page).
type Region struct {
	buf []byte
	off int // where the next 1 MiB starts
}

const regionStep = 1 << 20

// NewRegion allocates and fills a region of size bytes (at least 1 MiB).
func NewRegion(size int64) *Region {
	r := &Region{buf: make([]byte, max(size, regionStep))}
	for i := range r.buf {
		r.buf[i] = byte(i*7 + 1)
	}
	return r
}

// MemcpyRegionName names Region.Memcpy's baseline for a region of size
// bytes.
func MemcpyRegionName(size int64) string {
	return fmt.Sprintf("%s%d MiB region", memcpyRegionPrefix, size>>20)
}

// ReadInPlaceName names Region.ReadInPlace's baseline.
func ReadInPlaceName(size int64) string {
	return fmt.Sprintf("%s%d MiB region", readInPlacePrefix, size>>20)
}

const (
	memcpyRegionPrefix = "memcpy 1 MiB from a "
	readInPlacePrefix  = "read 1 MiB in place from a "
)

// next is the region's next 1 MiB, wrapping at its end.
func (r *Region) next() []byte {
	if r.off+regionStep > len(r.buf) {
		r.off = 0
	}
	p := r.buf[r.off : r.off+regionStep]
	r.off += regionStep
	return p
}

// Memcpy measures copying the region into one 1 MiB buffer, 1 MiB at a
// time, for d: the copy a 1 MiB read must make at least once (the memory
// backend's storage to the granted page). MB/s.
func (r *Region) Memcpy(d time.Duration) Baseline {
	dst := make([]byte, regionStep)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		for k := 0; k < 16; k++ {
			copy(dst, r.next())
		}
		n += 16
	}
	el := time.Since(start)
	return Baseline{Name: MemcpyRegionName(int64(len(r.buf))), Value: float64(n) * regionStep / el.Seconds() / 1e6, Unit: "MB/s"}
}

// ReadInPlace measures reading the region in place for d, 1 MiB at a
// time, every byte once (the sum of its 8-byte words, as the seqread-view
// workload's consumer does). MB/s.
func (r *Region) ReadInPlace(d time.Duration) Baseline {
	var sum uint64
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		for k := 0; k < 16; k++ {
			sum += sumWords(r.next())
		}
		n += 16
	}
	el := time.Since(start)
	viewSums.Add(sum)
	return Baseline{Name: ReadInPlaceName(int64(len(r.buf))), Value: float64(n) * regionStep / el.Seconds() / 1e6, Unit: "MB/s"}
}

// sumWords adds p's little-endian 8-byte words (a trailing part shorter
// than a word is left out: pages and sectors have none): a consumer that
// reads every byte once and cheaply. Four sums keep the adds independent.
func sumWords(p []byte) uint64 {
	var a, b, c, d uint64
	for len(p) >= 32 {
		a += binary.LittleEndian.Uint64(p)
		b += binary.LittleEndian.Uint64(p[8:])
		c += binary.LittleEndian.Uint64(p[16:])
		d += binary.LittleEndian.Uint64(p[24:])
		p = p[32:]
	}
	for len(p) >= 8 {
		a += binary.LittleEndian.Uint64(p)
		p = p[8:]
	}
	return a + b + c + d
}
