package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xenblk/xenblk/internal/cbaseline"
)

// GoalAgainstC is what the Go stack must reach against the same work in
// C: at least 0.8x its requests per second.
const GoalAgainstC = 0.8

// Placement is where the two ends of a pair run: the frontend (with the
// simulated host, in the bench process; C's frontend process) on CPU
// Front, the backend process on CPU Back; -1 leaves an end unpinned.
type Placement struct {
	Name  string `json:"name"`
	Front int    `json:"front_cpu"`
	Back  int    `json:"back_cpu"`
}

// Placements are the two modes of a hand-off between the ends: on one
// CPU every hand-off is a context switch there (while one end polls, the
// other waits for the CPU); on two, every hand-off crosses vCPUs (the
// wake-up whose cost made unpinned runs bimodal). The CPUs are the first
// two this process may run on; with one, there is only the first mode.
func Placements() []Placement {
	cpus := allowedCPUs(2)
	if len(cpus) == 0 {
		cpus = []int{0}
	}
	p := []Placement{{Name: "one CPU", Front: cpus[0], Back: cpus[0]}}
	if len(cpus) > 1 {
		p = append(p, Placement{Name: "two CPUs", Front: cpus[0], Back: cpus[1]})
	}
	return p
}

// CCase is one target against C: a backend and a workload, run by the Go
// stack across processes (one queue, blkfront's Batch) and by blkpair.c.
type CCase struct {
	Backend  string
	Workload Workload
}

// CCases are issue 16's: 4 KiB random reads at QD1, 32 and 128 on the
// null and file backends, and 1 MiB reads from memory (two copies: the
// backend's into the granted pages, the frontend's to the caller).
func CCases() []CCase {
	var c []CCase
	for _, b := range []string{"null", "file"} {
		for _, qd := range []int{1, 32, 128} {
			c = append(c, CCase{b, Workload{Name: "randread", Random: true, BlockSize: 4096, QD: qd}})
		}
	}
	return append(c, CCase{"memory", Workload{Name: "seqread", BlockSize: 1 << 20, QD: 1}})
}

// selectCCases is CCases narrowed to o's backends and workloads (all of
// them by default): a change to one path can be measured on it alone.
func selectCCases(o Options) []CCase {
	var out []CCase
	for _, c := range CCases() {
		if !slices.Contains(o.Backends, c.Backend) {
			continue
		}
		for _, w := range o.Workloads {
			if w.Name == c.Workload.Name && w.QD == c.Workload.QD && w.BlockSize == c.Workload.BlockSize {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// The ring-only ping-pong's row among the comparisons against C.
const (
	ringOnlyBackend   = "ring only"
	ringOnlyPlacement = "not pinned: two threads of one process"
)

// CComparison is one target measured against C in interleaved pairs of
// runs (Go, C, Go, C ...), in one placement.
type CComparison struct {
	Backend   string `json:"backend"`
	Workload  string `json:"workload"`
	BlockSize int    `json:"block_size"`
	QD        int    `json:"qd"`
	Placement string `json:"placement"`
	Pairs     int    `json:"pairs"`
	// GoIOPS and CIOPS are each side's median over its runs.
	GoIOPS float64 `json:"go_iops"`
	CIOPS  float64 `json:"c_iops"`
	// Ratio is Go/C IOPS, its spread over the pairs.
	Ratio Spread `json:"ratio"`
	// CPURatio is Go/C CPU time per request, both ends' (above 1: Go
	// works more per request); zero where not measured.
	CPURatio Spread `json:"cpu_ratio"`
	// Verdict is the ratio's against GoalAgainstC (Judge).
	Verdict string `json:"verdict"`
}

// Spread is a sample's median, quartiles and extremes.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Q1     float64 `json:"q1"`
	Q3     float64 `json:"q3"`
	Max    float64 `json:"max"`
}

// SpreadOf summarises v (not changed); quartiles are nearest-rank.
func SpreadOf(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	at := func(p float64) float64 { return s[int(p*float64(len(s)-1)+0.5)] }
	return Spread{Median: at(0.5), Min: s[0], Q1: at(0.25), Q3: at(0.75), Max: s[len(s)-1]}
}

// The verdicts of a ratio against its goal.
const (
	VerdictMet     = "met"
	VerdictMissed  = "missed"
	VerdictUnclear = "spread too wide to conclude"
)

// Judge says whether the pairs' ratios meet goal: met when three pairs in
// four reach it (the lower quartile does), missed when three in four fall
// short (the upper quartile does), and otherwise that the spread is too
// wide to conclude, whatever the median says.
func Judge(r Spread, goal float64) string {
	switch {
	case r.Q1 >= goal:
		return VerdictMet
	case r.Q3 < goal:
		return VerdictMissed
	}
	return VerdictUnclear
}

// RunAgainstC measures every CCase of o's backends and workloads against
// blkpair.c in each placement, pairs interleaved pairs of o.Duration
// runs, blkback in a process of its own (o.BackendCommand, needed), then
// the ring-only pairs (Go's and ring.h's, each a pair of threads in one
// process, not pinned). o.Dir and o.FileSize are both sides': the file
// backend's image, the region addressed.
func RunAgainstC(ctx context.Context, o Options, pairs int) ([]CComparison, error) {
	o.defaults()
	if o.BackendCommand == nil {
		return nil, fmt.Errorf("bench: against C: no command to start the backend process")
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	pairs = max(pairs, 1)
	prog, err := buildC(ctx, "blkpair", cbaseline.BlkPair)
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	image, err := BenchFile(o.Dir, o.FileSize)
	if err != nil {
		return nil, err
	}
	var out []CComparison
	cases := selectCCases(o)
	var backends []string
	for _, c := range cases {
		if !slices.Contains(backends, c.Backend) {
			backends = append(backends, c.Backend)
		}
	}
	for _, b := range backends {
		for _, pl := range Placements() {
			res, err := againstCOneStack(ctx, o, prog, image, b, pl, cases, pairs, progress)
			out = append(out, res...)
			if err != nil {
				return out, err
			}
		}
	}
	ring, err := ringAgainstC(ctx, o.Duration, pairs, progress)
	if err != nil {
		return out, err
	}
	return append(out, ring), nil
}

// againstCOneStack runs the cases of backend b in placement pl on one Go
// stack (its backend process pinned for its life), each interleaved with
// blkpair.c's runs.
//
// Each Go process runs as it would started on its one CPU, as each C end
// is one thread: GOMAXPROCS 1. The bench process is pinned (and sized)
// before it starts the backend process, which inherits the pinning and
// so sizes its own runtime to one CPU, and is then moved to its CPU.
func againstCOneStack(ctx context.Context, o Options, prog *cProgram, image, b string, pl Placement, cases []CCase, pairs int, progress io.Writer) ([]CComparison, error) {
	unpinSelf, err := pinProcess(0, pl.Front)
	if err != nil {
		return nil, err
	}
	defer unpinSelf()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s, err := openStack(b, 1, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if _, err := pinProcess(s.BackendPID, pl.Back); err != nil {
		return nil, err
	}
	var out []CComparison
	for _, c := range cases {
		if c.Backend != b {
			continue
		}
		w := c.Workload
		cmp := CComparison{Backend: b, Workload: w.Name, BlockSize: w.BlockSize, QD: w.QD, Placement: pl.Name, Pairs: pairs}
		var goIOPS, cIOPS, ratios, cpus []float64
		for i := 0; i < pairs; i++ {
			if err := ctx.Err(); err != nil {
				return out, err
			}
			g, gCPU, err := goAcrossProcesses(ctx, s, w, o)
			if err != nil {
				return out, fmt.Errorf("bench: Go %s %s qd%d (%s): %w", b, w.Name, w.QD, pl.Name, err)
			}
			cv, err := prog.run(ctx, strconv.FormatFloat(o.Duration.Seconds(), 'f', 3, 64), strconv.Itoa(w.QD), b,
				strconv.Itoa(w.BlockSize), strconv.FormatInt(o.FileSize, 10), strconv.Itoa(pl.Front), strconv.Itoa(pl.Back), image)
			if err != nil {
				return out, err
			}
			if len(cv) != 2 || cv[0] <= 0 || g <= 0 {
				return out, fmt.Errorf("bench: %s %s qd%d (%s): Go %.0f IOPS, C printed %v", b, w.Name, w.QD, pl.Name, g, cv)
			}
			goIOPS, cIOPS, ratios = append(goIOPS, g), append(cIOPS, cv[0]), append(ratios, g/cv[0])
			cpu := 0.0
			if cv[1] > 0 {
				cpu = float64(gCPU) / cv[1]
			}
			cpus = append(cpus, cpu)
			fmt.Fprintf(progress, "against C %-6s %-8s %4dK qd%-3d %-8s pair %2d of %d: Go %10.0f IOPS, C %10.0f IOPS = %.2fx; CPU/request %v vs %v = %.2fx\n",
				b, w.Name, w.BlockSize>>10, w.QD, pl.Name, i+1, pairs, g, cv[0], g/cv[0], gCPU, time.Duration(cv[1]), cpu)
		}
		cmp.GoIOPS, cmp.CIOPS = SpreadOf(goIOPS).Median, SpreadOf(cIOPS).Median
		cmp.Ratio, cmp.CPURatio = SpreadOf(ratios), SpreadOf(cpus)
		cmp.Verdict = Judge(cmp.Ratio, GoalAgainstC)
		out = append(out, cmp)
	}
	return out, nil
}

// goAcrossProcesses runs w once on the cross-process stack s: its IOPS,
// and both processes' CPU time per request (warm-up included in both).
func goAcrossProcesses(ctx context.Context, s *stack, w Workload, o Options) (float64, time.Duration, error) {
	self0 := processCPU()
	back0, err := threadsCPU(s.BackendPID)
	if err != nil {
		return 0, 0, err
	}
	r, err := runBatchCase(ctx, s, w, o)
	if err != nil {
		return 0, 0, err
	}
	back1, err := threadsCPU(s.BackendPID)
	if err != nil {
		return 0, 0, err
	}
	if r.Completed == 0 {
		return 0, 0, fmt.Errorf("no request completed")
	}
	return r.IOPS, (processCPU() - self0 + back1 - back0) / time.Duration(r.Completed), nil
}

// ringAgainstC interleaves the ring-only ping-pongs, Go's (GoRingPair)
// and ring.h's (ringpair.c): round trips per second; both ends busy-poll,
// so their CPU per round trip is the inverse of the rate and not shown.
func ringAgainstC(ctx context.Context, d time.Duration, pairs int, progress io.Writer) (CComparison, error) {
	cmp := CComparison{Backend: ringOnlyBackend, Workload: "ping-pong", BlockSize: 0, QD: 32, Placement: ringOnlyPlacement, Pairs: pairs}
	prog, err := buildC(ctx, "ringpair", cbaseline.RingPair)
	if err != nil {
		return cmp, err
	}
	defer prog.Close()
	// Both threads of a pair must be on CPU at once, which a loaded
	// machine grants in bursts: a run shorter than this once scheduled
	// no round trip at all.
	d = max(d, 500*time.Millisecond)
	var gs, cs, ratios []float64
	for i := 0; i < pairs; i++ {
		g, err := GoRingPair(d)
		if err != nil {
			return cmp, err
		}
		cv, err := prog.run(ctx, strconv.FormatFloat(d.Seconds(), 'f', 3, 64))
		if err != nil {
			return cmp, err
		}
		if g.Value <= 0 || cv[0] <= 0 {
			return cmp, fmt.Errorf("bench: ring-only pairs: Go %.0f, C %.0f round trips/s", g.Value, cv[0])
		}
		gs, cs, ratios = append(gs, g.Value), append(cs, cv[0]), append(ratios, g.Value/cv[0])
		fmt.Fprintf(progress, "against C ring only pair %2d of %d: Go %s, C %s round trips/s = %.2fx\n", i+1, pairs, perSecond(g.Value), perSecond(cv[0]), g.Value/cv[0])
	}
	cmp.GoIOPS, cmp.CIOPS, cmp.Ratio = SpreadOf(gs).Median, SpreadOf(cs).Median, SpreadOf(ratios)
	cmp.Verdict = Judge(cmp.Ratio, GoalAgainstC)
	return cmp, nil
}

// WriteAgainstC prints one line per comparison against C.
func WriteAgainstC(w io.Writer, r *Report) {
	for _, c := range r.AgainstC {
		fmt.Fprintf(w, "against C %-9s %-9s %s: Go/C %.2fx (%d pairs, %.2f..%.2f, middle half %.2f..%.2f) %s",
			c.Backend, c.Workload, cCaseShape(c), c.Ratio.Median, c.Pairs, c.Ratio.Min, c.Ratio.Max, c.Ratio.Q1, c.Ratio.Q3, c.Verdict)
		if c.CPURatio.Median > 0 {
			fmt.Fprintf(w, "; CPU/request Go/C %.2fx (%.2f..%.2f)", c.CPURatio.Median, c.CPURatio.Min, c.CPURatio.Max)
		}
		fmt.Fprintf(w, " [%s]\n", c.Placement)
	}
}

// cCaseShape is a comparison's block size and depth, as the tables show them.
func cCaseShape(c CComparison) string {
	if c.BlockSize == 0 {
		return fmt.Sprintf("QD%d", c.QD)
	}
	if c.BlockSize >= 1<<20 {
		return fmt.Sprintf("%dM QD%d", c.BlockSize>>20, c.QD)
	}
	return fmt.Sprintf("%dK QD%d", c.BlockSize>>10, c.QD)
}

// writeAgainstCMarkdown writes the comparisons against C, when measured.
func writeAgainstCMarkdown(b *strings.Builder, r *Report) {
	if len(r.AgainstC) == 0 {
		return
	}
	pairs := r.AgainstC[0].Pairs
	fmt.Fprintf(b, "### Go against the same work in C\n\n")
	fmt.Fprintf(b, "Each row: %d pairs of runs, Go then C, one after the other; the ratio is the median of the pairs' Go/C ratios, "+
		"with their range and middle half (quartiles). Goal %.1fx: met when three pairs in four reach it, missed when three in four fall short, "+
		"otherwise the spread is too wide to conclude. Go: blkfront's Batch, one queue, blkback in its own process; "+
		"C: internal/cbaseline/c/blkpair.c. Placement: where the frontend and the backend process ran. "+
		"CPU per request: both processes' CPU time over the requests, Go's over C's.\n\n", pairs, GoalAgainstC)
	b.WriteString("| target | placement | Go/C IOPS | range | middle half | Go/C CPU per request (range) | Go IOPS | C IOPS | verdict | baseline |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range r.AgainstC {
		cpu := "not measured (both ends spin)"
		if c.CPURatio.Median > 0 {
			cpu = fmt.Sprintf("%.2fx (%.2f–%.2f)", c.CPURatio.Median, c.CPURatio.Min, c.CPURatio.Max)
		}
		fmt.Fprintf(b, "| %s %s %s | %s | %.2fx | %.2f–%.2f | %.2f–%.2f | %s | %s | %s | %s | %s |\n",
			c.Backend, c.Workload, cCaseShape(c), c.Placement, c.Ratio.Median, c.Ratio.Min, c.Ratio.Max, c.Ratio.Q1, c.Ratio.Q3,
			cpu, perSecond(c.GoIOPS), perSecond(c.CIOPS), c.Verdict, baselineSameWork)
	}
	b.WriteString("\n")
}
