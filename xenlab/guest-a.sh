# Scenario a, in the guest (sourced by guest-init): Linux's xen-blkfront on
# xenblk serve in dom0. Environment (create_guest): OTHER_BE and OTHER_FE,
# the backend and frontend directories of another domain's vbd.
step "blkfront found the disk xenblk serves"
if wait_for 300 test -b /dev/xvdb; then ok "/dev/xvdb appeared"; else bad "/dev/xvdb never appeared"; ls /sys/bus/xen/devices; exit 1; fi
dmesg | grep -iE "blkfront|xvdb"
check test "$(cat /sys/block/xvdb/size)" = $((512 << 11))
echo "write cache: $(cat /sys/block/xvdb/queue/write_cache)"
check test "$(cat /sys/block/xvdb/queue/write_cache)" = "write back"
check test "$(cat /sys/block/xvdb/queue/discard_max_bytes)" -gt 0

step "xenstore: the guest reads its backend's directory and writes only its own"
fe=device/vbd/51728
be=$(xenstore-read $fe/backend)
echo "frontend $fe, backend $be"
check xenstore-read "$be/sectors"
check xenstore-read "$be/feature-flush-cache"
if xenstore-write "$be/sectors" 1 2>/dev/null; then bad "the guest wrote its backend's sectors node"; else ok "the guest cannot write its backend's nodes"; fi
check xenstore-write "$fe/domu-probe" 1
check xenstore-rm "$fe/domu-probe"

step "xenstore: another domain's vbd is out of the guest's reach"
echo "other vbd: backend $OTHER_BE, frontend $OTHER_FE"
for p in "$OTHER_BE" "$OTHER_BE/state" "$OTHER_BE/params" "$OTHER_FE" "$OTHER_FE/state" "$OTHER_FE/ring-ref"; do
  if xenstore-read "$p" >/dev/null 2>&1 || xenstore-list "$p" >/dev/null 2>&1; then bad "the guest read $p"; else ok "the guest cannot read $p"; fi
done
for p in "$OTHER_BE/state" "$OTHER_FE/state" "$OTHER_BE/domu-probe" "$OTHER_FE/domu-probe"; do
  if xenstore-write "$p" 6 2>/dev/null; then bad "the guest wrote $p"; else ok "the guest cannot write $p"; fi
done
if xenstore-rm "$OTHER_FE" 2>/dev/null; then bad "the guest removed $OTHER_FE"; else ok "the guest cannot remove $OTHER_FE"; fi

step "data written by the guest, flushed, for dom0 to find in the image"
# At 128 MiB: clear of the ext4 (the first 64 MiB) and of the writers and
# the discard below (256 MiB on), so dom0 still finds it at the end.
check dd if=/dev/urandom of=/tmp/a.bin bs=1M count=8
check dd if=/tmp/a.bin of=/dev/xvdb bs=1M seek=128 oflag=direct conv=fsync
echo "sum-a: $(sha256sum /tmp/a.bin | cut -d' ' -f1)"
check sh -c "dd if=/dev/xvdb bs=1M skip=128 count=8 iflag=direct 2>/dev/null | cmp - /tmp/a.bin"

step "verified writes of 4 KiB to 1 MiB, 32 in flight, then read back"
# fio aborted here (std::bad_alloc from one of its libraries at start) in
# a 512 MiB guest: 32 writers instead, each owning 2 MiB at 256 MiB + 2j
# MiB, writing it from its own random file in pieces of a random 4 KiB
# to 1 MiB with O_DIRECT; then the 64 MiB are read back and compared.
j=0
while [ $j -lt 32 ]; do
  (
    dd if=/dev/urandom of=/tmp/src$j bs=1M count=2 2>/dev/null
    done_4k=0
    while [ $done_4k -lt 512 ]; do
      n=$(( (RANDOM % 256) + 1 ))
      [ $((done_4k + n)) -gt 512 ] && n=$((512 - done_4k))
      dd if=/tmp/src$j of=/dev/xvdb bs=4k skip=$done_4k seek=$(( (256 << 8) + j * 512 + done_4k )) \
        count=$n oflag=direct conv=notrunc 2>/dev/null || { echo "writer $j failed"; exit 1; }
      done_4k=$((done_4k + n))
    done
  ) &
  j=$((j + 1))
done
wait
check sync
j=0; wrong=0
while [ $j -lt 32 ]; do
  dd if=/dev/xvdb of=/tmp/got bs=1M skip=$((256 + 2 * j)) count=2 iflag=direct 2>/dev/null
  cmp -s /tmp/src$j /tmp/got || { wrong=$((wrong + 1)); echo "2 MiB of writer $j read back wrong"; }
  rm -f /tmp/src$j
  j=$((j + 1))
done
check test "$wrong" = 0

step "discard, then ext4: mkfs, files, fsck, read back"
check blkdiscard -o $((256 << 20)) -l $((128 << 20)) /dev/xvdb
echo "discarded: 256M..384M"
check mkfs.ext4 -q -F /dev/xvdb 64M
check mount -t ext4 /dev/xvdb /mnt
i=1; while [ $i -le 10 ]; do dd if=/dev/urandom of=/mnt/f$i bs=64K count=4 2>/dev/null; i=$((i + 1)); done
sha256sum /mnt/f* > /tmp/sums
check umount /mnt
check fsck.ext4 -fn /dev/xvdb
check mount -t ext4 -o ro /dev/xvdb /mnt
check sha256sum -c -s /tmp/sums
check umount /mnt
