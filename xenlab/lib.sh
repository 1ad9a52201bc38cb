# Helpers for the lab scenarios (sourced in dom0, cwd /mnt/share).
fail=0
step() { echo; echo "=== $* ($(date +%T))"; }
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
# check COMMAND...: run it (at most STEP_TIMEOUT seconds) and report. A
# shell function runs in a child bash, so it (and what it calls) must be
# exported with export -f.
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
check() {
  local run=(timeout "$STEP_TIMEOUT")
  declare -F "$1" >/dev/null && run+=(bash -c '"$@"' _)
  if "${run[@]}" "$@"; then ok "$*"; else bad "$* (status $?)"; fi
}
# wait_for SECONDS COMMAND...: until the command succeeds, for SECONDS of
# the clock (not a count of tries: on a loaded host each try can take
# seconds, and a count would stretch the wait many times over).
wait_for() {
  local end=$((SECONDS + $1)); shift
  while :; do
    "$@" 2>/dev/null && return 0
    [ "$SECONDS" -ge "$end" ] && return 1
    sleep 0.2
  done
}
# allocated_kib FILE: the space a sparse file really uses.
allocated_kib() { du -k "$1" | cut -f1; }
export PATH=/mnt/share:$PATH
# stop PID NAME: SIGTERM, and it must exit within 20 s (else SIGKILL and fail).
stop() {
  kill "$1" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; ok "$2 stopped"; return 0; }; sleep 0.2; done
  kill -9 "$1" 2>/dev/null; bad "$2 did not stop on SIGTERM"
}
