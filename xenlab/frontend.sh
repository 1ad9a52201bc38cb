#!/bin/bash
# Lab boot 2 (dom0 booted with xen_blkfront blacklisted, so no kernel
# frontend grabs the vbds): our frontend (xenblk front on real Xen) on
# Linux's own xen-blkback, then our frontend on our backend with the SCSI
# extension over real grants and event channels.
set -u
. ./lib.sh
X=./xenblk
lsmod | grep -q '^xen_blkfront' && { echo "xen_blkfront is loaded: boot with DOM0_EXTRA=module_blacklist=xen_blkfront"; exit 1; }
# Our frontend grants its rings, data pool and indirect pages with gntalloc;
# the kernel's default cap (1024 pages) is too small for deep queues, and
# xen/linux raises it (as root) when it opens gntalloc.
echo "gntalloc limit at boot: $(cat /sys/module/xen_gntalloc/parameters/limit)"
modprobe nbd nbds_max=4 2>/dev/null

step "conformance and hostile peers through our frontend and backend over xen/linux, in one process"
check env XENBLK_REQUIRE_XEN=1 ./xentest.test -test.v -test.count=1

echo "gntalloc limit after our tests: $(cat /sys/module/xen_gntalloc/parameters/limit)"
check test "$(cat /sys/module/xen_gntalloc/parameters/limit)" -ge 262144

step "our frontend on Linux's xen-blkback"
truncate -s 256M /root/kdisk.img
head -c 8M /dev/urandom > /root/a.bin
dd if=/root/a.bin of=/root/kdisk.img conv=notrunc status=none
check xl block-attach 0 'format=raw, vdev=xvdb, access=rw, target=/root/kdisk.img'
BE=/local/domain/0/backend/vbd/0/51728
if wait_for 30 sh -c "test \"\$(xenstore-read $BE/state)\" = 2"; then ok "kernel blkback in InitWait"; else bad "kernel blkback never reached InitWait"; fi
xenstore-ls -f $BE > kernel-backend-nodes.txt
$X front --xen=linux --vdev xvdb --nbd 127.0.0.1:10809 --verbose > front.log 2>&1 &
FRONT=$!
if wait_for 60 grep -q '^NBD' front.log; then ok "our frontend connected"; else bad "our frontend did not connect"; cat front.log; fi
cat front.log
dmesg | grep -i blkback | tail -5 | tee blkback-dmesg.txt
check test "$(xenstore-read $BE/state)" = 4
check grep -q "persistent true" front.log
check grep -q "flush=true" front.log
check grep -q "discard=true" front.log
check grep -qE "indirect [1-9]" front.log
NBD=/dev/nbd0
if nbd-client 127.0.0.1 10809 $NBD -N xvdb -b 512 >/dev/null 2>&1 || nbd-client -N xvdb 127.0.0.1 10809 $NBD >/dev/null 2>&1; then
  ok "nbd-client attached $NBD"
  check test "$(blockdev --getsize64 $NBD)" = $((256 << 20))
  check cmp -n $((8 << 20)) /root/a.bin $NBD
  head -c 8M /dev/urandom > /root/b.bin
  check dd if=/root/b.bin of=$NBD bs=1M seek=64 oflag=direct status=none
  check blockdev --flushbufs $NBD
  check cmp <(dd if=/root/kdisk.img bs=1M skip=64 count=8 status=none) /root/b.bin
  check fio --name=verify --filename=$NBD --direct=1 --ioengine=libaio --iodepth=32 \
    --rw=randwrite --bsrange=4k-1M --size=64M --offset=128M --verify=crc32c --do_verify=1 \
    --verify_fatal=1 --randrepeat=0 --output=fio-front.txt
  tail -12 fio-front.txt
  check mkfs.ext4 -q -F $NBD
  mkdir -p /mnt/y
  check mount $NBD /mnt/y
  for i in $(seq 1 10); do head -c 256K /dev/urandom > /mnt/y/f$i; done
  sha256sum /mnt/y/f* > /root/sums
  check umount /mnt/y
  check fsck.ext4 -fn $NBD
  nbd-client -d $NBD >/dev/null 2>&1
else
  bad "nbd-client could not attach (is the nbd module there?)"
fi
# Detach while our frontend runs: blkback goes Closing, our frontend must
# answer Closed so that the kernel lets the device go.
check xl block-detach 0 xvdb
check test -z "$(xenstore-list /local/domain/0/backend/vbd/0 2>/dev/null)"
stop $FRONT "our frontend"

step "our frontend on our backend on real Xen: SCSI over the extra request"
truncate -s 128M /root/disk2.img
mkdir -p /root/pr
$X serve --xen=linux --pr-dir /root/pr > serve.log 2>&1 &
SERVE=$!
check $X attach --xen=linux --domain 0 'format=raw, vdev=xvdc, access=rw, target=/root/disk2.img'
$X front --xen=linux --vdev xvdc --nbd 127.0.0.1:10810 --control /tmp/xc.sock > front2.log 2>&1 &
FRONT=$!
if wait_for 60 test -S /tmp/xc.sock; then ok "our frontend connected to our backend"; else bad "no connection"; cat front2.log serve.log; fi
cat front2.log
check grep -q "scsi true" front2.log
S="$X scsi --control /tmp/xc.sock"
# The first command of a new I_T nexus reports the power-on unit attention
# (as a real disk does); TEST UNIT READY takes it, as initiators do.
$S tur || echo "tur reported the unit attention (expected once)"
check $S tur
$S inquiry | tee inquiry.txt
check grep -qi "xenblk" inquiry.txt
$S inquiry --vpd 0xb1 | tee vpd-b1.txt
check grep -qi "rotation" vpd-b1.txt
check $S persist --out --register --param-sark 0x1234
check $S persist --out --reserve --param-rk 0x1234 --prout-type 1
$S persist --in --read-reservation | tee read-reservation.txt
check grep -qi "0x1234" read-reservation.txt
$S persist --in --read-keys | tee read-keys.txt
check grep -qi "0x1234" read-keys.txt
$X pr --control /tmp/xc.sock read-keys | tee pr-read-keys.txt
check grep -qi "1234" pr-read-keys.txt

step "our backend killed and restarted under our frontend's I/O on real Xen"
# On real Xen nothing tells a frontend that its backend died (the event
# channel just goes unbound); the restarted backend resumes its rings.
if nbd-client 127.0.0.1 10810 /dev/nbd1 -N xvdc -b 512 >/dev/null 2>&1 || nbd-client -N xvdc 127.0.0.1 10810 /dev/nbd1 >/dev/null 2>&1; then
  head -c 32M /dev/urandom > /root/d.bin
  ( dd if=/root/d.bin of=/dev/nbd1 bs=1M seek=16 oflag=direct status=none; echo "dd rc=$?" > dd2.rc ) &
  sleep 1
  kill -9 $SERVE; wait $SERVE 2>/dev/null
  $X serve --xen=linux --pr-dir /root/pr > serve3.log 2>&1 &
  SERVE=$!
  if wait_for 300 test -f dd2.rc; then ok "I/O finished after the restart: $(cat dd2.rc)"; else bad "I/O hung after the backend restart"; fi
  check grep -q "rc=0" dd2.rc
  check cmp <(dd if=/dev/nbd1 bs=1M skip=16 count=32 iflag=direct status=none) /root/d.bin
  check cmp <(dd if=/root/disk2.img bs=1M skip=16 count=32 status=none) /root/d.bin
  grep "resuming the ring" serve3.log
  check grep -q "resuming the ring" serve3.log
  nbd-client -d /dev/nbd1 >/dev/null 2>&1
else
  bad "nbd-client could not attach /dev/nbd1"
fi

check $X detach --xen=linux --domain 0 xvdc
stop $FRONT "our frontend"
stop $SERVE "our backend"
exit $fail
