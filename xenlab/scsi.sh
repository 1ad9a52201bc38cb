#!/bin/bash
# Lab boot 3: PVSCSI under Linux's xen-scsifront.
#
# The reference: Linux's own pair (xen-scsiback over a LIO fileio
# backstore configured through configfs) serving two vhosts on one disk,
# with the checks a SCSI initiator makes: lsscsi, sg_inq and its VPD pages,
# sg_readcap, sg_vpd, sg_luns, ext4 + fsck, and sg_persist's fencing
# sequence as fence_scsi issues it between the two nexuses. What LIO
# answers is logged (ref-*.txt), and only that it answers is checked: our
# backend is held to docs/PROTOCOL.md, not to LIO.
set -u
. ./lib.sh

C=/sys/kernel/config/target
DOM=/local/domain/0

# make_vhost DEVID PDEV VDEV: a vhost with one LUN for a frontend in dom0,
# written as vscsiif.h's protocol section gives it (what libxl's vscsi
# support would write), all in one xenstore-write: one transaction, so the
# drivers' watches see the whole device at once (udev loads xen-scsifront
# as soon as device/vscsi appears; nodes written one by one race with its
# probe and with the backend's).
make_vhost() {
  local id=$1 pdev=$2 vdev=$3 type=${VHOST_TYPE:-vscsi}
  local be=$DOM/backend/$type/0/$id fe=$DOM/device/vscsi/$id
  xenstore-write $be/frontend $fe $be/frontend-id 0 $be/online 1 \
    $be/feature-host 0 $be/vscsi-devs/dev-0/p-dev "$pdev" \
    $be/vscsi-devs/dev-0/v-dev "$vdev" $be/vscsi-devs/dev-0/state 1 \
    $fe/backend $be $fe/backend-id 0 $be/state 1 $fe/state 1
}

# lun_node VHOST LUN CLASS: the block (CLASS=block) or SCSI generic
# (CLASS=scsi_generic) node scsifront made for that LUN of that vhost.
lun_node() {
  local d
  for d in /sys/bus/xen/devices/vscsi-$1/host*/target*/*:*:*:$2/$3/*; do
    [ -e "$d" ] && { echo /dev/$(basename "$d"); return 0; }
  done
  return 1
}
# wait_lun VHOST LUN: both nodes of the LUN are there (scsifront's probe
# can take well over 5 s).
wait_lun() {
  wait_for 90 sh -c "ls /sys/bus/xen/devices/vscsi-$1/host*/target*/*:*:*:$2/block/* >/dev/null 2>&1 &&
    ls /sys/bus/xen/devices/vscsi-$1/host*/target*/*:*:*:$2/scsi_generic/* >/dev/null 2>&1" &&
    wait_for 30 test -b "$(lun_node "$1" "$2" block)"
}

# identity_checks PREFIX SG SD: what an initiator asks a new disk, each
# answer logged in PREFIX-*.txt.
identity_checks() {
  local p=$1 sg=$2 sd=$3 page
  lsscsi -g | tee $p-lsscsi.txt
  check grep -qE "$sd +$sg( |$)" $p-lsscsi.txt
  check test -b "$sd"
  check test -c "$sg"
  # The first command of a new nexus may report the power-on unit
  # attention; TEST UNIT READY takes it, as initiators do.
  sg_turs "$sg" >/dev/null 2>&1
  check sh -c "sg_inq $sg > $p-inq.txt"
  for page in 0x00 0x80 0x83 0xb0 0xb1 0xb2; do
    check sh -c "sg_inq -p $page $sg > $p-inq-$page.txt 2>&1"
  done
  check sh -c "sg_readcap -l $sg > $p-readcap.txt"
  check sh -c "sg_vpd $sg > $p-vpd.txt"
  check sh -c "sg_vpd -p di $sg > $p-vpd-di.txt"
  check sh -c "sg_luns $sg > $p-luns.txt"
  cat $p-inq.txt $p-readcap.txt $p-vpd.txt $p-luns.txt
}

# filesystem_checks SD: ext4 made, written, checked clean.
filesystem_checks() {
  local sd=$1 m=/mnt/scsi-fs i
  check mkfs.ext4 -q -F "$sd"
  mkdir -p $m
  check mount "$sd" $m
  for i in $(seq 1 8); do head -c 256K /dev/urandom > $m/f$i; done
  (cd $m && sha256sum f*) > /root/fs-sums
  check umount $m
  check fsck.ext4 -fn "$sd"
  check mount "$sd" $m
  check sh -c "cd $m && sha256sum -c --quiet /root/fs-sums"
  check umount $m
}

# pr PREFIX NAME SG ARGS...: one sg_persist, logged in PREFIX-pr-NAME.txt.
pr() {
  local p=$1 name=$2 sg=$3; shift 3
  echo "sg_persist $* $sg" > $p-pr-$name.txt
  sg_persist -n "$@" "$sg" >> $p-pr-$name.txt 2>&1
}
# write_one SG: one WRITE(10) of block 0 through SCSI generic; prints
# sg_raw's report (the SCSI status) on failure.
write_one() { head -c 512 /dev/zero > /root/zero.blk; sg_raw -s 512 -i /root/zero.blk "$1" 2a 00 00 00 00 00 00 00 01 00 2>&1; }
read_one() { sg_raw -r 512 "$1" 28 00 00 00 00 00 00 00 01 00 >/dev/null 2>&1; }
# conflict SG: the write ends in RESERVATION CONFLICT.
conflict() { write_one "$1" | grep -qi "reservation conflict"; }

# fence_checks PREFIX SGA SGB SDB: the fencing sequence of fence_scsi between
# node A (SGA) and node B (SGB, its block device SDB), two nexuses on one
# disk. Keys are fence_scsi's shape (node id in the high bytes).
fence_checks() {
  local p=$1 a=$2 b=$3 sdb=$4 ka=0x10001 kb=0x20001
  sg_turs "$a" >/dev/null 2>&1; sg_turs "$b" >/dev/null 2>&1
  check pr $p register-a "$a" -o -I -S $ka
  check pr $p reserve-a "$a" -o -R -K $ka -T 5
  check pr $p read-keys "$a" -i -k
  check grep -q "$ka" $p-pr-read-keys.txt
  check pr $p read-reservation "$a" -i -r
  check grep -qi "Write Exclusive, registrants only" $p-pr-read-reservation.txt
  # B is not registered: its writes conflict, its reads work, and at the
  # block layer the write fails.
  check conflict "$b"
  check read_one "$b"
  if dd if=/dev/zero of="$sdb" bs=4k count=1 oflag=direct status=none 2> $p-dd-unregistered.txt; then
    bad "a write through $sdb (unregistered) succeeded"
  else
    ok "a write through $sdb (unregistered) failed: $(cat $p-dd-unregistered.txt)"
  fi
  # RESERVATION CONFLICT reaches the block layer as BLK_STS_NEXUS (EBADE).
  check grep -q "Invalid exchange" $p-dd-unregistered.txt
  check dd if="$sdb" of=/dev/null bs=4k count=1 iflag=direct status=none
  # B registers: a registrant may write under type 5.
  check pr $p register-b "$b" -o -I -S $kb
  check write_one "$b"
  check pr $p read-full-status "$a" -i -s
  cat $p-pr-read-full-status.txt
  check test "$(grep -ci "transport id" $p-pr-read-full-status.txt)" -ge 2
  # A fences B: PREEMPT AND ABORT of B's key; B's writes conflict again.
  check pr $p preempt-abort "$a" -o -A -T 5 -K $ka -S $kb
  check pr $p read-keys-after "$a" -i -k
  check sh -c "! grep -q $kb $p-pr-read-keys-after.txt"
  sg_turs "$b" >/dev/null 2>&1
  check conflict "$b"
  check read_one "$b"
  check pr $p release "$a" -o -L -K $ka -T 5
  check pr $p read-reservation-after "$a" -i -r
  check grep -qi "no reservation" $p-pr-read-reservation-after.txt
  check pr $p clear "$a" -o -C -K $ka
  check pr $p read-keys-cleared "$a" -i -k
  check grep -qi "no registered" $p-pr-read-keys-cleared.txt
  sg_turs "$b" >/dev/null 2>&1
  check write_one "$b"
}

export -f pr write_one read_one conflict

step "hypervisor $(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor), kernel $(uname -r)"

step "reference: Linux's xen-scsiback (LIO fileio) under xen-scsifront, two vhosts on one disk"
# LIO keeps its PR metadata under db_root (default /etc/target; without it
# every PR OUT that changes state answers NOT READY, LOGICAL UNIT
# COMMUNICATION FAILURE after doing its work), and lists its VPD pages
# only once the backstore has a unit serial: both as targetcli sets them.
mkdir -p /etc/target/pr
check modprobe target_core_mod
check modprobe target_core_file
check modprobe xen-scsiback
truncate -s 256M /root/lio.img
mkdir -p $C/core/fileio_0/d0
echo "fd_dev_name=/root/lio.img,fd_dev_size=$((256 << 20))" > $C/core/fileio_0/d0/control
check sh -c "echo 1 > $C/core/fileio_0/d0/enable"
check sh -c "echo 5001405a-0000-4000-8000-00000000d0d0 > $C/core/fileio_0/d0/wwn/vpd_unit_serial"
# Two target ports on the one backstore, each with its own initiator
# (nexus) name: two I_T nexuses, as two guests would have.
for i in 1 2; do
  W=naa.500140500000000$i
  mkdir -p $C/xen-pvscsi/$W/tpgt_1/lun/lun_0
  echo naa.50014050000000a$i > $C/xen-pvscsi/$W/tpgt_1/nexus
  ln -s $C/core/fileio_0/d0 $C/xen-pvscsi/$W/tpgt_1/lun/lun_0/port0
done
make_vhost 0 naa.5001405000000001:0 0:0:0:0
make_vhost 1 naa.5001405000000002:0 0:0:0:0
check modprobe xen-scsifront
if wait_lun 0 0 && wait_lun 1 0; then ok "both vhosts' LUNs appeared"; else bad "scsifront never showed both LUNs"; fi
xenstore-ls -f $DOM/backend/vscsi > ref-backend-nodes.txt 2>&1
xenstore-ls -f $DOM/device/vscsi > ref-frontend-nodes.txt 2>&1
dmesg | grep -iE "scsi|xen-pvscsi|vscsi" | tee ref-dmesg.txt
check test "$(xenstore-read $DOM/backend/vscsi/0/0/state)" = 4
check test "$(xenstore-read $DOM/backend/vscsi/0/0/vscsi-devs/dev-0/state)" = 4
SGA=$(lun_node 0 0 scsi_generic); SDA=$(lun_node 0 0 block)
SGB=$(lun_node 1 0 scsi_generic); SDB=$(lun_node 1 0 block)
echo "vhost 0: $SDA $SGA; vhost 1: $SDB $SGB"
if [ -n "$SGA" ] && [ -n "$SGB" ]; then
  step "reference: identity"
  identity_checks ref "$SGA" "$SDA"
  step "reference: ext4"
  filesystem_checks "$SDA"
  step "reference: fence_scsi's sg_persist sequence between the two vhosts"
  fence_checks ref "$SGA" "$SGB" "$SDB"
fi

dmesg > dmesg.txt
exit $fail
