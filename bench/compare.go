package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsifront"
)

// Transports a comparison's side can use: blkif (blkfront to blkback),
// blkif-copy (the same, the vbd in grant-copy mode: blkback copies the
// guest's pages instead of mapping them, with no persistent grants), or
// vscsi (a vscsifront LUN's storage.Device to vscsiback).
var Transports = []string{"blkif", "blkif-copy", "vscsi"}

// Side is one arm of a comparison: a backend reached over a transport.
type Side struct {
	Transport string `json:"transport"`
	Backend   string `json:"backend"`
}

func (s Side) String() string { return s.Transport + "/" + s.Backend }

// ParseSide reads "transport/backend".
func ParseSide(s string) (Side, error) {
	t, b, ok := strings.Cut(s, "/")
	if !ok || !slices.Contains(Transports, t) || !slices.Contains(Backends, b) {
		return Side{}, fmt.Errorf("bench: side %q: want TRANSPORT/BACKEND, a transport of %s and a backend of %s",
			s, strings.Join(Transports, ", "), strings.Join(Backends, ", "))
	}
	return Side{Transport: t, Backend: b}, nil
}

// Pair is a comparison asked for: B measured against A.
type Pair struct{ A, B Side }

// ParsePair reads "A:B", each a side (ParseSide).
func ParsePair(s string) (Pair, error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return Pair{}, fmt.Errorf("bench: comparison %q: want SIDE:SIDE, e.g. blkif/null:vscsi/null", s)
	}
	var p Pair
	var err error
	if p.A, err = ParseSide(a); err != nil {
		return p, err
	}
	if p.B, err = ParseSide(b); err != nil {
		return p, err
	}
	return p, nil
}

// Comparison is one workload run on both sides of a pair, the runs
// interleaved (A B A B ...) so that both see the same machine.
type Comparison struct {
	A         Side   `json:"a"`
	B         Side   `json:"b"`
	Workload  string `json:"workload"`
	BlockSize int    `json:"block_size"`
	QD        int    `json:"qd"`
	Pairs     int    `json:"pairs"`
	// AIOPS and BIOPS are each side's median IOPS over its runs.
	AIOPS float64 `json:"a_iops"`
	BIOPS float64 `json:"b_iops"`
	// Ratio is the median of the pairs' B/A IOPS ratios; RatioMin and
	// RatioMax their spread.
	Ratio    float64 `json:"ratio"`
	RatioMin float64 `json:"ratio_min"`
	RatioMax float64 `json:"ratio_max"`
	// CPURatio is the median of the pairs' B/A CPU time per request
	// (Result.CPUPerOp; below 1: B does less work per request), with
	// its spread: on a loaded machine the steadier measure of the two.
	CPURatio    float64 `json:"cpu_ratio"`
	CPURatioMin float64 `json:"cpu_ratio_min"`
	CPURatioMax float64 `json:"cpu_ratio_max"`
}

// Compare runs w on p.A and p.B in pairs interleaved pairs (at least 1),
// each run o.Duration long with w.QD goroutines each holding one request
// in flight (the submit mode both transports share). Both transports of
// one backend serve one device on one stack; a qcow2-fresh side gets a
// new image (and stack) for every run, so its writes allocate.
func Compare(ctx context.Context, o Options, p Pair, w Workload, pairs int) (Comparison, error) {
	o.defaults()
	pairs = max(pairs, 1)
	if !w.runsIn(SubmitGoroutines) {
		return Comparison{}, fmt.Errorf("bench: %s runs in the %s submit mode only: not compared", w.Name, SubmitBatch)
	}
	c := Comparison{A: p.A, B: p.B, Workload: w.Name, BlockSize: w.BlockSize, QD: w.QD, Pairs: pairs}
	stacks := map[string]*dualStack{}
	defer func() {
		for _, s := range stacks {
			s.close()
		}
	}()
	run := func(sd Side) (Result, error) {
		// A grant-copy side has a stack of its own (its vbd differs), on
		// a device of the same backend (an image of its own, alike).
		grantCopy := sd.Transport == "blkif-copy"
		key := sd.Backend
		if grantCopy {
			key += "/grant-copy"
		}
		s := stacks[key]
		if s != nil && sd.Backend == "qcow2-fresh" {
			s.close()
			s = nil
		}
		if s == nil {
			var err error
			if s, err = openDualMode(ctx, sd.Backend, o, pr.NewMemoryStore(), grantCopy); err != nil {
				delete(stacks, key)
				return Result{}, err
			}
			stacks[key] = s
		}
		var t target = s.blk
		if sd.Transport == "vscsi" {
			t = s.lun
		}
		r, err := runGoroutineCase(ctx, t, w, o)
		if err != nil {
			return r, fmt.Errorf("bench: %s %s qd%d: %w", sd, w.Name, w.QD, err)
		}
		return r, nil
	}
	var as, bs, ratios, cpus []float64
	for i := 0; i < pairs; i++ {
		if err := ctx.Err(); err != nil {
			return c, err
		}
		a, err := run(p.A)
		if err != nil {
			return c, err
		}
		b, err := run(p.B)
		if err != nil {
			return c, err
		}
		if a.IOPS <= 0 {
			return c, fmt.Errorf("bench: %s %s qd%d: no request completed", p.A, w.Name, w.QD)
		}
		as, bs, ratios = append(as, a.IOPS), append(bs, b.IOPS), append(ratios, b.IOPS/a.IOPS)
		cpu := 0.0
		if a.CPUPerOp > 0 {
			cpu = float64(b.CPUPerOp) / float64(a.CPUPerOp)
		}
		cpus = append(cpus, cpu)
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "compare %s %s qd%d pair %d of %d: %.0f vs %.0f IOPS = %.2fx, CPU/request %v vs %v = %.2fx\n",
				p.B, w.Name, w.QD, i+1, pairs, b.IOPS, a.IOPS, b.IOPS/a.IOPS, b.CPUPerOp, a.CPUPerOp, cpu)
		}
	}
	c.AIOPS, c.BIOPS = mid(as), mid(bs)
	c.Ratio, c.RatioMin, c.RatioMax = mid(ratios), slices.Min(ratios), slices.Max(ratios)
	c.CPURatio, c.CPURatioMin, c.CPURatioMax = mid(cpus), slices.Min(cpus), slices.Max(cpus)
	return c, nil
}

// mid is the median of v (the upper one of an even count), v sorted in place.
func mid(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// dualStack is one device served over both transports on one simulated
// host: blkback to a guest's blkfront, and vscsiback to a vhost of the
// same guest, whose one LUN is the device.
type dualStack struct {
	ss      *simstack.Stack
	blk     *blkfront.Disk
	lun     lunTarget
	scsiLUN *vscsifront.LUN // the LUN lun is the device of, for SCSI commands
	reg     *scsiengine.Registry
}

// openDualStore opens a fresh device of backend and serves it over both
// transports (an image file recached, so that both sides of a comparison
// start with their files in the page cache alike), the LUN's reservations
// kept in store; the stack's Close closes the device (blkback's), the LUN
// leaving it open.
func openDualStore(ctx context.Context, backend string, o Options, store pr.Store) (*dualStack, error) {
	return openDualMode(ctx, backend, o, store, false)
}

// openDualMode is openDualStore with blkback in grant-copy mode or not.
func openDualMode(ctx context.Context, backend string, o Options, store pr.Store, grantCopy bool) (*dualStack, error) {
	if grantCopy {
		// Its own image, made and cached as the other side's: an image
		// is opened by one user at a time.
		o.Dir = filepath.Join(o.Dir, "grant-copy")
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	dev, err := openBackend(backend, o)
	if err != nil {
		return nil, err
	}
	if path := imagePath(backend, o); path != "" {
		if err := recache(dev, path); err != nil {
			dev.Close()
			return nil, fmt.Errorf("bench: %s: %w", backend, err)
		}
	}
	ss, err := simstack.NewHost(simstack.Options{})
	if err != nil {
		dev.Close()
		return nil, err
	}
	s := &dualStack{ss: ss}
	reg := scsiengine.New(scsiengine.Config{Reservations: store, Log: o.Log})
	s.reg = reg
	d, err := ss.ServeDual(ctx, "bench", "/bench/disk", dev, blkback.Config{Poll: o.Poll, Log: o.Log, GrantCopy: grantCopy},
		&vscsiback.Server{Engines: reg, Log: o.Log}, blkfront.Config{Queues: 1, Log: o.Log}, vscsifront.Config{Log: o.Log})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	s.blk, s.lun.d, s.scsiLUN = d.Guest.Disk, d.LUN, d.Vhost.LUNs[0]
	return s, nil
}

func (s *dualStack) close() {
	s.ss.Close()
	s.reg.Close() // a shared store's units stop being followed
}

// lunTarget is a LUN's storage.Device as a target; its requests carry no
// context of their own.
type lunTarget struct{ d storage.Device }

func (l lunTarget) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	return l.d.ReadAt(p, off)
}

func (l lunTarget) WriteAt(_ context.Context, p []byte, off int64) (int, error) {
	return l.d.WriteAt(p, off)
}

// WriteComparisons prints one line per comparison: each side's median
// IOPS and the median B/A ratio of the interleaved pairs, with its range.
func WriteComparisons(w io.Writer, r *Report) {
	for _, c := range r.Comparisons {
		fmt.Fprintf(w, "compare %-12s qd%-3d %-18s %10.0f IOPS vs %-18s %10.0f IOPS: %.2fx (pairs %d, %.2f..%.2f); CPU/request %.2fx (%.2f..%.2f)\n",
			c.Workload, c.QD, c.B, c.BIOPS, c.A, c.AIOPS, c.Ratio, c.Pairs, c.RatioMin, c.RatioMax, c.CPURatio, c.CPURatioMin, c.CPURatioMax)
	}
}
