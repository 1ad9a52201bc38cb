package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints one line per result (under a header, when there are
// any) and one per baseline.
func WriteTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(r.Results) > 0 {
		fmt.Fprintln(tw, "backend\tq\tworkload\tbs\tqd\tIOPS\tMB/s\tp50\tp99\tp99.9\tsubmit\t")
	}
	for _, x := range r.Results {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%dK\t%d\t%.0f\t%.1f\t%s\t%s\t%s\t%s\t\n", x.Backend, x.Queues, x.Workload,
			x.BlockSize>>10, x.QD, x.IOPS, x.MBps, us(x.P50), us(x.P99), us(x.P999), x.Submit)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, b := range r.Baselines {
		fmt.Fprintf(w, "baseline %-40s %14.0f %s\n", b.Name, b.Value, b.Unit)
	}
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.1fus", float64(d)/1e3) }

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// Find returns the result for one case, or nil; when the run measured
// several submit modes, the first listed (Options.Submit) is found.
func (r *Report) Find(backend string, queues int, workload string, qd int) *Result {
	for i := range r.Results {
		x := &r.Results[i]
		if x.Backend == backend && x.Queues == queues && x.Workload == workload && x.QD == qd {
			return x
		}
	}
	return nil
}

// Baseline returns the named baseline's value, or 0.
func (r *Report) Baseline(name string) float64 {
	for _, b := range r.Baselines {
		if b.Name == name {
			return b.Value
		}
	}
	return 0
}

// Target is one of issue 6's goals checked against a run.
type Target struct {
	Name     string
	Measured string
	Goal     string
	Ratio    float64 // measured / goal for higher-is-better, goal / measured otherwise; >= 1 is met
	// Baseline is the nature of what the target compares with: the same
	// work in C, a physical floor (fio, memcpy: less work than the
	// stack's), or none (an absolute goal).
	Baseline string
}

// The natures of a target's baseline.
const (
	baselineNone      = "none: an absolute goal"
	baselineSameWork  = "same work in C"
	baselineFioFloor  = "physical floor: fio, no hop"
	baselineCopyFloor = "physical floor: memory (one memcpy or one read)"
)

// Targets evaluates issue 6's targets that this run measured.
func (r *Report) Targets() []Target {
	var t []Target
	if x := r.Find("null", 1, "randread", 128); x != nil {
		t = append(t, Target{"null 4K randread QD128, 1 queue", fmt.Sprintf("%.0f IOPS", x.IOPS), "1,000,000 IOPS", x.IOPS / 1e6, baselineNone})
	}
	if g, c := r.Baseline("ring-only pair, Go"), r.Baseline("ring-only pair, C ring.h"); g > 0 && c > 0 {
		t = append(t, Target{"Go ring-only pair / C ring.h pair", fmt.Sprintf("%s / %s round trips/s = %.2fx", perSecond(g), perSecond(c), g/c), "0.8x", g / c / 0.8, baselineSameWork})
	}
	for _, qd := range []int{1, 32, 128} {
		x := r.Find("file", 1, "randread", qd)
		best := max(r.Baseline(fmt.Sprintf("fio psync randread 4K qd%d", qd)), r.Baseline(fmt.Sprintf("fio io_uring randread 4K qd%d", qd)))
		if x != nil && best > 0 {
			t = append(t, Target{fmt.Sprintf("file 4K randread QD%d / best fio", qd), fmt.Sprintf("%.0f / %.0f IOPS = %.2fx", x.IOPS, best, x.IOPS/best), "0.8x", x.IOPS / best / 0.8, baselineFioFloor})
		}
	}
	// Event notifications: blkback never polls and sleeps on its event
	// channel after every request (blkfront still polls its 20 us window:
	// it has no setting to turn that off).
	if x := r.Find("null+events", 1, "randread", 1); x != nil {
		t = append(t, Target{"QD1 p50, event notifications (blkback never polls)", us(x.P50), "10us", 10e3 / float64(x.P50), baselineNone})
	}
	// Polling: the defaults (both ends poll adaptively after work).
	if x := r.Find("null", 1, "randread", 1); x != nil {
		t = append(t, Target{"QD1 p50, polling (default adaptive poll)", us(x.P50), "3us", 3e3 / float64(x.P50), baselineNone})
	}
	t = append(t, r.seqreadTargets()...)
	if dm := r.Devices; dm != nil && dm.Devices > 0 {
		per := max(dm.PerDevice, 1)
		t = append(t, Target{fmt.Sprintf("RSS per idle device, %d in one backend", dm.Devices),
			fmt.Sprintf("%.2f MiB (%.1f -> %.1f MiB)", dm.PerDevice/(1<<20), float64(dm.Before.Total)/(1<<20), float64(dm.After.Total)/(1<<20)),
			"8 MiB", 8 * (1 << 20) / per, baselineNone})
	}
	return t
}

// perSecond writes a rate with three significant digits in the unit that
// shows them: 950, 12.3k, 22.6M (a fixed M showed 12,345 as 0.01M).
func perSecond(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', digitsAfterPoint(v/1e6), 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', digitsAfterPoint(v/1e3), 64) + "k"
	default:
		return strconv.FormatFloat(v, 'f', digitsAfterPoint(v), 64)
	}
}

// digitsAfterPoint keeps three significant digits of v in [0, 1000).
func digitsAfterPoint(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	default:
		return 2
	}
}

// seqreadTargets: 1 MiB reads from memory, copied to the caller (seqread)
// and read in place (seqread-view), each against hot memcpy (one 1 MiB
// buffer in the caches: the goal as issue 6 states it) and against the
// region baseline of the same work (the source walks a region the size
// of the disk, as the memory backend's reads must).
func (r *Report) seqreadTargets() []Target {
	var t []Target
	hot := r.Baseline("memcpy 1 MiB")
	ratio := func(name string, x *Result, base float64) {
		t = append(t, Target{name, fmt.Sprintf("%.0f / %.0f MB/s = %.2fx", x.MBps, base, x.MBps/base), "0.8x", x.MBps / base / 0.8, baselineCopyFloor})
	}
	for _, c := range []struct{ workload, what, region string }{
		{"seqread", "copy", memcpyRegionPrefix}, {"seqread-view", "view", readInPlacePrefix}} {
		x := r.Find("memory", 1, c.workload, 1)
		if x == nil {
			continue
		}
		if hot > 0 {
			ratio(fmt.Sprintf("memory 1M %s (%s) / hot memcpy 1 MiB [one buffer, kept in the CPU caches]", c.workload, c.what), x, hot)
		}
		if b, ok := r.baselineWithPrefix(c.region); ok && b.Value > 0 {
			ratio(fmt.Sprintf("memory 1M %s (%s) / %s [region baseline]", c.workload, c.what, b.Name), x, b.Value)
		}
	}
	return t
}

// baselineWithPrefix returns the first baseline whose name starts with
// prefix (the region baselines carry the region's size in their names).
func (r *Report) baselineWithPrefix(prefix string) (Baseline, bool) {
	for _, b := range r.Baselines {
		if strings.HasPrefix(b.Name, prefix) {
			return b, true
		}
	}
	return Baseline{}, false
}

// WriteMarkdown writes the generated part of BENCHMARKS.md.
func WriteMarkdown(w io.Writer, r *Report) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Run %s on %d CPUs (%s), Linux %s, %s.\n\n", r.When.UTC().Format(time.RFC3339), m.CPUs, m.CPUModel, m.Kernel, m.GoVersion)
	if targets := r.Targets(); len(targets) > 0 {
		b.WriteString("### Targets\n\n| target | measured | goal | met | baseline |\n|---|---|---|---|---|\n")
		for _, t := range targets {
			met := "yes"
			if t.Ratio < 1 {
				met = fmt.Sprintf("no (%.0f%% of goal)", 100*t.Ratio)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", t.Name, t.Measured, t.Goal, met, t.Baseline)
		}
		b.WriteString("\n")
	}
	writeAgainstCMarkdown(&b, r)
	if len(r.Baselines) > 0 {
		b.WriteString("### Baselines\n\n| baseline | value |\n|---|---|\n")
		for _, x := range r.Baselines {
			fmt.Fprintf(&b, "| %s | %.0f %s |\n", x.Name, x.Value, x.Unit)
		}
		b.WriteString("\n")
	}
	if len(r.Results) > 0 {
		r.writeCasesMarkdown(&b)
	}
	r.writeDevicesMarkdown(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCasesMarkdown writes the table of every case.
func (r *Report) writeCasesMarkdown(b *strings.Builder) {
	where := "in one process"
	if r.CrossProcess {
		where = "blkback in its own process"
	}
	fmt.Fprintf(b, "### Every case (%s)\n\n", where)
	b.WriteString("Each figure is the median of the case's runs (IOPS range: the slowest and fastest run). ")
	b.WriteString("submit: `batch` is one goroutine per queue keeping its share of QD in flight through a `blkfront.Batch`; `goroutines` is QD goroutines with one `ReadAt`/`WriteAt` each. ")
	b.WriteString("seqread copies each read to the caller's buffer; seqread-view reads it in place in the granted pages (`Batch.ReadView`) and sums its 8-byte words, every byte once.\n\n")
	b.WriteString("| backend | queues | workload | bs | QD | submit | IOPS | IOPS range | runs | MB/s | p50 | p99 | p99.9 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.Results {
		fmt.Fprintf(b, "| %s | %d | %s | %dK | %d | %s | %.0f | %.0f..%.0f | %d | %.1f | %s | %s | %s |\n", x.Backend, x.Queues, x.Workload,
			x.BlockSize>>10, x.QD, x.Submit, x.IOPS, x.IOPSMin, x.IOPSMax, x.Runs, x.MBps, us(x.P50), us(x.P99), us(x.P999))
	}
	b.WriteString("\n")
}

// writeDevicesMarkdown writes the memory of many idle devices, when measured.
func (r *Report) writeDevicesMarkdown(b *strings.Builder) {
	if dm := r.Devices; dm != nil {
		fmt.Fprintf(b, "### %d idle devices in one backend process (%s)\n\n", dm.Devices, dm.Backend)
		b.WriteString("| | RSS | anonymous | shared memory |\n|---|---|---|---|\n")
		mib := func(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }
		fmt.Fprintf(b, "| no device | %s | %s | %s |\n", mib(dm.Before.Total), mib(dm.Before.Anon), mib(dm.Before.Shmem))
		fmt.Fprintf(b, "| %d devices | %s | %s | %s |\n", dm.Devices, mib(dm.After.Total), mib(dm.After.Anon), mib(dm.After.Shmem))
		fmt.Fprintf(b, "| per device | %.2f MiB | %.2f MiB | %.2f MiB |\n", dm.PerDevice/(1<<20),
			float64(dm.After.Anon-dm.Before.Anon)/float64(dm.Devices)/(1<<20), float64(dm.After.Shmem-dm.Before.Shmem)/float64(dm.Devices)/(1<<20))
	}
}

// UpdateMarkdownFile replaces the text between the markers
// <!-- bench:begin --> and <!-- bench:end --> of path (with a section
// name: <!-- bench:NAME:begin --> ...) with this run's figures.
func UpdateMarkdownFile(path, section string, r *Report) error {
	tag := "bench"
	if section != "" {
		tag += ":" + section
	}
	beginMark, endMark := "<!-- "+tag+":begin -->", "<!-- "+tag+":end -->"
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i, j := bytes.Index(old, []byte(beginMark)), bytes.Index(old, []byte(endMark))
	if i < 0 || j < i {
		return fmt.Errorf("bench: %s lacks the %s ... %s markers", path, beginMark, endMark)
	}
	var mid bytes.Buffer
	mid.WriteString(beginMark + "\n")
	if err := WriteMarkdown(&mid, r); err != nil {
		return err
	}
	out := append(append(append([]byte(nil), old[:i]...), mid.Bytes()...), old[j:]...)
	return os.WriteFile(path, out, 0o644)
}

// WriteSVG draws the latency histograms of the given results, one line
// each, on a log-scale time axis (1 us .. 10 ms).
func WriteSVG(w io.Writer, results []Result) error {
	const W, H, L, B = 900.0, 420.0, 60.0, 40.0
	lo, hi := math.Log10(1e3), math.Log10(1e7) // ns
	x := func(ns float64) float64 { return L + (math.Log10(max(ns, 1e3))-lo)/(hi-lo)*(W-L-20) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="16">xenblk latency histograms (fraction of requests per bucket)</text>`+"\n", L)
	for _, t := range []float64{1e3, 1e4, 1e5, 1e6, 1e7} {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="30" x2="%.1f" y2="%.0f" stroke="#ddd"/><text x="%.1f" y="%.0f">%s</text>`+"\n", x(t), x(t), H-B, x(t)-10, H-B+15, us(time.Duration(t)))
	}
	colors := []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}
	for k, res := range results {
		h := res.Hist
		if h == nil || h.N == 0 {
			continue
		}
		var peak float64
		for _, c := range h.Counts {
			peak = max(peak, float64(c)/float64(h.N))
		}
		c := colors[k%len(colors)]
		b.WriteString(`<polyline fill="none" stroke-width="1.5" stroke="` + c + `" points="`)
		for i, n := range h.Counts {
			if n == 0 {
				continue
			}
			f := float64(n) / float64(h.N)
			fmt.Fprintf(&b, "%.1f,%.1f ", x(float64(lowerBound(i))), H-B-f*(H-B-40))
		}
		b.WriteString("\"/>\n")
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" fill="%s">%s q%d %s %dK qd%d %s p50 %s p99 %s</text>`+"\n", W-390, 40+16*k, c,
			res.Backend, res.Queues, res.Workload, res.BlockSize>>10, res.QD, res.Submit, us(res.P50), us(res.P99))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
