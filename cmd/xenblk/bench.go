package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/xenblk/xenblk/bench"
	"github.com/xenblk/xenblk/scsi/pr/etcdstore"
)

// benchPRPrefix is where bench --pr-stores keeps its unit's state in etcd
// when the URL names no prefix: away from serve's keys.
const benchPRPrefix = "/xenblk-bench/pr/"

// newBenchCmd builds xenblk bench: its flags are checked into a
// bench.Suite, whose Report it prints.
func newBenchCmd() *cobra.Command {
	var (
		dur       time.Duration
		backends  []string
		queues    []int
		poll      time.Duration
		dir       string
		size      = sizeValue(256 << 20)
		jsonOut   bool
		svgPath   string
		mdPath    string
		profPath  string
		baselines bool
		only      []string
		qds       []int
		cross     bool
		mdSection string
		devices   int
		backProf  string
		cases     bool
		runs      int
		submit    []string
		compare   comparePairs
		pairs     int
		prStores  string
		prClient  prStoreOptions
		againstC  bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure IOPS, bandwidth and latency through the whole stack, beside fio, memcpy and a C ring.h baseline",
		Long: `bench assembles a simulated host, blkback and blkfront in this process and
runs 4 KiB random reads and writes at queue depth 1, 32 and 128 and 1 MiB
sequential reads against the null, memory and file backends with 1 and 2
queues (QD in flight from one goroutine per queue through blkfront's
batch API; --submit goroutines: QD goroutines with one request each),
then the baselines: fio (psync and io_uring) on the same file,
memcpy, and the ring-only ping-pong in Go and in C (gcc, Xen's ring.h).
A second QD1 null case runs with the backend polling.

1 MiB sequential reads run twice: seqread copies each read into the
caller's buffer; seqread-view leaves it in the granted pages
(blkfront's Batch.ReadView) and reads every byte there once (a sum of
8-byte words; batch mode only). Beside the hot "memcpy 1 MiB" (copying
one 1 MiB buffer that stays in the CPU caches: the fastest a 1 MiB read
could be delivered, the goal's yardstick) two baselines walk a region of
--size bytes, as a read of the memory backend must: "memcpy 1 MiB from
a N MiB region" and "read 1 MiB in place from a N MiB region" (the same
sum, no copy).

--compare A:B (repeatable; each side TRANSPORT/BACKEND, transport blkif,
blkif-copy or vscsi) runs every selected workload on both sides in --pairs
interleaved pairs of runs (A B A B ...), QD goroutines with one request
each, and prints the median of the pairs' B/A IOPS ratios with their
range. Both transports of one backend serve one device on one stack;
blkif-copy is blkif with the vbd in grant-copy mode (blkback copies the
guest's pages, no persistent grants), on a stack and image of its own;
qcow2 is an image whose clusters are all written before the runs,
qcow2-fresh a new empty image for every run (its writes allocate).

--against-c compares the Go stack with the same work in C
(internal/cbaseline/c/blkpair.c, built with gcc): 4 KiB random reads at
QD1, 32 and 128 on null and file, and 1 MiB reads from memory, blkback in
its own process and blkfront's Batch on one queue, each target in --pairs
interleaved pairs of runs (Go, C, Go, C ...) with both ends on one CPU
and then on two (sched_setaffinity), and the ring-only ping-pongs. It
prints the median of the pairs' Go/C ratios with their range and middle
half, and says when that spread is too wide to conclude. --backend,
--workload and --qd narrow its targets (to measure a change to one path).

--pr-stores etcd://HOST:PORT[,HOST:PORT...][/PREFIX] compares where
reservation state is kept: the file store (under --dir) and the etcd
cluster the URL names, in the syntax serve takes for its store (TLS
through --pr-store-ca, --pr-store-cert and --pr-store-key; every call
bounded by --pr-store-timeout).
The bench keeps one unit's state under PREFIX (default /xenblk-bench/pr/).
It measures a PR command that changes the state (REGISTER AND IGNORE
EXISTING KEY) and one that reads it (READ KEYS) through a vscsi LUN,
then every selected workload on a null LUN the guest has reserved, in
--pairs interleaved pairs. xenblk runs no etcd member itself: for a
throwaway local cluster, go run ./cmd/xenblk-etcd prints its URL.`,
		Example: `  xenblk bench --duration 2s --svg lat.svg
  xenblk bench --backend null --queues 1 --workload randread --qd 32 --duration 5s --baselines=false
  xenblk bench --json > result.json
  xenblk bench --backend null --queues 1 --workload randread --submit batch,goroutines --baselines=false
  xenblk bench --backend memory --queues 1 --workload seqread,seqread-view --duration 1s --runs 3
  xenblk bench --cases=false --baselines=false --workload randread --qd 1,32 --compare blkif/null:vscsi/null --pairs 5
  xenblk bench --cases=false --baselines=false --workload randread --qd 1,32 --compare blkif/file:blkif-copy/file --pairs 10
  xenblk bench --cases=false --baselines=false --workload randread,randwrite --qd 1,32 --pr-stores etcd://127.0.0.1:2379 --pairs 5
  xenblk bench --cases=false --baselines=false --against-c --pairs 10 --duration 300ms
  xenblk bench --cases=false --baselines=false --against-c --backend null --workload randread --qd 32 --pairs 10`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, b := range backends {
				if !slices.Contains(bench.Backends, b) {
					return usagef("--backend %q: want one of %s", b, strings.Join(bench.Backends, ", "))
				}
			}
			if pairs < 1 || pairs > 99 {
				return usagef("--pairs %d: want 1 to 99", pairs)
			}
			for _, q := range queues {
				if q < 1 || q > 4 {
					return usagef("--queues %d: want 1 to 4", q)
				}
			}
			if dur < 100*time.Millisecond {
				return usagef("--duration %v: at least 100ms", dur)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			progress := os.Stderr
			if profPath != "" {
				stopProfile, err := startCPUProfile(profPath)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			for _, w := range only {
				if w != "randread" && w != "randwrite" && w != "seqread" && w != "seqread-view" {
					return usagef("--workload %q: want randread, randwrite, seqread or seqread-view", w)
				}
			}
			wl := bench.SelectWorkloads(only, qds)
			if len(wl) == 0 {
				return usagef("--workload %v --qd %v select no workload (randread, randwrite at 1, 32, 128; seqread, seqread-view at 1)", only, qds)
			}
			var modes []bench.SubmitMode
			for _, m := range submit {
				sm, err := bench.ParseSubmitMode(m)
				if err != nil {
					return usagef("--submit %q: want batch or goroutines", m)
				}
				modes = append(modes, sm)
			}
			if devices < 0 || devices > 1000 {
				return usagef("--devices %d: want 0 to 1000", devices)
			}
			if runs < 1 || runs > 99 {
				return usagef("--runs %d: want 1 to 99", runs)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			var etcd *etcdstore.Store
			if prStores != "" {
				var err error
				if etcd, err = prClient.openEtcd("--pr-stores", prStores, benchPRPrefix, log); err != nil {
					return err
				}
				defer etcd.Close()
			} else if prClient.cert != "" || prClient.key != "" || prClient.ca != "" {
				return usagef("--pr-store-cert, --pr-store-key and --pr-store-ca are for --pr-stores etcd://...")
			}
			suite := bench.Suite{
				Options: bench.Options{Duration: dur, Backends: backends, Queues: queues, Workloads: wl, Poll: poll, Dir: dir, FileSize: int64(size), Progress: progress,
					Submit: modes, Runs: runs, Log: log},
				Cases: cases, CrossProcess: cross, BackendCPUProfile: backProf, Devices: devices, Baselines: baselines,
				Compare: compare, Pairs: pairs, PRStores: etcd, AgainstC: againstC,
			}
			if cross || devices > 0 || againstC {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				suite.BackendCommand = func(sock, backend string, poll time.Duration, profile string) *exec.Cmd {
					args := []string{"bench-backend", "--host", sock, "--backend", backend,
						"--size", size.String(), "--dir", dir, "--poll", poll.String()}
					if profile != "" {
						args = append(args, "--cpuprofile", profile)
					}
					return exec.Command(self, args...)
				}
			}
			rep, err := bench.RunSuite(ctx, suite)
			if err != nil {
				return err
			}
			if svgPath != "" {
				var pick []bench.Result
				for _, r := range rep.Results {
					if r.Queues == 1 && r.Workload == "randread" {
						pick = append(pick, r)
					}
				}
				f, err := os.Create(svgPath)
				if err != nil {
					return err
				}
				if err := bench.WriteSVG(f, pick); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
			}
			if mdPath != "" {
				if err := bench.UpdateMarkdownFile(mdPath, mdSection, rep); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				return bench.WriteJSON(out, rep)
			}
			if err := bench.WriteTable(out, rep); err != nil {
				return err
			}
			bench.WriteTargets(out, rep)
			bench.WriteComparisons(out, rep)
			bench.WriteAgainstC(out, rep)
			if rep.PRStores != nil {
				bench.WritePRStoreComparison(out, rep.PRStores)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&dur, "duration", 2*time.Second, "measured time per case (after a short warm-up)")
	f.StringSliceVar(&backends, "backend", []string{"null", "memory", "file"}, "backends: "+strings.Join(bench.Backends, ", "))
	f.IntSliceVar(&queues, "queues", []int{1, 2}, "queue counts to run")
	f.DurationVar(&poll, "poll", 0, "backend poll window after work for every case (0: blkback's default, negative: never poll)")
	f.StringVar(&dir, "dir", os.TempDir(), "directory for the file backend's image (xenblk-bench.img), also fio's file")
	f.Var(&size, "size", "bytes addressed by the workloads, the image's size (K, M, G, T suffixes)")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON instead of a table")
	f.StringVar(&svgPath, "svg", "", "write a latency histogram of the 1-queue random reads to this SVG file")
	f.StringVar(&mdPath, "markdown", "", "rewrite the generated section of this file (BENCHMARKS.md)")
	f.StringVar(&mdSection, "markdown-section", "", "with --markdown: rewrite between <!-- bench:NAME:begin/end --> instead")
	f.StringVar(&profPath, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	f.StringSliceVar(&only, "workload", nil, "run only these workloads: randread, randwrite, seqread (1 MiB copied to the caller), seqread-view (1 MiB read in place)")
	f.IntSliceVar(&qds, "qd", nil, "run only these queue depths")
	f.BoolVar(&cross, "cross-process", false, "run blkback in a separate process (the frontend and the host stay in this one)")
	f.BoolVar(&baselines, "baselines", true, "also measure fio, memcpy, the ring-only pairs and the C null path")
	f.IntVar(&devices, "devices", 0, "also measure the resident memory of one backend process serving this many idle null vbds")
	f.BoolVar(&cases, "cases", true, "run the workload cases (--cases=false with --devices measures memory only)")
	f.StringVar(&backProf, "backend-cpuprofile", "", "with --cross-process: write a CPU profile of the backend process here (the last stack's)")
	f.IntVar(&runs, "runs", 1, "runs per case, interleaved; each figure is the median")
	f.StringSliceVar(&submit, "submit", []string{"batch"}, "how requests are put in flight, each case run in each listed: batch (one goroutine per queue, a blkfront.Batch), goroutines (QD goroutines, one request each)")
	f.Var(&compare, "compare", "also compare two sides, TRANSPORT/BACKEND:TRANSPORT/BACKEND (e.g. blkif/null:vscsi/null), on every selected workload; repeatable")
	f.IntVar(&pairs, "pairs", 5, "with --compare, --pr-stores or --against-c: interleaved pairs of runs per workload; the ratio is their median")
	f.BoolVar(&againstC, "against-c", false, "also compare the Go stack across processes with the same work in C (gcc), interleaved, both ends on one CPU and on two")
	f.StringVar(&prStores, "pr-stores", "", "also compare the reservation stores, file and the etcd cluster at this etcd://HOST:PORT[,HOST:PORT...][/PREFIX]: PR command latency, and IOPS on a reserved vscsi LUN")
	prClient.addEtcdFlags(f)
	return cmd
}

// newBenchBackendCmd builds the backend process of xenblk bench
// --cross-process, which bench runs as its own binary.
func newBenchBackendCmd() *cobra.Command {
	var bb struct {
		host, backend, dir string
		size               sizeValue
		poll               time.Duration
		profile            string
	}
	backendCmd := &cobra.Command{
		Use:    "bench-backend",
		Short:  "The backend process of xenblk bench --cross-process",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bb.host == "" {
				return usagef("--host is required")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			if p := bb.profile; p != "" {
				stopProfile, err := startCPUProfile(p)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			return bench.ServeBackend(ctx, bb.host, bb.backend, bench.Options{Dir: bb.dir, FileSize: int64(bb.size), Poll: bb.poll,
				Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		},
	}
	bf := backendCmd.Flags()
	socketPathVar(bf, &bb.host, "host", "", "the host socket")
	bf.StringVar(&bb.backend, "backend", "null", "null, memory or file")
	bf.StringVar(&bb.dir, "dir", os.TempDir(), "the file backend's directory")
	bb.size = 256 << 20
	bf.Var(&bb.size, "size", "device size (K, M, G, T suffixes)")
	bf.DurationVar(&bb.poll, "poll", 0, "busy-poll window")
	bf.StringVar(&bb.profile, "cpuprofile", "", "write a CPU profile of the backend process to this file")
	return backendCmd
}

// comparePairs is --compare: each use adds a pair, checked as it is
// parsed.
type comparePairs []bench.Pair

func (v *comparePairs) Set(s string) error {
	p, err := bench.ParsePair(s)
	if err != nil {
		return fmt.Errorf("want TRANSPORT/BACKEND:TRANSPORT/BACKEND (transports %s; backends %s)",
			strings.Join(bench.Transports, ", "), strings.Join(bench.Backends, ", "))
	}
	*v = append(*v, p)
	return nil
}

func (v *comparePairs) String() string {
	var out []string
	for _, p := range *v {
		out = append(out, p.A.String()+":"+p.B.String())
	}
	return strings.Join(out, ",")
}

func (v *comparePairs) Type() string { return "A:B" }
