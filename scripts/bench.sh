#!/usr/bin/env bash
# Regenerates BENCHMARKS.md's measured sections, bench/results/ (JSON,
# latency SVGs) and the CPU profile of the 4 KiB QD32 read path.
# BENCH_DURATION (default 600ms) is the time per run of a case and
# BENCH_RUNS (default 5) the runs per case: every figure is the median of
# the runs, taken in turn with the other cases of the same stack so that a
# burst of load on this shared machine hits one run of several cases, not
# every run of one. About 12 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
DUR=${BENCH_DURATION:-600ms}
RUNS=${BENCH_RUNS:-5}
mkdir -p bench/results
$GO build -o bin/xenblk ./cmd/xenblk
bin/xenblk bench --duration "$DUR" --runs "$RUNS" --markdown BENCHMARKS.md --svg bench/results/latency.svg --json > bench/results/latest.json
# Issue 6's setting: blkback in its own process (baselines measured again
# in the same run, so its ratios stand on their own), and one backend
# process serving 64 idle devices for the memory per device.
# Both ways of putting requests in flight: blkfront's Batch (one goroutine
# per queue; the targets use it) and QD goroutines with one request each.
bin/xenblk bench --cross-process --submit batch,goroutines --duration "$DUR" --runs "$RUNS" --devices 64 --markdown BENCHMARKS.md --markdown-section cross-process \
	--svg bench/results/latency-cross-process.svg --json > bench/results/latest-cross-process.json
# The profile: one case, the null backend so the storage adds nothing.
bin/xenblk bench --backend null --queues 1 --workload randread --qd 32 --duration 5s \
	--baselines=false --cpuprofile bench/results/read-4k-qd32.pprof > /dev/null
$GO tool pprof -top -nodecount=40 bin/xenblk bench/results/read-4k-qd32.pprof > bench/results/read-4k-qd32.top.txt 2>/dev/null
# The backend process alone on the file backend (io_uring batches), across
# processes at QD128.
bin/xenblk bench --cross-process --backend file --queues 1 --workload randread --qd 128 --duration 5s \
	--baselines=false --backend-cpuprofile bench/results/file-read-4k-qd128-backend.pprof > /dev/null
$GO tool pprof -top -nodecount=40 bin/xenblk bench/results/file-read-4k-qd128-backend.pprof > bench/results/file-read-4k-qd128-backend.top.txt 2>/dev/null
echo "bench: BENCHMARKS.md, bench/results/ updated"
