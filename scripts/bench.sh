#!/usr/bin/env bash
# Regenerates BENCHMARKS.md's measured sections, bench/results/ (JSON,
# latency SVGs) and the CPU profile of the 4 KiB QD32 read path.
# BENCH_DURATION (default 600ms) is the time per run of a case and
# BENCH_RUNS (default 5) the runs per case: every figure is the median of
# the runs, taken in turn with the other cases of the same stack so that a
# burst of load on this shared machine hits one run of several cases, not
# every run of one. BENCH_PR_PAIRS (default 15; 0 skips it) is the pairs
# of 1 s runs of the reservation-store comparison, against a throwaway
# three-member etcd (cmd/xenblk-etcd) whose data, like the file store's,
# is under BENCH_DIR (default $TMPDIR or /tmp). BENCH_NBD_PAIRS and
# BENCH_NBD_RUNTIME: scripts/bench-nbd.sh. About 15 minutes with the
# defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
DUR=${BENCH_DURATION:-600ms}
RUNS=${BENCH_RUNS:-5}
PR_PAIRS=${BENCH_PR_PAIRS:-15}
DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}
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
# Every Go/C comparison: the Go stack across processes against the same
# work in C (internal/cbaseline/c/blkpair.c, and the ring-only pairs), in
# BENCH_C_PAIRS (default 10) interleaved pairs of BENCH_C_DURATION
# (default 200ms) runs per target, both ends on one CPU and on two:
# about two minutes.
bin/xenblk bench --cases=false --baselines=false --against-c --pairs "${BENCH_C_PAIRS:-10}" --duration "${BENCH_C_DURATION:-200ms}" \
	--markdown BENCHMARKS.md --markdown-section against-c --json > bench/results/latest-against-c.json
# The profile: one case, the null backend so the storage adds nothing.
bin/xenblk bench --backend null --queues 1 --workload randread --qd 32 --duration 5s \
	--baselines=false --cpuprofile bench/results/read-4k-qd32.pprof > /dev/null
$GO tool pprof -top -nodecount=40 bin/xenblk bench/results/read-4k-qd32.pprof > bench/results/read-4k-qd32.top.txt 2>/dev/null
# The backend process alone on the file backend (io_uring batches), across
# processes at QD128.
bin/xenblk bench --cross-process --backend file --queues 1 --workload randread --qd 128 --duration 5s \
	--baselines=false --backend-cpuprofile bench/results/file-read-4k-qd128-backend.pprof > /dev/null
$GO tool pprof -top -nodecount=40 bin/xenblk bench/results/file-read-4k-qd128-backend.pprof > bench/results/file-read-4k-qd128-backend.top.txt 2>/dev/null
# Issue 15's comparison of the reservation stores. xenblk-etcd prints the
# cluster's URL, then runs until its stdin (this script's pipe) closes:
# here, or when this script exits, however it exits.
if [ "$PR_PAIRS" != 0 ]; then
	$GO build -o bin/xenblk-etcd ./cmd/xenblk-etcd
	coproc ETCD { exec bin/xenblk-etcd --members 3 --dir "$DIR"; }
	etcd_pid=$ETCD_PID etcd_out=${ETCD[0]} etcd_in=${ETCD[1]}
	read -r etcd_url <&"$etcd_out"
	bin/xenblk bench --cases=false --baselines=false --workload randread,randwrite --qd 1,32 \
		--pr-stores "$etcd_url" --pairs "$PR_PAIRS" --duration 1s --dir "$DIR" --json > bench/results/latest-pr-stores.json
	exec {etcd_in}>&-
	wait "$etcd_pid"
fi
# Issue 16's item 5: the NBD export beside nbdkit (BENCH_NBD_PAIRS=0
# skips it; about 2 minutes).
GO=$GO ./scripts/bench-nbd.sh
echo "bench: BENCHMARKS.md, bench/results/ updated"
