#!/bin/bash
# Lab boot "hostile" (issue 14, g): a hostile domU against xenblk serve in
# dom0, while a good domU does verified I/O the whole time.
#   gh  (guest-g-hostile.sh) our hostile frontend (internal/hostileguest,
#       through xentest.test's hostile-guest role) on four vbds: bad and
#       revoked grants, requests beyond the disk, too many segments,
#       unknown operations and an event storm, in map and in grant-copy
#       mode; then req_prod moved back (xvdb), req_prod past the ring
#       (xvdc), a ring-ref removed before Initialised (xvdd), its frontend
#       directory removed mid-handshake (xvde)
#   gg  (guest-d.sh) Linux's xen-blkfront writing numbered chunks and
#       reading each back until dom0 stops it, then every chunk again
# dom0 checks that serve never crashes, that gg's I/O goes on through
# gh's cases, and that each of gh's vbds ends as hostileguest's End.Want
# says: a broken ring Closed and a refused handshake Closing, each with
# the reason in its error node.
set -u
. ./lib.sh
. ./guest.sh
X=./xenblk
step "hypervisor $(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor), kernel $(uname -r)"

step "the guests' images"
if guest_setup; then ok "guest base image built"; else bad "guest base image"; exit 1; fi
make_guest gg ./guest-d.sh || bad "make_guest gg"
make_guest --with xentest --mem 384 gh ./guest-g-hostile.sh || bad "make_guest gh"

step "xenblk serve in dom0"
$X serve --xen=linux --verbose > serve.log 2>&1 &
SERVE=$!
# crashed: serve's process is gone, or it printed a Go panic.
crashed() { ! kill -0 "$SERVE" 2>/dev/null || grep -qE '^(panic|fatal error):' serve.log; }

step "two guests: gg good, gh hostile"
truncate -s 64M /root/g.img
for v in b c d e; do truncate -s 16M "/root/h-$v.img"; done
create_guest gg || bad "xl create gg"
GG=$(guest_id gg)
create_guest gh module_blacklist=xen_blkfront XENTEST_STRANGER="$GG" || bad "xl create gh"
GH=$(guest_id gh)
echo "domains: gg $GG, gh $GH"
check $X attach --xen=linux --domain "$GG" 'format=raw, vdev=xvdb, access=rw, target=/root/g.img'
check $X attach --xen=linux --domain "$GH" 'format=raw, vdev=xvdb, access=rw, target=/root/h-b.img'
check $X attach --xen=linux --domain "$GH" 'format=raw, vdev=xvdc, access=rw, grant-copy=1, target=/root/h-c.img'
check $X attach --xen=linux --domain "$GH" 'format=raw, vdev=xvdd, access=rw, target=/root/h-d.img'
check $X attach --xen=linux --domain "$GH" 'format=raw, vdev=xvde, access=rw, target=/root/h-e.img'

# chunks GUEST: how many "d: chunk" lines its console has (one per 4
# chunks written and read back).
chunks() { guest_log "$1" | grep -c '^d: chunk '; }
# A guest whose kernel panicked (its init killed: under a loaded host's
# emulation even busybox has died at boot) ends the scenario at once.
GUEST_DEAD='Kernel panic'
start_guest gg
wait_guest gg 900 "^d: chunk 8\$|$GUEST_DEAD"
if guest_log gg | grep -q "$GUEST_DEAD"; then
  bad "gg died before its I/O started; its console:"; guest_log gg | head -20
  stop_guest gg; stop_guest gh; stop $SERVE "our backend"; exit 1
fi
start_guest gh
n0=$(chunks gg)

step "h: the hostile guest's cases, gg's I/O running"
# serve is one process: alive at the end with no panic in its log, it
# never crashed.
wait_guest gh 1200 "^guest: done rc=|$GUEST_DEAD"
guest_log gh | grep -q '^guest: done rc=0' || bad "gh's program did not end with every check passed: $(guest_log gh | grep -E '^guest: done|Kernel panic')"
n1=$(chunks gg)
if crashed; then bad "serve crashed during gh's cases"; tail -30 serve.log; else ok "serve is running, no panic in its log"; fi
if [ "$n1" -gt "$n0" ]; then ok "gg's I/O went on during gh's cases ($n0, then $n1 chunk lines)"; else bad "gg's I/O made no progress during gh's cases ($n0, then $n1 chunk lines)"; fi
check test "$(guest_log gg | grep -c 'read back wrong')" = 0

step "dom0 sees how each of gh's vbds ended"
# vdev number, state, error node wanted (hostileguest's End.Want).
for want in "51728 6 1 xvdb:req_prod-moved-back" "51744 6 1 xvdc:req_prod-past-the-ring" \
  "51760 5 1 xvdd:ring-ref-removed" "51776 6 0 xvde:frontend-gone"; do
  set -- $want
  be=/local/domain/0/backend/xenblk/$GH/$1
  state=$(xenstore-read "$be/state" 2>&1)
  msg=$(xenstore-read "$be/error" 2>/dev/null)
  echo "$4: backend state $state, error node: ${msg:-none}"
  check test "$state" = "$2"
  [ "$3" = 1 ] && check test -n "$msg"
done
check test "$(xenstore-read "/local/domain/0/backend/xenblk/$GG/51728/state")" = 4

step "g: gg stops and reads every chunk again"
check xenstore-write "/local/domain/$GG/data/stop" 1
check xenstore-chmod "/local/domain/$GG/data/stop" "n$GG"
wait_guest gg 900

step "the guests go, serve lets go of their vbds and stops cleanly"
stop_guest gh
stop_guest gg
for d in "$GH" "$GG"; do
  if wait_for 60 sh -c "! xenstore-list /local/domain/0/backend/xenblk/$d"; then ok "domain $d's vbds removed"; else bad "domain $d's vbds left: $(xenstore-list "/local/domain/0/backend/xenblk/$d" | tr '\n' ' ')"; fi
done
if crashed; then bad "serve crashed"; else stop $SERVE "our backend"; fi
grep -cE 'bad request|request failed' serve.log | sed 's/^/serve logged bad or failed requests: /'
grep -E 'disconnecting device|connect failed' serve.log
exit $fail
