#!/usr/bin/env bash
# make xenlab: build static xenblk binaries, build (or reuse) the Xen lab
# image, boot it twice and run the scenarios in dom0:
#   backend.sh   our backend serving Linux's xen-blkfront (and the xen/linux
#                device tests, and a backend restart under the kernel's I/O)
#   frontend.sh  our frontend on Linux's xen-blkback, and on our backend with
#                SCSI over real grants (dom0 booted without xen_blkfront)
#   scsi.sh      PVSCSI under Linux's xen-scsifront: our serve (two vhosts
#                on one disk, fencing, hot-plug), then Linux's xen-scsiback
#                over LIO fileio as the reference
#   xl.sh        our backend as xl's own (serve --backend-type vbd, dom0
#                without xen-blkback): a domU from an unmodified config,
#                block-attach/detach, destroy; then two domUs sharing a
#                disk through PVSCSI, one fencing the other across a
#                restart of our serve; not in the default list yet
#                (xenlab/README.md says why)
#   domu.sh      guests in their own domains (PV domUs that guest.sh
#                builds) on our backend in dom0; not in the default list
#                yet (xenlab/README.md says why)
#   hostile.sh   a hostile domU (our Go frontend breaking the protocol
#                from inside the guest) against serve in dom0 while a
#                good domU does verified I/O; not in the default list yet
#   bench.sh     fio through Linux's xen-blkfront on one image served by
#                xen-blkback, QEMU's qdisk and xenblk serve, side by side
#                (make xenlab-bench; never in the default list; BENCH_*
#                variables reach it in bench.env)
# XENLAB_SCENARIOS picks some (default: "backend frontend scsi").
# XENLAB_RACE=1 builds the xenblk that runs in dom0 (and in guests) with
# the race detector: the code only real Xen exercises (xen/linux, the
# cross-domain paths) is otherwise never run under it.
# Logs land in xenlab/out/<scenario>/. Exit status: 0 only if every scenario
# passed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
LAB=${XENLAB_SCRIPTS:-}
for d in "$LAB" ../shared/xenlab /work/shared/xenlab xenlab/lab; do
  [ -n "$d" ] && [ -x "$d/run.sh" ] && { LAB=$d; break; }
done
echo "xenlab: lab scripts from $LAB"
"$LAB/build.sh" || { echo "xenlab: building the lab image failed"; exit 1; }

share=$(mktemp -d /var/tmp/xenblk-lab.XXXXXX)
trap 'rm -rf "$share"' EXIT
if [ "${XENLAB_RACE:-0}" = 1 ]; then
  # The race detector needs cgo: dom0 is Debian 12, as the machine
  # building it, so its glibc runs the binary.
  CGO_ENABLED=1 go build -race -o "$share/xenblk" ./cmd/xenblk || exit 1
else
  CGO_ENABLED=0 go build -o "$share/xenblk" ./cmd/xenblk || exit 1
fi
CGO_ENABLED=0 go test -c -o "$share/linux.test" ./xen/linux || exit 1
CGO_ENABLED=0 go test -c -o "$share/xentest.test" ./internal/xentest || exit 1
cp xenlab/lib.sh xenlab/guest*.sh xenlab/guest-init "$share/"

# Xen without XSAVE (its guests and dom0 save their registers with
# FXSAVE): with XSAVE, user processes under this emulated CPU (QEMU 7.2's
# TCG) died of corrupted state now and then: dom0's systemd (a general
# protection fault in libc), busybox and glibc's malloc in guests, and
# serve (a fresh Go object holding garbage, a stack with a wrong return
# address); hiding AVX alone did not stop it. Without XSAVE the xl
# scenario's PVSCSI part passed whole for the first time. XEN_EXTRA set
# to anything (even empty) replaces this.
export XEN_EXTRA=${XEN_EXTRA-cpuid=no-xsave}
rc=0
run() { # NAME SCRIPT [DOM0_EXTRA]
  local name=$1 script=$2 extra=${3:-}
  echo "xenlab: scenario $name ($(date +%T))"
  DOM0_EXTRA="$extra" TIMEOUT=${XENLAB_TIMEOUT:-1200} "$LAB/run.sh" -s "$share" -o "xenlab/out/$name" "xenlab/$script" > "xenlab/out-$name.console" 2>&1
  local r=$?
  mv "xenlab/out-$name.console" "xenlab/out/$name/run.log" 2>/dev/null
  echo "xenlab: scenario $name exited $r ($(date +%T))"
  grep -E "^(ok|FAIL):|^===" "xenlab/out/$name/xentest.log" 2>/dev/null
  [ $r = 0 ] || rc=1
}
mkdir -p xenlab/out
for s in ${XENLAB_SCENARIOS:-backend frontend scsi}; do
  case $s in
    backend) run backend backend.sh ;;
    frontend) run frontend frontend.sh module_blacklist=xen_blkfront ;;
    scsi) run scsi scsi.sh ;;
    xl) run xl xl.sh module_blacklist=xen_blkback ;;
    domu) run domu domu.sh ;;
    hostile) run hostile hostile.sh ;;
    bench) for v in ${!BENCH_@}; do printf '%s=%q\n' "$v" "${!v}"; done > "$share/bench.env"
      XENLAB_TIMEOUT=${XENLAB_TIMEOUT:-1800} run bench bench.sh; cat xenlab/out/bench/summary.txt 2>/dev/null ;;
    *) echo "xenlab: no scenario $s"; rc=1 ;;
  esac
done
exit $rc
