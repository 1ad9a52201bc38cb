package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/xenblk/xenblk/scsi/pr/etcdstore"
)

// Suite is one whole `xenblk bench` run: the workload cases, the memory
// of a backend serving many devices, the QD1 null cases with the
// backend polling and never polling, and the baselines.
type Suite struct {
	Options
	// Cases runs the workload cases of Options.
	Cases bool
	// CrossProcess runs the cases' blkback in a process of its own
	// (BackendCommand), BackendCPUProfile its CPU profile when set.
	CrossProcess      bool
	BackendCPUProfile string
	// Devices, when > 0, also measures one backend process (always a
	// process of its own) serving this many idle null vbds.
	Devices int
	// Baselines measures the physical floors, fio and memcpy (the same
	// work in C is AgainstC's); with Cases, a null backend and the default poll window it
	// also runs randread QD1 against null with the backend polling 50 us
	// ("null+poll") and never polling ("null+events").
	Baselines bool
	// BackendCommand returns the command (not started) of a backend
	// process: it runs ServeBackend on sock for the named backend with
	// blkback's poll window poll, writing a CPU profile to profile when
	// that is not "". Needed for CrossProcess and Devices.
	BackendCommand func(sock, backend string, poll time.Duration, profile string) *exec.Cmd
	// Compare runs every workload of Options on both sides of each pair,
	// in Pairs interleaved pairs of runs (Compare), in this process.
	Compare []Pair
	Pairs   int
	// PRStores, when set, compares the file store with this etcd store
	// (ComparePRStores) in Pairs interleaved pairs, on the goroutine-mode
	// workloads of Options.
	PRStores *etcdstore.Store
	// AgainstC compares the Go stack, blkback in a process of its own,
	// with the same work in C (RunAgainstC) in Pairs interleaved pairs
	// per target and placement. Needs BackendCommand.
	AgainstC bool
}

// backendCommand is s.BackendCommand bound to a poll window and profile,
// as Options.BackendCommand wants it.
func (s Suite) backendCommand(poll time.Duration, profile string) func(sock, backend string) *exec.Cmd {
	return func(sock, backend string) *exec.Cmd { return s.BackendCommand(sock, backend, poll, profile) }
}

// RunSuite measures what s selects, reporting progress (one line per
// case, per baseline, and the devices' memory) on s.Progress.
func RunSuite(ctx context.Context, s Suite) (*Report, error) {
	o := s.Options
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	if (s.CrossProcess || s.Devices > 0 || s.AgainstC) && s.BackendCommand == nil {
		return nil, errors.New("bench: a backend process was asked for without a command to start it")
	}
	if s.CrossProcess {
		o.BackendCommand = s.backendCommand(o.Poll, s.BackendCPUProfile)
	}
	rep := &Report{When: time.Now(), Machine: ThisMachine(), CrossProcess: s.CrossProcess}
	if s.Cases {
		res, err := Run(ctx, o)
		if err != nil {
			return nil, err
		}
		rep.Results = res
	}
	if s.Devices > 0 {
		do := o
		if do.BackendCommand == nil {
			do.BackendCommand = s.backendCommand(o.Poll, "")
		}
		dm, err := MeasureDevices(ctx, "null", s.Devices, do)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "devices: %d idle in one backend: RSS %.1f -> %.1f MiB, %.2f MiB per device\n",
			dm.Devices, float64(dm.Before.Total)/(1<<20), float64(dm.After.Total)/(1<<20), dm.PerDevice/(1<<20))
		rep.Devices = &dm
	}
	if s.Cases && o.Poll == 0 && slices.Contains(o.Backends, "null") && s.Baselines {
		// QD1 twice more: the backend polling 50 us after work, and the
		// backend never polling (woken by the event channel for every
		// request).
		for _, v := range []struct {
			name string
			poll time.Duration
		}{{"null+poll", 50 * time.Microsecond}, {"null+events", -1}} {
			po := o
			po.Backends, po.Queues, po.Poll = []string{"null"}, []int{1}, v.poll
			if s.CrossProcess {
				po.BackendCommand = s.backendCommand(v.poll, "")
			}
			po.Workloads = []Workload{{Name: "randread", Random: true, BlockSize: 4096, QD: 1}}
			pr, err := Run(ctx, po)
			if err != nil {
				return nil, err
			}
			for i := range pr {
				pr[i].Backend = v.name
			}
			rep.Results = append(rep.Results, pr...)
		}
	}
	for _, p := range s.Compare {
		for _, w := range o.Workloads {
			c, err := Compare(ctx, s.Options, p, w, s.Pairs)
			if err != nil {
				return nil, err
			}
			rep.Comparisons = append(rep.Comparisons, c)
		}
	}
	if s.AgainstC {
		co := s.Options
		co.BackendCommand = s.backendCommand(o.Poll, "")
		c, err := RunAgainstC(ctx, co, s.Pairs)
		rep.AgainstC = c
		if err != nil {
			return nil, err
		}
	}
	if s.PRStores != nil {
		c, err := ComparePRStores(ctx, s.Options, s.PRStores, s.Pairs)
		if err != nil {
			return nil, err
		}
		rep.PRStores = &c
	}
	if s.Baselines {
		rep.Baselines = runBaselines(ctx, o, progress)
	}
	return rep, nil
}

// SelectWorkloads is DefaultWorkloads narrowed to the named workloads
// and queue depths (none named: all).
func SelectWorkloads(names []string, qds []int) []Workload {
	var wl []Workload
	for _, w := range DefaultWorkloads() {
		if (len(names) == 0 || slices.Contains(names, w.Name)) && (len(qds) == 0 || slices.Contains(qds, w.QD)) {
			wl = append(wl, w)
		}
	}
	return wl
}

// medianOf runs run n times and returns the run with the median value,
// noting the spread.
func medianOf(n int, run func() (Baseline, error)) (Baseline, error) {
	var runs []Baseline
	for i := 0; i < n; i++ {
		b, err := run()
		if err != nil {
			return b, err
		}
		runs = append(runs, b)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Value < runs[j].Value })
	m := runs[n/2]
	m.Note = fmt.Sprintf("median of %d runs, %.0f..%.0f", n, runs[0].Value, runs[n-1].Value)
	return m, nil
}

// runBaselines measures what is available; a missing tool is reported on
// the progress stream and leaves its baseline out of the report.
func runBaselines(ctx context.Context, o Options, progress io.Writer) []Baseline {
	d := o.Duration
	var out []Baseline
	add := func(b Baseline, err error) {
		if err != nil {
			fmt.Fprintln(progress, "baseline skipped:", err)
			return
		}
		fmt.Fprintf(progress, "baseline %-40s %14.0f %s\n", b.Name, b.Value, b.Unit)
		out = append(out, b)
	}
	// Every baseline is the median of o.Runs runs, interleaved with the
	// others where it is cheap; the ring pairs take at least 5.
	runs := max(o.Runs, 1)
	add(medianOf(runs, func() (Baseline, error) { return Memcpy(d), nil }))
	region := NewRegion(o.FileSize)
	add(medianOf(runs, func() (Baseline, error) { return region.Memcpy(d), nil }))
	add(medianOf(runs, func() (Baseline, error) { return region.ReadInPlace(d), nil }))
	path, err := BenchFile(o.Dir, o.FileSize)
	if err != nil {
		add(Baseline{}, err)
		return out
	}
	for _, c := range []struct {
		engine string
		qd     int
	}{{"psync", 1}, {"psync", 32}, {"io_uring", 1}, {"io_uring", 32}, {"io_uring", 128}} {
		b, err := medianOf(runs, func() (Baseline, error) {
			return Fio(ctx, path, c.engine, "randread", 4096, c.qd, d)
		})
		if errors.Is(err, ErrNoFio) {
			add(b, err)
			break
		}
		if err != nil && strings.Contains(err.Error(), "io_uring") {
			err = fmt.Errorf("%w (io_uring may be disabled in this kernel)", err)
		}
		add(b, err)
	}
	return out
}

// WriteTargets prints one line per target of the run (Report.Targets):
// measured against the goal, met or missed, in columns as wide as their
// widest entry.
func WriteTargets(w io.Writer, r *Report) {
	targets := r.Targets()
	nameW, measuredW := 0, 0
	for _, t := range targets {
		nameW, measuredW = max(nameW, len(t.Name)), max(measuredW, len(t.Measured))
	}
	for _, t := range targets {
		met := "met"
		if t.Ratio < 1 {
			met = fmt.Sprintf("MISSED (%.0f%% of goal)", 100*t.Ratio)
		}
		fmt.Fprintf(w, "target %-*s  %-*s  goal %-14s %s\n", nameW, t.Name, measuredW, t.Measured, t.Goal, met)
	}
}
