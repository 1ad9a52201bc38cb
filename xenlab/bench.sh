#!/bin/bash
# Lab boot "bench" (make xenlab-bench): fio through Linux's xen-blkfront in
# dom0, on one image served four ways at once, each its own /dev/xvdX:
#   blkback      Linux's xen-blkback (xl block-attach) on a loop device
#                over the image, as the block script would make it
#   qdisk        QEMU's qdisk (xl block-attach backendtype=qdisk), QEMU
#                running as dom0's disk backend the way Xen's init script
#                (xen-qemu-dom0-disk-backend) starts it
#   xenblk       xenblk serve: grants mapped, persistent grants
#   xenblk-copy  xenblk serve with grant-copy=1 (GNTTABOP_copy, as qdisk)
# The two xenblk vbds open the image shared=1 (they lock it, and two
# read-write vbds of one image are refused otherwise); QEMU's qdisk and the
# loop device do not lock it. fio runs on one device at a time; the others
# sit idle.
#
# The CPU is emulated, so only ratios mean anything: per case the backends
# run in turn (the order rotated each round), ROUNDS times, and the summary
# gives, per case, the median of the rounds' pairwise ratios with their
# range: IOPS, and dom0's CPU time (both vCPUs, /proc/stat) per fio I/O.
# Results: results.tsv (one line per fio run), summary.txt, fio/*.txt (fio's
# own output), lab-facts.txt (what each backend offered, versions),
# serve.pprof (the CPU profile of serve, both xenblk vbds).
#
# BENCH_ROUNDS, BENCH_RUNTIME, BENCH_RAMP (seconds per fio run, and its
# warm-up), BENCH_SIZE_MIB (the image) and BENCH_BUDGET (seconds: no round
# starts that would end past it; xentest-run stops a test at 1200 s) come
# from bench.env when run.sh wrote one.
set -u
. ./lib.sh
[ -f bench.env ] && . ./bench.env
X=./xenblk
ROUNDS=${BENCH_ROUNDS:-5}
RUNTIME=${BENCH_RUNTIME:-6}
RAMP=${BENCH_RAMP:-2}
SIZE_MIB=${BENCH_SIZE_MIB:-512}
BUDGET=${BENCH_BUDGET:-1000}
IMG=/root/bench.img
QEMU=/usr/libexec/xen-qemu-system-i386
QEMU_PIDFILE=/run/qemu-dom0.pid
START=$(date +%s)
BACKENDS=(blkback qdisk xenblk xenblk-copy)
CASES=(randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd32 read-1m-qd1 write-1m-qd1)

# The helpers below that run per fio run start no process of their own
# (they set variables, read with the shell's read): under the lab's
# emulation a process costs about a second on a loaded host.

# dev_of BACKEND: DEV, the frontend's device of the backend.
dev_of() {
  case $1 in blkback) DEV=xvdb ;; qdisk) DEV=xvdc ;; xenblk) DEV=xvdd ;; xenblk-copy) DEV=xvde ;; esac
}
# fio_case CASE: BS, the case's block size in bytes, and WORDS, fio's words.
fio_case() {
  case $1 in
    randread-4k-qd1) BS=4096 WORDS="--rw=randread --bs=4k --iodepth=1" ;;
    randread-4k-qd32) BS=4096 WORDS="--rw=randread --bs=4k --iodepth=32" ;;
    randwrite-4k-qd32) BS=4096 WORDS="--rw=randwrite --bs=4k --iodepth=32" ;;
    read-1m-qd1) BS=1048576 WORDS="--rw=read --bs=1M --iodepth=1" ;;
    write-1m-qd1) BS=1048576 WORDS="--rw=write --bs=1M --iodepth=1" ;;
  esac
}
# busy_ticks: TICKS, dom0's CPU time so far, both vCPUs, in clock ticks
# (user, nice, system, irq, softirq; not idle, iowait or steal).
busy_ticks() {
  local cpu user nice system idle iowait irq softirq
  read -r cpu user nice system idle iowait irq softirq _ < /proc/stat
  TICKS=$((user + nice + system + irq + softirq))
}
# moved_bytes DEV: MOVED, the bytes read and written through the
# frontend's device (its sector counters: they count fio's warm-up too,
# as /proc/stat does).
moved_bytes() {
  local f1 f2 rsect f4 f5 f6 wsect
  read -r f1 f2 rsect f4 f5 f6 wsect _ < "/sys/block/$1/stat"
  MOVED=$(((rsect + wsect) * 512))
}
HZ=$(getconf CLK_TCK)
# wait_dev SECONDS DEV: until the block device is there, by the clock (a
# process per try, as wait_for spawns, is slow under the lab's emulation).
wait_dev() {
  local end=$((SECONDS + $1))
  while ((SECONDS < end)); do [ -b "$2" ] && return 0; sleep 0.5; done
  [ -b "$2" ]
}

# xl_attach NAME VDEV SPEC: xl block-attach 0 SPEC, up to three tries:
# under the lab host's load libxl's 40 s bound on the block script can run
# out (it then kills the script and removes the device).
xl_attach() {
  local try
  for try in 1 2 3; do
    if xl -vvv block-attach 0 "$3" > "xl-$1-$try.log" 2>&1; then ok "xl block-attach ($1, try $try)"; return 0; fi
    echo "xl block-attach ($1) try $try: $(grep 'libxl: error' "xl-$1-$try.log" | head -3 | tr '\n' ' ')"
    xl block-detach 0 "$2" > /dev/null 2>&1
  done
  bad "xl block-attach ($1): three tries failed (xl-$1-*.log)"
}

# run_case ROUND CASE BACKEND: one fio run; a line in results.tsv.
run_case() {
  local r=$1 c=$2 b=$3 out c0 m0 w0 rc line terse="" f iops100
  dev_of "$b"; fio_case "$c"
  out=fio/$r-$c-$b.txt
  sync
  busy_ticks; c0=$TICKS; moved_bytes "$DEV"; m0=$MOVED; w0=${EPOCHREALTIME/./}
  # shellcheck disable=SC2086 # the case's words are fio's arguments
  timeout $((RUNTIME + RAMP + 120)) fio --name="$c-$b" --filename="/dev/$DEV" --direct=1 \
    --ioengine=libaio $WORDS --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
    --norandommap --randrepeat=0 --output-format=normal,terse --output="$out"
  rc=$?
  busy_ticks; moved_bytes "$DEV"
  while IFS= read -r line; do [[ $line == "3;"* ]] && { terse=$line; break; }; done < "$out"
  IFS=';' read -ra f <<< "$terse"
  # terse v3 (from 0): 4 the error, 6 and 47 the read and write bandwidth
  # in KiB/s (IOPS from them: fio's own IOPS fields are whole numbers).
  if [ $rc != 0 ] || [ -z "$terse" ] || [ "${f[4]}" != 0 ]; then
    bad "fio $c on $b (round $r): status $rc, $out"
    return 1
  fi
  iops100=$(((f[6] + f[47]) * 1024 * 100 / BS))
  printf '%s\t%s\t%s\t%d.%02d\t%d\t%d\t%d\n' "$r" "$c" "$b" $((iops100 / 100)) $((iops100 % 100)) \
    $(((MOVED - m0) / BS)) $(((TICKS - c0) * 1000000 / HZ)) $((${EPOCHREALTIME/./} - w0)) >> results.tsv
}

# idle ROUND: dom0's CPU time over RUNTIME seconds with no fio (what the
# idle backends, their polling, and the emulation's own ticks cost); a
# line in results.tsv, case "idle".
idle() {
  local c0 w0
  sync
  busy_ticks; c0=$TICKS; w0=${EPOCHREALTIME/./}
  sleep "$RUNTIME"
  busy_ticks
  printf '%s\tidle\t-\t0\t0\t%d\t%d\n' "$1" $(((TICKS - c0) * 1000000 / HZ)) $((${EPOCHREALTIME/./} - w0)) >> results.tsv
}

# summary: per case, each backend's median IOPS and CPU per I/O (net of
# the round's idle rate), then the median (min-max) over rounds of the
# pairwise ratios.
summary() {
  awk -F'\t' '
    function med(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      lo = a[1]; hi = a[n]
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function cell(s,   m) { if (s == "") return "-"; m = med(s); return sprintf("%.2fx (%.2f-%.2f)", m, lo, hi) }
    $1 == "round" { next }
    $2 == "idle" { rate[$1] = $7 > 0 ? $6 / $7 : 0; idles = idles " " rate[$1] * 100; next }
    {
      net = $6 - rate[$1] * $7
      iops[$1, $2, $3] = $4; cpu[$1, $2, $3] = $5 > 0 && net > 0 ? net / $5 : 0
      if (!(($2) in seen)) { seen[$2] = 1; cases[++nc] = $2 }
      ai[$2, $3] = ai[$2, $3] " " $4; ac[$2, $3] = ac[$2, $3] " " cpu[$1, $2, $3]
      rounds[$1] = 1
    }
    END {
      nb = split("blkback qdisk xenblk xenblk-copy", be, " ")
      np = split("xenblk/qdisk xenblk/blkback xenblk-copy/qdisk xenblk-copy/blkback qdisk/blkback", pairs, " ")
      if (idles != "") printf "dom0 busy with no fio running: %.0f%% of one vCPU (median of the rounds; %.0f-%.0f)\n\n", med(idles), lo, hi
      print "Medians over rounds: IOPS, and dom0 CPU (both vCPUs, net of the idle rate) per fio I/O in microseconds."
      printf "%-18s", "case"; for (k = 1; k <= nb; k++) printf " %24s", be[k]; printf "\n"
      for (i = 1; i <= nc; i++) {
        printf "%-18s", cases[i]
        for (k = 1; k <= nb; k++) {
          if (ai[cases[i], be[k]] == "") { printf " %24s", "-"; continue }
          printf " %24s", sprintf("%.0f IOPS %.0f us", med(ai[cases[i], be[k]]), med(ac[cases[i], be[k]]))
        }
        printf "\n"
      }
      print ""
      print "Pairwise ratios, median (min-max) over the rounds: A/B of IOPS, and A/B of CPU per I/O."
      for (i = 1; i <= nc; i++) {
        for (p = 1; p <= np; p++) {
          split(pairs[p], ab, "/"); ri = ""; rc = ""
          for (r in rounds) {
            if ((r, cases[i], ab[1]) in iops && (r, cases[i], ab[2]) in iops && iops[r, cases[i], ab[2]] > 0) {
              ri = ri " " iops[r, cases[i], ab[1]] / iops[r, cases[i], ab[2]]
              if (cpu[r, cases[i], ab[1]] > 0 && cpu[r, cases[i], ab[2]] > 0) rc = rc " " cpu[r, cases[i], ab[1]] / cpu[r, cases[i], ab[2]]
            }
          }
          printf "%-18s %-20s IOPS %-20s CPU/IO %s\n", cases[i], pairs[p], cell(ri), cell(rc)
        }
      }
    }' results.tsv
}

step "lab facts"
mkdir -p fio
{
  xl info | grep -E '^(xen_version|xen_caps|nr_cpus|total_memory)\b' 
  echo "dom0 kernel $(uname -r), $(nproc) vCPUs, $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) MiB"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
  echo "qemu: $($QEMU --version | head -1)"
  echo "fio: $(fio --version)"
  echo "xenblk: $($X --version 2>&1 | head -1)"
} | tee lab-facts.txt

step "the image: $SIZE_MIB MiB, every block written, in dom0's page cache"
check dd if=/dev/zero of=$IMG bs=1M count="$SIZE_MIB" conv=fsync status=none
cat $IMG > /dev/null
free -m | tee -a lab-facts.txt

step "blkback: Linux's xen-blkback (xl block-attach) on a loop device"
# The loop device the block script would make for the file (losetup, no
# direct I/O), made here: the script's phy path is shorter, and under
# the lab host's load its file path can outlast libxl's 40 s bound.
LOOP=$(losetup -f --show $IMG)
echo "loop device: $LOOP"
xl_attach blkback xvdb "format=raw, vdev=xvdb, access=rw, target=$LOOP"

step "qdisk: QEMU as dom0's disk backend, xl block-attach backendtype=qdisk"
if [ -s $QEMU_PIDFILE ] && kill -0 "$(cat $QEMU_PIDFILE)" 2>/dev/null; then
  echo "QEMU already runs as dom0's disk backend (pid $(cat $QEMU_PIDFILE), started by xen's init script)"
  OURQEMU=
else
  check $QEMU -xen-domid 0 -xen-attach -name dom0 -nographic -M xenpv -daemonize \
    -monitor none -serial none -parallel none -pidfile $QEMU_PIDFILE
  OURQEMU=$(cat $QEMU_PIDFILE 2>/dev/null)
fi
ps -o pid,args -p "$(cat $QEMU_PIDFILE 2>/dev/null)" | tee -a lab-facts.txt
# libxl adds a qdisk to a running domain only if the domain's device model
# is running, which it reads from image/device-model-pid; the init script
# starts dom0's QEMU without writing it.
check xenstore-write /local/domain/0/image/device-model-pid "$(cat $QEMU_PIDFILE)"
xl_attach qdisk xvdc "format=raw, vdev=xvdc, access=rw, backendtype=qdisk, target=$IMG"

step "xenblk: serve, two vbds (map + persistent grants; grant copy)"
$X serve --xen=linux --no-vscsi --cpuprofile serve.pprof > serve.log 2>&1 &
SERVE=$!
check $X attach --xen=linux --domain 0 "format=raw, vdev=xvdd, access=rw, shared=1, target=$IMG"
check $X attach --xen=linux --domain 0 "format=raw, vdev=xvde, access=rw, shared=1, grant-copy=1, target=$IMG"

step "four devices, one image"
# A backend whose device never appeared is left out of the runs (and has
# failed the scenario).
present=()
for b in "${BACKENDS[@]}"; do
  dev_of "$b"; d=$DEV
  if wait_dev 120 "/dev/$d"; then ok "/dev/$d ($b) appeared"; else bad "/dev/$d ($b) never appeared"; continue; fi
  check test "$(blockdev --getsize64 "/dev/$d" 2>/dev/null)" = $((SIZE_MIB << 20))
  present+=("$b")
done
{
  echo; echo "what blkfront found (dmesg):"
  dmesg | grep -E "blkfront: xvd[b-e]:"
  echo; echo "blk-mq hardware queues:"
  for b in "${BACKENDS[@]}"; do dev_of "$b"; d=$DEV; echo "$b /dev/$d: $(ls "/sys/block/$d/mq" 2>/dev/null | wc -l)"; done
  echo; echo "max_sectors_kb / max_segments:"
  for b in "${BACKENDS[@]}"; do dev_of "$b"; d=$DEV; echo "$b /dev/$d: $(cat /sys/block/$d/queue/max_sectors_kb 2>/dev/null) / $(cat /sys/block/$d/queue/max_segments 2>/dev/null)"; done
} | tee -a lab-facts.txt
xenstore-ls -f /local/domain/0/backend > backend-nodes.txt 2>&1
xenstore-ls -f /local/domain/0/device/vbd > frontend-nodes.txt 2>&1

BACKENDS=("${present[@]}")
step "fio: ${#CASES[@]} cases x ${#BACKENDS[@]} backends, up to $ROUNDS rounds of ${RAMP}+${RUNTIME} s runs"
printf 'round\tcase\tbackend\tiops\tios\tcpu_us\twall_us\n' > results.tsv
done_rounds=0
for r in $(seq 1 "$ROUNDS"); do
  now=$(date +%s)
  if [ "$done_rounds" -gt 0 ]; then
    per=$(((now - round1_start) / done_rounds))
    if [ $((now - START + per)) -gt "$BUDGET" ]; then
      echo "round $r would end past the budget ($BUDGET s, a round takes ${per} s): stopping at $done_rounds rounds"
      break
    fi
  else
    round1_start=$now
  fi
  echo "round $r ($(date +%T))"
  idle "$r"
  for c in "${CASES[@]}"; do
    for i in "${!BACKENDS[@]}"; do
      run_case "$r" "$c" "${BACKENDS[$(((i + r - 1) % ${#BACKENDS[@]}))]}"
    done
  done
  done_rounds=$r
done
if [ "$done_rounds" -ge 1 ]; then ok "$done_rounds rounds of fio"; else bad "no round of fio ran"; fi

step "summary"
summary | tee summary.txt

step "detach"
echo "CPU time of dom0's busiest processes over the whole boot:"
ps -eo pid,time,comm --sort=-time | head -15 | tee -a lab-facts.txt
stop $SERVE "xenblk serve" # first: its profile is written as it stops
check xl block-detach 0 xvdb
losetup -d "$LOOP"
check xl block-detach 0 xvdc
check $X detach --xen=linux --domain 0 xvdd
check $X detach --xen=linux --domain 0 xvde
[ -n "${OURQEMU:-}" ] && kill "$OURQEMU"
exit $fail
