#!/bin/bash
# Lab boot "xl" (dom0 booted with xen_blkback blacklisted): xenblk serve
# --backend-type vbd as the backend of the vbds xl and libxl make from
# unmodified configurations. libxl writes backend/vbd, waits for exactly
# InitWait, runs /etc/xen/scripts/block (which makes a loop device, writes
# physical-device and hotplug-status=connected, and refuses a device no
# longer in InitWait), and on removal writes online=0 + Closing, waits for
# exactly Closed, runs the script's remove and removes both directories.
#   - xl create of a PV domU (guest.sh's, running guest-b.sh) whose disk
#     line is xl's own; its blkfront reaches Connected on our backend, and
#     what it writes lands in the image;
#   - xl block-attach / block-detach on the running domU (ext4 on it in
#     the guest);
#   - xl destroy: nothing left (vbd directories, loop devices), serve
#     goes on;
#   - xl block-attach to dom0 (its own blkfront): data written there lands
#     in the image, and the image is free again after xl destroy.
# Then scenario e of issue 14: two domUs (guest.sh's, running guest-e.sh)
# share one disk through PVSCSI on our serve; one's sg_persist fences the
# other, and the reservation survives a kill -9 and restart of serve.
set -u
. ./lib.sh
X=./xenblk
DOM=/local/domain/0
lsmod | grep -q '^xen_blkback' && { echo "xen_blkback is loaded: boot with DOM0_EXTRA=module_blacklist=xen_blkback"; exit 1; }

# metric NAME DOMID DEVID: one counter of serve's /metrics, through bash's
# /dev/tcp (the lab has no curl).
metric() {
  local v
  exec 3<>/dev/tcp/127.0.0.1/9469 || return 1
  printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
  v=$(grep "^$1{" <&3 | grep "domain=\"$2\",devid=\"$3\"" | awk '{print $2}')
  exec 3<&-
  echo "${v:-0}"
}
# fe_state DOMID DEVID / be_state DOMID DEVID; fe_is DOMID DEVID STATE.
fe_state() { xenstore-read /local/domain/$1/device/vbd/$2/state 2>/dev/null; }
be_state() { xenstore-read $DOM/backend/vbd/$1/$2/state 2>/dev/null; }
fe_is() { [ "$(fe_state $1 $2)" = "$3" ]; }
# xl_do LOG ARGS...: xl -vvv ARGS, its output in LOG; a failure names
# libxl's errors (a block script killed "because of timeout" is libxl's
# 40 s limit on the hotplug script: the lab's host too loaded).
xl_do() {
  local log=$1; shift
  if xl -vvv "$@" > "$log" 2>&1; then ok "xl $*"; else bad "xl $* (status $?): $(grep 'libxl: error' "$log" | head -3 | tr '\n' ' ')"; fi
}
# try COMMAND...: check, in this shell (for guest.sh's functions).
try() { if "$@"; then ok "$*"; else bad "$* (status $?)"; fi; }

step "hypervisor $(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor), kernel $(uname -r), AVX: $(grep -ow "avx2\?" /proc/cpuinfo | sort -u | tr "\n" " ")"
mkdir -p /srv
truncate -s 256M /srv/d.img
truncate -s 64M /srv/e.img
$X serve --xen=linux --backend-type vbd --no-vscsi --metrics 127.0.0.1:9469 --verbose > serve.log 2>&1 &
SERVE=$!
if wait_for 30 grep -q "serving /local/domain/0/backend/vbd" serve.log; then ok "serve claims backend/vbd"; else bad "serve did not start"; cat serve.log; fi

step "xl create: a PV domU with xl's own disk line"
# guest.sh's guest (its script guest-b.sh); the disk line is xl's own.
. ./guest.sh
try guest_setup
try make_guest xlguest ./guest-b.sh "disk = ['format=raw, vdev=xvda, access=rw, target=/srv/d.img']"
cat $GUEST_DIR/xlguest.cfg
if create_guest xlguest > xl-create.log 2>&1; then
  ok "xl create -p $GUEST_DIR/xlguest.cfg"
else
  bad "xl create -p $GUEST_DIR/xlguest.cfg: $(grep 'libxl: error' xl-create.log | head -3 | tr '\n' ' ')"
fi
try start_guest xlguest
D=$(guest_id xlguest)
echo "domU id: $D"
if [ -n "$D" ]; then
  xenstore-ls -fp $DOM/backend/vbd/$D/51712 > be-xvda.txt 2>&1
  check test "$(xenstore-read $DOM/backend/vbd/$D/51712/hotplug-status)" = connected
  check test "$(xenstore-read $DOM/backend/vbd/$D/51712/params)" = /srv/d.img
  check test -n "$(xenstore-read $DOM/backend/vbd/$D/51712/physical-device)"
  if wait_for 300 fe_is $D 51712 4; then ok "the domU's blkfront is Connected to our backend"; else bad "the domU's frontend is in state $(fe_state $D 51712)"; fi
  check test "$(be_state $D 51712)" = 4
  xenstore-ls -fp $DOM/backend/vbd/$D/51712 > be-xvda-connected.txt 2>&1
  xenstore-ls -fp /local/domain/$D/device/vbd/51712 > fe-xvda-connected.txt 2>&1
  check grep -q "msg=connected vbd=$DOM/backend/vbd/$D/51712" serve.log
  if wait_guest xlguest 600 "^guest: xvda done"; then
    check cmp <(yes xlguest | head -c 4194304) <(dd if=/srv/d.img bs=1M skip=200 count=4 status=none)
  fi
  check test "$(metric xenblk_vbd_write_requests_total $D 51712)" -gt 0

  step "xl block-attach / block-detach on the running domU"
  xl_do xl-block-attach.log block-attach $D 'format=raw, vdev=xvdb, access=rw, target=/srv/e.img'
  if wait_for 120 fe_is $D 51728 4; then ok "xvdb Connected in the domU"; else bad "xvdb is in state $(fe_state $D 51728)"; fi
  check test "$(xenstore-read $DOM/backend/vbd/$D/51728/hotplug-status)" = connected
  losetup -a | tee losetup-attached.txt
  check grep -q /srv/e.img losetup-attached.txt
  wait_guest xlguest 900 "^guest: xvdb done"
  xl_do xl-block-detach.log block-detach $D xvdb
  check sh -c "! xenstore-read $DOM/backend/vbd/$D/51728/state"
  check sh -c "! xenstore-read /local/domain/$D/device/vbd/51728/state"
  losetup -a | tee losetup-detached.txt
  check sh -c "! grep -q /srv/e.img losetup-detached.txt"
  check grep -q "msg=removed vbd=$DOM/backend/vbd/$D/51728" serve.log
  wait_guest xlguest 900
  check test "$(fe_state $D 51712)" = 4

  step "xl destroy"
  xl_do xl-destroy.log destroy $D
  check sh -c "! xenstore-read $DOM/backend/vbd/$D/51712/state"
  if wait_for 30 grep -q "msg=removed vbd=$DOM/backend/vbd/$D/51712" serve.log; then ok "serve let xvda go"; else bad "serve still holds xvda"; fi
  losetup -a | tee losetup-destroyed.txt
  check sh -c "! grep -q /srv/ losetup-destroyed.txt"
fi
check kill -0 $SERVE

step "xl block-attach to dom0: its own blkfront on our backend"
# dom0 keeps its xen-blkfront: /dev/xvdb is served by us, from the image
# the destroyed domU had (free again).
xl_do xl-attach0.log block-attach 0 'format=raw, vdev=xvdb, access=rw, target=/srv/d.img'
if wait_for 60 test -b /dev/xvdb; then ok "dom0 has /dev/xvdb"; else bad "no /dev/xvdb"; fi
check test "$(blockdev --getsize64 /dev/xvdb)" = $((256 << 20))
head -c 4M /dev/urandom > /root/r.bin
check dd if=/root/r.bin of=/dev/xvdb bs=1M seek=16 oflag=direct status=none
check cmp /root/r.bin <(dd if=/srv/d.img bs=1M skip=16 count=4 status=none)
check cmp /root/r.bin <(dd if=/dev/xvdb bs=1M skip=16 count=4 iflag=direct status=none)
xl_do xl-detach0.log block-detach 0 xvdb
check sh -c "! xenstore-read $DOM/backend/vbd/0/51728/state"
check test ! -b /dev/xvdb

cp /var/log/xen/xen-hotplug.log xen-hotplug.log 2>/dev/null
stop $SERVE "our backend"

step "e: two domUs share one disk through PVSCSI; one fences the other, across a backend restart"
# Our serve for backend/vscsi (xen-scsiback kept out: udev would load it
# for the vhosts), reservations kept (APTPL) in /root/pr.
echo "blacklist xen_scsiback" > /etc/modprobe.d/xenlab-scsi.conf
check udevadm control --reload
truncate -s 64M /root/shared.img
mkdir -p /root/pr
$X serve --xen=linux --pr-dir /root/pr --verbose > vscsi-serve.log 2>&1 &
VSERVE=$!
if wait_for 30 grep -q "backend/vscsi" vscsi-serve.log; then ok "serve claims backend/vscsi"; else bad "serve did not start"; fi
try make_guest ea ./guest-e.sh
try make_guest eb ./guest-e.sh
try create_guest ea ROLE=a
try create_guest eb ROLE=b
EA=$(guest_id ea); EB=$(guest_id eb)
check $X attach --xen=linux --domain "$EA" --vscsi '/root/shared.img, 0:0:0:0, shared=1'
check $X attach --xen=linux --domain "$EB" --vscsi '/root/shared.img, 0:0:0:0, shared=1'
try start_guest ea
try start_guest eb
if wait_guest ea 600 "^guest a: reserved"; then
  check xenstore-write /local/domain/$EB/data/phase fenced
  if wait_guest eb 600 "^guest b: fenced"; then
    # The backend killed and restarted: the reservation is APTPL's.
    kill -9 $VSERVE; wait $VSERVE 2>/dev/null
    $X serve --xen=linux --pr-dir /root/pr --verbose > vscsi-serve2.log 2>&1 &
    VSERVE=$!
    # Both vhosts re-attached (the restarted serve writes Connected again).
    if wait_for 120 grep -q "vhost=$DOM/backend/vscsi/$EA/0 action=\"set-state Connected\"" vscsi-serve2.log &&
      wait_for 120 grep -q "vhost=$DOM/backend/vscsi/$EB/0 action=\"set-state Connected\"" vscsi-serve2.log; then
      ok "the restarted serve re-attached both vhosts"
    else
      bad "the restarted serve did not re-attach both vhosts"
    fi
    check xenstore-write /local/domain/$EA/data/phase restarted
    check xenstore-write /local/domain/$EB/data/phase restarted
    wait_guest ea 600 "^guest a: still reserved"
    wait_guest eb 600 "^guest b: still fenced"
    check xenstore-write /local/domain/$EA/data/phase release
    if wait_guest ea 300 "^guest a: released"; then
      check xenstore-write /local/domain/$EB/data/phase released
      wait_guest eb 300 "^guest b: free"
    fi
  fi
fi
wait_guest ea 60
wait_guest eb 60
try stop_guest ea
try stop_guest eb
stop $VSERVE "our vscsi backend"
dmesg > dmesg.txt
exit $fail
