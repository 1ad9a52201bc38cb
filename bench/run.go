// Package bench drives workloads through the whole xenblk stack (blkfront,
// the simulated host, blkback, a storage backend) and measures the
// baselines the results are judged against: fio on the same file, memcpy,
// and a ring-only ping-pong in Go and in C with Xen's ring.h.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/qcow2"
)

var quietLog = slog.New(slog.DiscardHandler)

// Workload is one access pattern.
type Workload struct {
	Name      string // randread, randwrite, seqread, seqread-view
	Write     bool
	Random    bool
	BlockSize int
	QD        int // concurrent requests in flight
	// View: reads leave their data in the request's granted pages
	// (blkfront's Batch.ReadView) and the consumer sums it there (every
	// byte read once, as the in-place baseline does); only in the batch
	// submit mode. Otherwise a read's data is copied to the caller's
	// buffer and not looked at (as memcpy's destination is not).
	View bool
}

// DefaultWorkloads are issue 6's: 4 KiB random read and write at queue
// depth 1, 32 and 128, and 1 MiB sequential reads, copied to the caller
// (seqread) and read in place (seqread-view).
func DefaultWorkloads() []Workload {
	var w []Workload
	for _, write := range []bool{false, true} {
		name := "randread"
		if write {
			name = "randwrite"
		}
		for _, qd := range []int{1, 32, 128} {
			w = append(w, Workload{Name: name, Write: write, Random: true, BlockSize: 4096, QD: qd})
		}
	}
	return append(w, Workload{Name: "seqread", BlockSize: 1 << 20, QD: 1},
		Workload{Name: "seqread-view", BlockSize: 1 << 20, QD: 1, View: true})
}

// Options select what Run measures.
type Options struct {
	Duration  time.Duration // per case
	Backends  []string      // of Backends
	Queues    []int
	Workloads []Workload
	Poll      time.Duration // blkback's busy-poll window
	Dir       string        // where the file backend's image lives
	FileSize  int64         // also the region the workloads address
	// Progress, when set, gets one line per case as it runs.
	Progress io.Writer
	// Log receives blkback's and blkfront's logs (default: discarded).
	Log *slog.Logger
	// Runs per case (default 1): the workloads of a stack run in turn,
	// Runs times over, and each figure is the median of its runs.
	Runs int
	// BackendCommand, when set, runs blkback in another process: it
	// returns the command (not started) that calls ServeBackend on sock.
	BackendCommand func(sock, backend string) *exec.Cmd
	// Submit lists how requests are put in flight, each case run in each
	// (default: SubmitBatch only).
	Submit []SubmitMode
}

// SubmitMode is how a workload keeps QD requests in flight.
type SubmitMode string

const (
	// SubmitBatch: one goroutine per queue keeps its share of QD in flight
	// through a blkfront.Batch (submit many, reap many).
	SubmitBatch SubmitMode = "batch"
	// SubmitGoroutines: QD goroutines, each with one ReadAt or WriteAt
	// in flight.
	SubmitGoroutines SubmitMode = "goroutines"
)

// ParseSubmitMode checks a mode's name.
func ParseSubmitMode(s string) (SubmitMode, error) {
	switch m := SubmitMode(s); m {
	case SubmitBatch, SubmitGoroutines:
		return m, nil
	}
	return "", fmt.Errorf("bench: submit mode %q: want %s or %s", s, SubmitBatch, SubmitGoroutines)
}

func (o *Options) defaults() {
	if o.Duration == 0 {
		o.Duration = 2 * time.Second
	}
	if o.Runs < 1 {
		o.Runs = 1
	}
	if len(o.Backends) == 0 {
		o.Backends = []string{"null", "memory", "file"}
	}
	if len(o.Queues) == 0 {
		o.Queues = []int{1, 2}
	}
	if len(o.Workloads) == 0 {
		o.Workloads = DefaultWorkloads()
	}
	if o.FileSize == 0 {
		o.FileSize = 256 << 20
	}
	if o.Log == nil {
		o.Log = quietLog
	}
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if len(o.Submit) == 0 {
		o.Submit = []SubmitMode{SubmitBatch}
	}
}

// Result is one case's figures.
type Result struct {
	Backend string `json:"backend"`
	Queues  int    `json:"queues"`
	// Submit is how the requests were put in flight.
	Submit    SubmitMode    `json:"submit"`
	Workload  string        `json:"workload"`
	BlockSize int           `json:"block_size"`
	QD        int           `json:"qd"`
	Ops       uint64        `json:"ops"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	IOPS      float64       `json:"iops"`
	MBps      float64       `json:"mb_per_s"` // 10^6 bytes per second
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	P999      time.Duration `json:"p999_ns"`
	Hist      *Histogram    `json:"-"`
	// Runs is how many runs the figures are the median of; IOPSMin and
	// IOPSMax are the spread of those runs.
	Runs    int     `json:"runs"`
	IOPSMin float64 `json:"iops_min"`
	IOPSMax float64 `json:"iops_max"`
	// CPUPerOp is the process's CPU time (user and system, every thread:
	// the frontend's, the backend's, io_uring's workers) per request of a
	// goroutine case, warm-up included; 0 where not measured. Unlike
	// IOPS it hardly moves with what else the machine runs.
	CPUPerOp time.Duration `json:"cpu_per_op_ns,omitempty"`
	// Completed counts every request of a batch case, warm-up included
	// (the count CPU time over the whole case divides by).
	Completed uint64 `json:"-"`
}

// Report is a whole run.
type Report struct {
	When time.Time `json:"when"`
	// CrossProcess: blkback ran in its own process.
	CrossProcess bool       `json:"cross_process"`
	Machine      Machine    `json:"machine"`
	Results      []Result   `json:"results"`
	Baselines    []Baseline `json:"baselines"`
	// Devices, when measured, is one backend process serving many vbds.
	Devices *DeviceMemory `json:"devices,omitempty"`
	// Comparisons are Suite.Compare's, each workload on both sides.
	Comparisons []Comparison `json:"comparisons,omitempty"`
	// AgainstC are Suite.AgainstC's comparisons with blkpair.c.
	AgainstC []CComparison `json:"against_c,omitempty"`
	// PRStores is Suite.PRStores' comparison of the reservation stores.
	PRStores *PRStoreComparison `json:"pr_stores,omitempty"`
}

// Run measures every backend x queues x workload case in this process.
func Run(ctx context.Context, o Options) ([]Result, error) {
	o.defaults()
	var out []Result
	nw := len(o.Workloads)
	total := len(o.Backends) * len(o.Queues) * len(o.Submit) * nw
	for _, w := range o.Workloads {
		for _, m := range o.Submit {
			if !w.runsIn(m) {
				total -= len(o.Backends) * len(o.Queues)
				if o.Progress != nil {
					fmt.Fprintf(o.Progress, "%s runs in the %s submit mode only: not in %s\n", w.Name, SubmitBatch, m)
				}
			}
		}
	}
	for _, b := range o.Backends {
		for _, q := range o.Queues {
			s, err := openStack(b, q, o)
			if err != nil {
				return out, err
			}
			// runs[mi*nw+wi]: the runs of mode mi, workload wi.
			runs := make([][]Result, len(o.Submit)*nw)
			for k := 0; k < o.Runs; k++ {
				for mi, m := range o.Submit {
					for wi, w := range o.Workloads {
						if !w.runsIn(m) {
							continue
						}
						if err := ctx.Err(); err != nil {
							s.close()
							return out, err
						}
						r, err := runCase(ctx, s, w, m, o)
						if err != nil {
							s.close()
							return out, fmt.Errorf("bench: %s q%d %s %s: %w", b, q, w.Name, m, err)
						}
						runs[mi*nw+wi] = append(runs[mi*nw+wi], r)
						if o.Progress != nil {
							fmt.Fprintf(o.Progress, "[%2d/%d] %-6s q%d %-12s %4dK qd%-3d %-10s %10.0f IOPS %8.1f MB/s p50 %v (run %d of %d)\n",
								len(out)+mi*nw+wi+1, total, b, q, w.Name, w.BlockSize>>10, w.QD, m, r.IOPS, r.MBps, r.P50, k+1, o.Runs)
						}
					}
				}
			}
			for i := range runs {
				if len(runs[i]) == 0 { // a view workload in the goroutines mode
					continue
				}
				r := median(runs[i])
				r.Backend, r.Queues = b, q
				out = append(out, r)
			}
			s.close()
		}
	}
	return out, nil
}

// openStack assembles a stack serving a fresh device of the backend:
// blkback closes its device when the stack stops, so each stack gets its
// own (the file backend reopens the image).
func openStack(backend string, queues int, o Options) (*stack, error) {
	if o.BackendCommand != nil {
		s, err := newCrossStack(backend, queues, o)
		if err != nil {
			return nil, fmt.Errorf("bench: across processes: %w", err)
		}
		return s, nil
	}
	dev, err := openBackend(backend, o)
	if err != nil {
		return nil, err
	}
	s, err := newStack(dev, queues, o.Poll, o.Log)
	if err != nil {
		dev.Close()
		return nil, err
	}
	return s, nil
}

func openBackend(name string, o Options) (storage.Device, error) {
	switch name {
	case "null":
		return storage.Null{Size: o.FileSize}, nil
	case "memory":
		m := storage.NewMemory(o.FileSize)
		if err := fill(m, o.FileSize); err != nil {
			return nil, err
		}
		return m, nil
	case "file":
		path, err := BenchFile(o.Dir, o.FileSize)
		if err != nil {
			return nil, err
		}
		return storage.OpenFile(path, storage.FileOptions{})
	case "qcow2", "qcow2-fresh":
		return openQcow2(o.Dir, o.FileSize, name == "qcow2")
	}
	return nil, fmt.Errorf("bench: unknown backend %q (%s)", name, strings.Join(Backends, ", "))
}

// Backends are the storage backends a case or a comparison can run on.
var Backends = []string{"null", "memory", "file", "qcow2", "qcow2-fresh"}

// openQcow2 creates a new qcow2 image of size bytes in dir
// (xenblk-bench.qcow2, replacing any there) and opens it; allocated,
// every cluster of it is written first (non-zero data, as BenchFile's),
// so the workloads measure the mapped path; otherwise every first write
// to a cluster allocates it.
func openQcow2(dir string, size int64, allocated bool) (storage.Device, error) {
	path := filepath.Join(dir, benchQcow2)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := qcow2.Create(path, size); err != nil {
		return nil, err
	}
	img, err := qcow2.Open(path, qcow2.Options{})
	if err != nil {
		return nil, err
	}
	if allocated {
		if err := fill(img, size); err != nil {
			img.Close()
			return nil, fmt.Errorf("bench: allocate %s: %w", path, err)
		}
	}
	return img, nil
}

// fill writes non-zero data everywhere so reads copy real pages: 1 MiB
// of fillPattern, again and again.
func fill(w io.WriterAt, size int64) error {
	buf := fillPattern()
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := w.WriteAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
			return err
		}
	}
	return nil
}

// fillPattern is the 1 MiB fill repeats.
func fillPattern() []byte {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	return buf
}

// The images' names in Options.Dir: the file backend's (fio's too), and
// the qcow2 backends'.
const (
	benchImage = "xenblk-bench.img"
	benchQcow2 = "xenblk-bench.qcow2"
)

// BenchFile returns the path of a fully written image of size bytes in
// dir (xenblk-bench.img), creating it if needed; fio uses the same file.
func BenchFile(dir string, size int64) (string, error) {
	path := filepath.Join(dir, benchImage)
	if st, err := os.Stat(path); err == nil && st.Size() == size {
		return path, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := fill(f, size); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// runsIn reports whether the workload runs in submit mode m: a view
// needs a Batch.
func (w Workload) runsIn(m SubmitMode) bool { return !w.View || m == SubmitBatch }

// runCase runs one workload in one submit mode and measures it.
func runCase(ctx context.Context, s *stack, w Workload, m SubmitMode, o Options) (Result, error) {
	var r Result
	var err error
	if m == SubmitBatch {
		r, err = runBatchCase(ctx, s, w, o)
	} else {
		r, err = runGoroutineCase(ctx, s.front, w, o)
	}
	r.Submit = m
	return r, err
}

// window is a case's timing: a short warm-up (which fills the
// persistent-grant caches), then the measured time; requests count when
// they complete after measureFrom, and each worker stops at its first
// completion past deadline.
type window struct{ measureFrom, deadline time.Time }

func newWindow(o Options) window {
	warm := min(o.Duration/10, 200*time.Millisecond)
	start := time.Now()
	return window{measureFrom: start.Add(warm), deadline: start.Add(warm + o.Duration)}
}

// result folds the workers' histograms and last completions into the
// case's figures; the window runs to the last completion counted.
func (win window) result(w Workload, o Options, hists []Histogram, ends []time.Time) Result {
	h := new(Histogram)
	for i := range hists {
		h.Merge(&hists[i])
	}
	el := o.Duration
	for _, e := range ends {
		el = max(el, e.Sub(win.measureFrom))
	}
	r := Result{Workload: w.Name, BlockSize: w.BlockSize, QD: w.QD, Ops: h.N, Elapsed: el, Hist: h,
		P50: h.Quantile(0.5), P99: h.Quantile(0.99), P999: h.Quantile(0.999)}
	r.IOPS = float64(h.N) / el.Seconds()
	r.MBps = r.IOPS * float64(w.BlockSize) / 1e6
	return r
}

// target is what a goroutine case reads and writes: blkfront's disk, or
// a vscsifront LUN (lunTarget).
type target interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	WriteAt(ctx context.Context, p []byte, off int64) (int, error)
}

// runGoroutineCase keeps QD requests in flight to t with QD goroutines,
// each calling ReadAt or WriteAt in a loop.
func runGoroutineCase(ctx context.Context, t target, w Workload, o Options) (Result, error) {
	span := o.FileSize / int64(w.BlockSize)
	hists := make([]Histogram, w.QD)
	ends := make([]time.Time, w.QD)
	counts := make([]int64, w.QD) // every request, warm-up included
	cpu0 := processCPU()
	var wg sync.WaitGroup
	errs := make(chan error, w.QD)
	win := newWindow(o)
	measureFrom, deadline := win.measureFrom, win.deadline
	for i := 0; i < w.QD; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			buf := make([]byte, w.BlockSize)
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			next := int64(i) * span / int64(w.QD)
			h := &hists[i]
			// One clock read per request: a request's start is the
			// previous one's end (the loop between them is a few ns).
			t0 := time.Now()
			for {
				var blk int64
				if w.Random {
					blk = rng.Int64N(span)
				} else {
					blk = next % span
					next++
				}
				var err error
				if w.Write {
					_, err = t.WriteAt(ctx, buf, blk*int64(w.BlockSize))
				} else {
					_, err = t.ReadAt(ctx, buf, blk*int64(w.BlockSize))
				}
				t1 := time.Now()
				if err != nil {
					errs <- err
					return
				}
				counts[i]++
				// A request counts when it completes inside the window,
				// which runs on to each worker's last completion.
				if t1.After(measureFrom) {
					h.Record(t1.Sub(t0))
				}
				if t1.After(deadline) {
					ends[i] = t1
					return
				}
				t0 = t1
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return Result{}, err
	}
	r := win.result(w, o, hists, ends)
	var all int64
	for _, n := range counts {
		all += n
	}
	if all > 0 {
		r.CPUPerOp = (processCPU() - cpu0) / time.Duration(all)
	}
	return r, nil
}

// processCPU is the CPU time every thread of the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// median folds the runs of one case: IOPS, bandwidth and each latency
// percentile are the median of the runs' (each on its own); the histogram
// is the median-IOPS run's.
func median(runs []Result) Result {
	byIOPS := append([]Result(nil), runs...)
	sort.Slice(byIOPS, func(i, j int) bool { return byIOPS[i].IOPS < byIOPS[j].IOPS })
	m := byIOPS[len(byIOPS)/2]
	mid := func(get func(Result) time.Duration) time.Duration {
		v := make([]time.Duration, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m.P50 = mid(func(r Result) time.Duration { return r.P50 })
	m.P99 = mid(func(r Result) time.Duration { return r.P99 })
	m.P999 = mid(func(r Result) time.Duration { return r.P999 })
	m.Runs, m.IOPSMin, m.IOPSMax = len(runs), byIOPS[0].IOPS, byIOPS[len(byIOPS)-1].IOPS
	return m
}
