#!/usr/bin/env bash
# The NBD export beside nbdkit (issue 16 item 5): fio's nbd engine (libnbd)
# reads 4 KiB at random from `xenblk sim`'s export of an image (the whole
# blkif round trip under it: blkfront, the simulated host, blkback, the
# file) and from `nbdkit file` serving the same image, over a unix socket
# and over TCP, at QD1 and QD32, QD32 also over 4 connections (fio
# numjobs=4, iodepth 8 each: multi-conn). The two servers' runs alternate,
# nbdkit then xenblk, BENCH_NBD_PAIRS times (default 10; 0 skips all of
# it), each BENCH_NBD_RUNTIME long (default 500ms); a case's figure is the
# median of its pairs' xenblk/nbdkit ratios, with their min..max. CPU per
# request is the server process's user+system time over the run divided
# by the requests fio completed (clock ticks: 10 ms steps). About 2
# minutes on a quiet machine.
# Rewrites BENCHMARKS.md's nbd section and bench/results/nbd.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
PAIRS=${BENCH_NBD_PAIRS:-10}
RUNTIME=${BENCH_NBD_RUNTIME:-500ms}
PORT=${BENCH_NBD_PORT:-10870} # xenblk's; nbdkit's is the next one
[ "$PAIRS" = 0 ] && exit 0
for tool in fio nbdkit nbdinfo; do
	command -v "$tool" > /dev/null || { echo "bench-nbd: $tool not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
DIR=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/xenblk-bench-nbd.XXXXXX")
servers=()
stop_servers() {
	for pid in "${servers[@]}"; do
		kill -INT "$pid" 2> /dev/null || true
		wait "$pid" 2> /dev/null || true
	done
	servers=()
}
trap 'stop_servers; rm -rf "$DIR"' EXIT
mkdir -p bench/results
$GO build -o bin/xenblk ./cmd/xenblk
IMG=$DIR/disk.img
head -c $((256 << 20)) /dev/urandom > "$IMG" # written through: both read the page cache
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wait_ready URI: until the server answers the handshake (30 s at most).
wait_ready() {
	for _ in $(seq 300); do
		nbdinfo --size "$1" > /dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "bench-nbd: $1 did not answer within 30 s" >&2
	exit 1
}

# run URI PID QD JOBS: one fio run; prints "IOPS CPU-us-per-request".
run() {
	local uri=$1 pid=$2 qd=$3 jobs=$4 c0 c1
	c0=$(cpu_ticks "$pid")
	fio --name=nbd --ioengine=nbd --uri="$uri" --rw=randread --bs=4k --iodepth=$((qd / jobs)) --numjobs="$jobs" \
		--group_reporting --time_based --runtime="$RUNTIME" --size=256M \
		--output-format=json --output="$DIR/fio.json" > /dev/null
	c1=$(cpu_ticks "$pid")
	jq -r --argjson t $((c1 - c0)) --argjson hz "$TICK" \
		'.jobs[0].read | "\(.iops) \(if .total_ios > 0 then $t * 1e6 / $hz / .total_ios else 0 end)"' "$DIR/fio.json"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$DIR/pairs"
for transport in unix tcp; do
	if [ "$transport" = unix ]; then
		xaddr=unix:$DIR/xenblk.sock xuri="nbd+unix:///xvda?socket=$DIR/xenblk.sock"
		kaddr=(--unix "$DIR/nbdkit.sock") kuri="nbd+unix:///?socket=$DIR/nbdkit.sock"
	else
		xaddr=127.0.0.1:$PORT xuri=nbd://127.0.0.1:$PORT/xvda
		kaddr=(-i 127.0.0.1 -p $((PORT + 1))) kuri=nbd://127.0.0.1:$((PORT + 1))/
	fi
	bin/xenblk sim --disk "$IMG" --nbd "$xaddr" --control "$DIR/control.sock" > "$DIR/sim.out" 2>&1 &
	xpid=$!
	servers+=("$xpid")
	nbdkit --exit-with-parent -f "${kaddr[@]}" file "$IMG" &
	kpid=$!
	servers+=("$kpid")
	wait_ready "$xuri"
	wait_ready "$kuri"
	for c in "1 1" "32 1" "32 4"; do
		read -r qd jobs <<< "$c"
		run "$xuri" "$xpid" "$qd" "$jobs" > /dev/null # warm-up: persistent grants, page cache
		for i in $(seq "$PAIRS"); do
			read -r kiops kcpu < <(run "$kuri" "$kpid" "$qd" "$jobs")
			read -r xiops xcpu < <(run "$xuri" "$xpid" "$qd" "$jobs")
			echo "$transport $qd $jobs $xiops $kiops $xcpu $kcpu" >> "$DIR/pairs"
			printf 'bench-nbd: %s qd%s conns %s pair %d of %d: xenblk %.0f IOPS, nbdkit %.0f IOPS; CPU/request %.1f vs %.1f us\n' \
				"$transport" "$qd" "$jobs" "$i" "$PAIRS" "$xiops" "$kiops" "$xcpu" "$kcpu" >&2
		done
	done
	stop_servers
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# stats: the median (the upper one of an even count), min and max of the
# numbers on stdin, one a line.
stats() { sort -g | awk '{v[NR] = $1} END {printf "%.2f %.2f %.2f\n", v[int(NR / 2) + 1], v[1], v[NR]}'; }
{
	echo "Measured $(date -u +%Y-%m-%d) on $(nproc) vCPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), load average $load_before before, $load_after after; $PAIRS pairs of ${RUNTIME} runs per case."
	echo
	echo "| transport | QD | connections | xenblk IOPS | nbdkit IOPS | xenblk/nbdkit IOPS | xenblk CPU/request | nbdkit CPU/request | CPU/request ratio |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for transport in unix tcp; do
		for c in "1 1" "32 1" "32 4"; do
			read -r qd jobs <<< "$c"
			rows=$(awk -v t="$transport" -v q="$qd" -v j="$jobs" '$1 == t && $2 == q && $3 == j' "$DIR/pairs")
			read -r xi _ _ < <(awk '{print $4}' <<< "$rows" | stats)
			read -r ki _ _ < <(awk '{print $5}' <<< "$rows" | stats)
			read -r r rmin rmax < <(awk '{print $4 / $5}' <<< "$rows" | stats)
			read -r xc _ _ < <(awk '{print $6}' <<< "$rows" | stats)
			read -r kc _ _ < <(awk '{print $7}' <<< "$rows" | stats)
			read -r cr crmin crmax < <(awk '$7 > 0 {print $6 / $7}' <<< "$rows" | stats)
			printf '| %s | %s | %s | %.0f | %.0f | %sx (%s..%s) | %.1f us | %.1f us | %sx (%s..%s) |\n' \
				"$transport" "$qd" "$jobs" "$xi" "$ki" "$r" "$rmin" "$rmax" "$xc" "$kc" "$cr" "$crmin" "$crmax"
		done
	done
} > bench/results/nbd.md
cat bench/results/nbd.md
# Between BENCHMARKS.md's markers.
awk -v f=bench/results/nbd.md '
	/<!-- bench:nbd:end -->/ {skip = 0}
	!skip {print}
	/<!-- bench:nbd:begin -->/ {while ((getline line < f) > 0) print line; skip = 1}
' BENCHMARKS.md > "$DIR/BENCHMARKS.md"
cp "$DIR/BENCHMARKS.md" BENCHMARKS.md
