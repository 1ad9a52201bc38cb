#!/usr/bin/env bash
# Regenerates BENCHMARKS.md's measured section, bench/results/ (JSON,
# latency SVG) and the CPU profile of the 4 KiB QD32 read path.
# BENCH_DURATION (default 2s) sets the time per case.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
DUR=${BENCH_DURATION:-2s}
mkdir -p bench/results
$GO build -o bin/xenblk ./cmd/xenblk
bin/xenblk bench --duration "$DUR" --markdown BENCHMARKS.md --svg bench/results/latency.svg --json > bench/results/latest.json
# Issue 6's setting: blkback in its own process (baselines measured again
# in the same run, so its ratios stand on their own).
bin/xenblk bench --cross-process --duration "$DUR" --markdown BENCHMARKS.md --markdown-section cross-process \
	--svg bench/results/latency-cross-process.svg --json > bench/results/latest-cross-process.json
# The profile: one case, the null backend so the storage adds nothing.
bin/xenblk bench --backend null --queues 1 --workload randread --qd 32 --duration 5s \
	--baselines=false --cpuprofile bench/results/read-4k-qd32.pprof > /dev/null
$GO tool pprof -top -nodecount=40 bin/xenblk bench/results/read-4k-qd32.pprof > bench/results/read-4k-qd32.top.txt 2>/dev/null
echo "bench: BENCHMARKS.md, bench/results/ updated"
