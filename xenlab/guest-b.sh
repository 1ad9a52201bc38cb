# Scenario b, in the guest xl created from an unmodified disk line
# (disk = ['format=raw, vdev=xvda, access=rw, target=/srv/d.img']): its
# Linux blkfront on our serve --backend-type vbd in dom0. Sourced by
# guest-init; marker lines ("guest: ...") tell dom0 where it is.
step "guest: xvda, from xl's own disk line"
if wait_for 300 test -b /dev/xvda; then ok "/dev/xvda is there"; else bad "no /dev/xvda"; return; fi
check test "$(cat /sys/block/xvda/size)" = $((256 << 11))
# A pattern dom0 can make too: it finds it in the image.
yes xlguest | head -c 4194304 > /tmp/p.bin
check dd if=/tmp/p.bin of=/dev/xvda bs=1M seek=200 oflag=direct
check sh -c "dd if=/dev/xvda bs=1M skip=200 count=4 iflag=direct | cmp - /tmp/p.bin"
check sync
echo "guest: xvda done"

step "guest: xvdb, hot-plugged by xl block-attach"
if wait_for 900 test -b /dev/xvdb; then ok "/dev/xvdb appeared"; else bad "no /dev/xvdb"; return; fi
check mkfs.ext4 -q -F /dev/xvdb
mkdir -p /mnt/b
check mount /dev/xvdb /mnt/b
check cp /tmp/p.bin /mnt/b/p.bin
check umount /mnt/b
check fsck.ext4 -fn /dev/xvdb
check mount /dev/xvdb /mnt/b
check cmp /tmp/p.bin /mnt/b/p.bin
check umount /mnt/b
echo "guest: xvdb done"
if wait_for 900 sh -c '! test -b /dev/xvdb'; then ok "xvdb went with xl block-detach"; else bad "/dev/xvdb is still there"; fi
check dd if=/dev/xvda of=/dev/null bs=1M count=4 iflag=direct
