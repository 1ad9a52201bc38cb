#!/bin/bash
# Lab boot 1: the xen/linux device tests, then our backend (xenblk serve on
# real Xen) serving Linux's own xen-blkfront in dom0, then a backend restart
# under the kernel's I/O.
set -u
. ./lib.sh
X=./xenblk
step "hypervisor $(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor), kernel $(uname -r)"

step "xen/linux device tests (gntdev, gntalloc, evtchn, xenstore)"
check env XENBLK_REQUIRE_XEN=1 ./linux.test -test.v -test.count=1

step "our backend serves Linux's blkfront"
truncate -s 512M /root/disk.img
mkdir -p /root/pr
$X serve --xen=linux --pr-dir /root/pr --verbose > serve.log 2>&1 &
SERVE=$!
sleep 1
check $X attach --xen=linux --domain 0 'format=raw, vdev=xvdd, access=rw, target=/root/disk.img'
if wait_for 60 test -b /dev/xvdd; then ok "/dev/xvdd appeared"; else bad "/dev/xvdd never appeared"; fi
xenstore-ls -f /local/domain/0/backend/xenblk > backend-nodes.txt 2>&1
xenstore-ls -f /local/domain/0/device/vbd > frontend-nodes.txt 2>&1
dmesg | grep -iE "blkfront|xvdd" | tee blkfront-dmesg.txt
check test "$(blockdev --getsize64 /dev/xvdd)" = $((512 << 20))
check grep -q "persistent grants: enabled" blkfront-dmesg.txt
check grep -q "indirect descriptors: enabled" blkfront-dmesg.txt
check grep -q "flush diskcache: enabled" blkfront-dmesg.txt
nq=$(ls /sys/block/xvdd/mq | wc -l)
echo "blk-mq hardware queues of xvdd: $nq"
check test "$nq" -ge 2
check grep -q "multi-queue-num-queues" frontend-nodes.txt

step "data through /dev/xvdd is in the backing file, and back"
head -c 8M /dev/urandom > /root/a.bin
check dd if=/root/a.bin of=/dev/xvdd bs=1M oflag=direct status=none
check cmp -n $((8 << 20)) /root/a.bin /root/disk.img
head -c 4M /dev/urandom > /root/b.bin
dd if=/root/b.bin of=/root/disk.img bs=1M seek=100 conv=notrunc status=none; sync
check cmp <(dd if=/dev/xvdd bs=1M skip=100 count=4 iflag=direct status=none) /root/b.bin

step "fio verify: random 4k-1M writes at QD32, crc32c"
check fio --name=verify --filename=/dev/xvdd --direct=1 --ioengine=libaio --iodepth=32 \
  --rw=randwrite --bsrange=4k-1M --size=128M --offset=256M --verify=crc32c --do_verify=1 \
  --verify_fatal=1 --randrepeat=0 --output=fio.txt
tail -25 fio.txt

step "discard punches holes in the backing file"
before=$(allocated_kib /root/disk.img)
check blkdiscard -o $((256 << 20)) -l $((128 << 20)) /dev/xvdd
sync
after=$(allocated_kib /root/disk.img)
echo "backing file allocated: ${before} KiB before, ${after} KiB after"
check test "$after" -lt $((before - 100000))

step "ext4 on /dev/xvdd"
check mkfs.ext4 -q -F /dev/xvdd
mkdir -p /mnt/x
check mount /dev/xvdd /mnt/x
for i in $(seq 1 20); do head -c 256K /dev/urandom > /mnt/x/f$i; done
sha256sum /mnt/x/f* > /root/sums
check umount /mnt/x
check fsck.ext4 -fn /dev/xvdd
check mount /dev/xvdd /mnt/x
check sha256sum -c --quiet /root/sums
check umount /mnt/x

step "backend restart under the kernel's I/O"
head -c 64M /dev/urandom > /root/c.bin
( dd if=/root/c.bin of=/dev/xvdd bs=1M seek=300 oflag=direct status=none; echo "dd rc=$?" > dd.rc ) &
DD=$!
sleep 2
kill -9 $SERVE; wait $SERVE 2>/dev/null
echo "backend killed; restarting"
$X serve --xen=linux --pr-dir /root/pr --verbose > serve2.log 2>&1 &
SERVE=$!
if wait_for 300 test -f dd.rc; then ok "guest I/O finished after the restart: $(cat dd.rc)"; else bad "guest I/O hung after the backend restart"; fi
check grep -q "rc=0" dd.rc
# On a quiet host the write can end before serve2 has written its log:
# wait for the line rather than read the log once.
if wait_for 60 grep -q "resuming the ring" serve2.log; then ok "the restarted serve resumed the ring"; else bad "serve2 never resumed the ring"; fi
grep "resuming the ring" serve2.log
sync
check cmp <(dd if=/dev/xvdd bs=1M skip=300 count=64 iflag=direct status=none) /root/c.bin
check cmp <(dd if=/root/disk.img bs=1M skip=300 count=64 status=none) /root/c.bin

step "a block device behind our backend: phy /dev/loopN to Linux's blkfront, BLKDISCARD"
truncate -s 128M /root/disk3.img
LOOP=$(losetup -f --show /root/disk3.img)
echo "loop device: $LOOP"
check $X attach --xen=linux --domain 0 "format=raw, vdev=xvde, access=rw, target=$LOOP"
if wait_for 60 test -b /dev/xvde; then ok "/dev/xvde appeared"; else bad "/dev/xvde never appeared"; fi
check test "$(blockdev --getsize64 /dev/xvde)" = $((128 << 20))
head -c 32M /dev/urandom > /root/e.bin
check dd if=/root/e.bin of=/dev/xvde bs=1M oflag=direct status=none
sync
check cmp -n $((32 << 20)) /root/e.bin /root/disk3.img
before=$(allocated_kib /root/disk3.img)
check blkdiscard /dev/xvde
sync
after=$(allocated_kib /root/disk3.img)
echo "file behind the loop device: ${before} KiB before, ${after} KiB after the discard"
check test "$after" -lt $((before - 20000))
check $X detach --xen=linux --domain 0 xvde
losetup -d "$LOOP"

step "4096-byte sectors and O_DIRECT from the disk spec: Linux's blkfront sees 4K logical blocks"
truncate -s 64M /root/disk4k.img
check $X attach --xen=linux --domain 0 "format=raw, vdev=xvdf, access=rw, sector-size=4096, direct=1, target=/root/disk4k.img"
if wait_for 60 test -b /dev/xvdf; then ok "/dev/xvdf appeared"; else bad "/dev/xvdf never appeared"; fi
check test "$(blockdev --getss /dev/xvdf)" = 4096
check test "$(blockdev --getsize64 /dev/xvdf)" = $((64 << 20))
head -c 16M /dev/urandom > /root/f.bin
check dd if=/root/f.bin of=/dev/xvdf bs=1M seek=8 oflag=direct status=none
check cmp <(dd if=/root/disk4k.img bs=1M skip=8 count=16 status=none) /root/f.bin
check cmp <(dd if=/dev/xvdf bs=1M skip=8 count=16 iflag=direct status=none) /root/f.bin
check $X detach --xen=linux --domain 0 xvdf

step "grant copy from the disk spec: Linux's blkfront on a vbd that maps no page of its"
truncate -s 128M /root/diskgc.img
check $X attach --xen=linux --domain 0 "format=raw, vdev=xvdg, access=rw, grant-copy=1, target=/root/diskgc.img"
if wait_for 60 test -b /dev/xvdg; then ok "/dev/xvdg appeared"; else bad "/dev/xvdg never appeared"; fi
GC=/local/domain/0/backend/xenblk/0/51808 # xvdg: 202<<8 | 6<<4
check test "$(xenstore-read $GC/grant-copy)" = 1
check test -z "$(xenstore-read $GC/feature-persistent 2>/dev/null)"
dmesg | grep "xvdg:" | tee blkfront-xvdg-dmesg.txt
check grep -q "persistent grants: disabled" blkfront-xvdg-dmesg.txt
check grep -q "indirect descriptors: enabled" blkfront-xvdg-dmesg.txt
head -c 32M /dev/urandom > /root/g.bin
check dd if=/root/g.bin of=/dev/xvdg bs=1M oflag=direct status=none
check cmp -n $((32 << 20)) /root/g.bin /root/diskgc.img
check cmp <(dd if=/dev/xvdg bs=1M count=32 iflag=direct status=none) /root/g.bin
check fio --name=verify-gc --filename=/dev/xvdg --direct=1 --ioengine=libaio --iodepth=32 \
  --rw=randwrite --bsrange=4k-1M --size=64M --offset=64M --verify=crc32c --do_verify=1 \
  --verify_fatal=1 --randrepeat=0 --output=fio-gc.txt
tail -5 fio-gc.txt
check grep -q "grant-copy=true" serve2.log
check $X detach --xen=linux --domain 0 xvdg

step "removal leaves nothing behind"
check $X detach --xen=linux --domain 0 xvdd
if wait_for 30 sh -c '! test -b /dev/xvdd'; then ok "/dev/xvdd is gone"; else bad "/dev/xvdd is still there"; fi
check test -z "$(xenstore-list /local/domain/0/backend/xenblk/0 2>/dev/null)"
check test -z "$(xenstore-list /local/domain/0/device/vbd 2>/dev/null)"
stop $SERVE "our backend"
echo "serve exited $?"
cp serve.log serve2.log . 2>/dev/null
exit $fail
