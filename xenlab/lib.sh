# Helpers for the lab scenarios (sourced in dom0, cwd /mnt/share).
fail=0
step() { echo; echo "=== $* ($(date +%T))"; }
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
check() { if "$@"; then ok "$*"; else bad "$*"; fi; }
# wait_for SECONDS COMMAND...: until the command succeeds.
wait_for() {
  local t=$1; shift
  for _ in $(seq 1 $((t * 5))); do "$@" 2>/dev/null && return 0; sleep 0.2; done
  return 1
}
# allocated_kib FILE: the space a sparse file really uses.
allocated_kib() { du -k "$1" | cut -f1; }
export PATH=/mnt/share:$PATH
