package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/pr/etcdstore"
	"github.com/xenblk/xenblk/vscsifront"
)

// The two reservation stores ComparePRStores sets side by side.
const (
	PRStoreFile = "file"
	PRStoreEtcd = "etcd"
)

// PRLatency is one PR command's latency through a vscsi LUN with one
// store: the medians over the pairs of each run's quantiles.
type PRLatency struct {
	Command string        `json:"command"`
	Store   string        `json:"store"`
	Ops     uint64        `json:"ops"` // over all runs
	P50     time.Duration `json:"p50_ns"`
	P99     time.Duration `json:"p99_ns"`
}

// PRStoreComparison is ComparePRStores' result: PR command latency and
// the IOPS of a reserved LUN, with the file store under Options.Dir (A)
// and with an etcd cluster the caller names (B).
type PRStoreComparison struct {
	Members int         `json:"members"` // the etcd cluster's endpoints
	Pairs   int         `json:"pairs"`
	Latency []PRLatency `json:"latency"`
	// IOPS compares each workload on a vscsi LUN of the null backend that
	// the guest has reserved (Write Exclusive), so that every request is
	// checked against a held reservation.
	IOPS []Comparison `json:"iops"`
}

// prCommands are the PR commands whose latency is measured: one that
// changes the state (a compare-and-swap) and one that reads it.
var prCommands = []string{"register", "read keys"}

// ComparePRStores measures, in pairs interleaved pairs of runs (file then
// etcd), PR command latency (each run o.Duration long, the commands in
// turn from one initiator) and then every goroutine-mode workload of o
// on a reserved LUN. The etcd side's one unit lives in es (whose prefix
// the caller chooses); es stays open.
func ComparePRStores(ctx context.Context, o Options, es *etcdstore.Store, pairs int) (PRStoreComparison, error) {
	o.defaults()
	pairs = max(pairs, 1)
	res := PRStoreComparison{Members: len(es.Client().Endpoints()), Pairs: pairs}
	dir, err := os.MkdirTemp(o.Dir, "xenblk-bench-pr-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	stores := []struct {
		name  string
		store pr.Store
	}{{PRStoreFile, &pr.FileStore{Dir: dir + "/file"}}, {PRStoreEtcd, es}}
	stacks := make([]*dualStack, len(stores))
	defer func() {
		for _, s := range stacks {
			if s != nil {
				s.close()
			}
		}
	}()
	for i, st := range stores {
		if stacks[i], err = openDualStore(ctx, "null", o, st.store); err != nil {
			return res, err
		}
		if err := reserve(ctx, stacks[i].scsiLUN); err != nil {
			return res, fmt.Errorf("bench: reserving the LUN (%s store): %w", st.name, err)
		}
	}
	// latency[store][command] holds each run's p50 and p99.
	type runs struct {
		p50, p99 []float64
		ops      uint64
	}
	latency := make([][]runs, len(stores))
	for i := range latency {
		latency[i] = make([]runs, len(prCommands))
	}
	for pair := 0; pair < pairs; pair++ {
		for i, st := range stores {
			hists, err := prLatencyRun(ctx, stacks[i].scsiLUN, o.Duration)
			if err != nil {
				return res, fmt.Errorf("bench: PR latency (%s store): %w", st.name, err)
			}
			for c := range prCommands {
				r := &latency[i][c]
				r.p50 = append(r.p50, float64(hists[c].Quantile(0.5)))
				r.p99 = append(r.p99, float64(hists[c].Quantile(0.99)))
				r.ops += hists[c].N
			}
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "pr-stores latency pair %d of %d, %s store: %s p50 %v, %s p50 %v\n", pair+1, pairs, st.name,
					prCommands[0], hists[0].Quantile(0.5), prCommands[1], hists[1].Quantile(0.5))
			}
		}
	}
	for i, st := range stores {
		for c, cmd := range prCommands {
			r := latency[i][c]
			res.Latency = append(res.Latency, PRLatency{Command: cmd, Store: st.name, Ops: r.ops,
				P50: time.Duration(mid(r.p50)), P99: time.Duration(mid(r.p99))})
		}
	}
	for _, w := range o.Workloads {
		if !w.runsIn(SubmitGoroutines) {
			continue
		}
		c := Comparison{A: Side{Transport: "vscsi", Backend: "null+" + PRStoreFile}, B: Side{Transport: "vscsi", Backend: "null+" + PRStoreEtcd},
			Workload: w.Name, BlockSize: w.BlockSize, QD: w.QD, Pairs: pairs}
		var as, bs, ratios, cpus []float64
		for pair := 0; pair < pairs; pair++ {
			var runs [2]Result
			for i := range stores {
				r, err := runGoroutineCase(ctx, stacks[i].lun, w, o)
				if err != nil {
					return res, fmt.Errorf("bench: %s qd%d on a reserved LUN (%s store): %w", w.Name, w.QD, stores[i].name, err)
				}
				runs[i] = r
			}
			a, b := runs[0], runs[1]
			if a.IOPS <= 0 {
				return res, fmt.Errorf("bench: %s qd%d on a reserved LUN: no request completed", w.Name, w.QD)
			}
			cpu := 0.0
			if a.CPUPerOp > 0 {
				cpu = float64(b.CPUPerOp) / float64(a.CPUPerOp)
			}
			as, bs, ratios, cpus = append(as, a.IOPS), append(bs, b.IOPS), append(ratios, b.IOPS/a.IOPS), append(cpus, cpu)
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "pr-stores %s qd%d reserved pair %d of %d: etcd %.0f vs file %.0f IOPS = %.2fx, CPU/request %v vs %v = %.2fx\n",
					w.Name, w.QD, pair+1, pairs, b.IOPS, a.IOPS, b.IOPS/a.IOPS, b.CPUPerOp, a.CPUPerOp, cpu)
			}
		}
		c.AIOPS, c.BIOPS = mid(as), mid(bs)
		c.Ratio, c.RatioMin, c.RatioMax = mid(ratios), slices.Min(ratios), slices.Max(ratios)
		c.CPURatio, c.CPURatioMin, c.CPURatioMax = mid(cpus), slices.Min(cpus), slices.Max(cpus)
		res.IOPS = append(res.IOPS, c)
	}
	return res, nil
}

// benchKey is the guest's reservation key in ComparePRStores.
const benchKey = 0xbe9c

// reserve registers the LUN's initiator and reserves the LUN (Write
// Exclusive) for it.
func reserve(ctx context.Context, l *vscsifront.LUN) error {
	if err := prOut(ctx, l, pr.OutRegisterAndIgnore, 0, pr.OutParams{SAKey: benchKey}); err != nil {
		return err
	}
	return prOut(ctx, l, pr.OutReserve, pr.TypeWriteExclusive, pr.OutParams{Key: benchKey})
}

func execSCSI(ctx context.Context, l *vscsifront.LUN, cdb []byte, dir scsi.Direction, buf []byte) error {
	res, err := l.ExecSCSI(ctx, cdb, dir, buf)
	if err != nil {
		return err
	}
	if res.Status != scsi.StatusGood {
		s, _, _ := scsi.ParseSense(res.SenseBytes())
		return fmt.Errorf("status %#x, sense %02x/%02x/%02x", res.Status, s.Key, s.ASC, s.ASCQ)
	}
	return nil
}

func prOut(ctx context.Context, l *vscsifront.LUN, a pr.OutAction, t pr.Type, p pr.OutParams) error {
	param := p.Append(nil, a)
	cdb := pr.OutCommand{Action: a, Type: t, ParamLen: uint32(len(param))}.CDB()
	return execSCSI(ctx, l, cdb[:], scsi.DirToDevice, param)
}

// prLatencyRun sends prCommands in turn for d and returns each one's
// latencies.
func prLatencyRun(ctx context.Context, l *vscsifront.LUN, d time.Duration) ([]Histogram, error) {
	hists := make([]Histogram, len(prCommands))
	buf := make([]byte, 512)
	readKeys := pr.InCommand{Action: pr.InReadKeys, AllocLen: uint16(len(buf))}.CDB()
	for end := time.Now().Add(d); time.Now().Before(end); {
		for c := range prCommands {
			start := time.Now()
			var err error
			if c == 0 {
				err = prOut(ctx, l, pr.OutRegisterAndIgnore, 0, pr.OutParams{SAKey: benchKey})
			} else {
				err = execSCSI(ctx, l, readKeys[:], scsi.DirFromDevice, buf)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", prCommands[c], err)
			}
			hists[c].Record(time.Since(start))
		}
	}
	return hists, nil
}

// WritePRStoreComparison prints ComparePRStores' figures.
func WritePRStoreComparison(w io.Writer, c *PRStoreComparison) {
	for _, l := range c.Latency {
		fmt.Fprintf(w, "pr-stores latency %-10s %-4s store: p50 %10v p99 %10v (%d commands over %d runs)\n",
			l.Command, l.Store, l.P50, l.P99, l.Ops, c.Pairs)
	}
	for _, r := range c.IOPS {
		fmt.Fprintf(w, "pr-stores reserved %-10s qd%-3d etcd %10.0f IOPS vs file %10.0f IOPS: %.2fx (pairs %d, %.2f..%.2f), CPU/request %.2fx (%.2f..%.2f)\n",
			r.Workload, r.QD, r.BIOPS, r.AIOPS, r.Ratio, r.Pairs, r.RatioMin, r.RatioMax, r.CPURatio, r.CPURatioMin, r.CPURatioMax)
	}
}
