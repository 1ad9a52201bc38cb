#!/bin/bash
# Lab boot "domu": guests in their own domains (issue 14), PV domUs booted
# from the lab's kernel with guest.sh's image, on xenblk serve in dom0.
#   a  a domU's Linux xen-blkfront on our backend: verified writes of 4
#      KiB to 1 MiB 32 at a time (fio aborts in the guest: guest-a.sh),
#      ext4 + fsck, discard, flush; xenstore permissions as libxl gives
#      them, checked from inside the guest
#   c  xl destroy mid-I/O: serve lets go of every mapping and channel of
#      the dead guest, removes its vbd, and goes on serving
#   d  xl pause/unpause, xl save/restore and xl migrate to localhost with
#      verified I/O running in the guest
#   f  our Go frontend (xenblk front --xen=linux) inside a domU on our
#      backend: data both ways, the SCSI extension, a reservation
# The guests boot in parallel (c's disk comes last, as a hot-plug, so
# that c is measured with nothing else running).
set -u
. ./lib.sh
. ./guest.sh
X=./xenblk
step "hypervisor $(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor), kernel $(uname -r), AVX: $(grep -ow "avx2\?" /proc/cpuinfo | sort -u | tr "\n" " ")"

step "the guests' images"
if guest_setup; then ok "guest base image built"; else bad "guest base image"; exit 1; fi
make_guest ga ./guest-a.sh || bad "make_guest ga"
make_guest gc ./guest-c.sh || bad "make_guest gc"
make_guest gd ./guest-d.sh || bad "make_guest gd"
make_guest --with xenblk gf ./guest-f.sh || bad "make_guest gf"

step "xenblk serve in dom0, and dom0's own vbd"
mkdir -p /root/pr
$X serve --xen=linux --pr-dir /root/pr --verbose > serve.log 2>&1 &
SERVE=$!
truncate -s 64M /root/dom0.img
check $X attach --xen=linux --domain 0 'format=raw, vdev=xvdd, access=rw, target=/root/dom0.img'
if wait_for 60 test -b /dev/xvdd; then ok "dom0's /dev/xvdd appeared"; else bad "dom0's /dev/xvdd never appeared"; fi

step "four guests boot"
truncate -s 512M /root/a.img
truncate -s 64M /root/c.img
truncate -s 64M /root/d.img
truncate -s 64M /root/f.img
head -c 4M /dev/urandom > /root/f-in.bin
dd if=/root/f-in.bin of=/root/f.img bs=1M seek=8 conv=notrunc status=none
create_guest ga OTHER_BE=/local/domain/0/backend/xenblk/0/51760 OTHER_FE=/local/domain/0/device/vbd/51760 || bad "xl create ga"
create_guest gc || bad "xl create gc"
create_guest gd || bad "xl create gd"
# gf's blkfront is our Go frontend: the kernel's is kept out.
create_guest gf module_blacklist=xen_blkfront F_IN_SUM="$(sha256sum < /root/f-in.bin | cut -d' ' -f1)" || bad "xl create gf"
GA=$(guest_id ga); GC=$(guest_id gc); GD=$(guest_id gd); GF=$(guest_id gf)
echo "domains: ga $GA, gc $GC, gd $GD, gf $GF"
check $X attach --xen=linux --domain "$GA" 'format=raw, vdev=xvdb, access=rw, target=/root/a.img'
check $X attach --xen=linux --domain "$GD" 'format=raw, vdev=xvdb, access=rw, target=/root/d.img'
check $X attach --xen=linux --domain "$GF" 'format=raw, vdev=xvdb, access=rw, target=/root/f.img'
xenstore-ls -p "/local/domain/0/backend/xenblk/$GA" > a-backend-nodes.txt 2>&1
xenstore-ls -p "/local/domain/$GA/device/vbd" > a-frontend-nodes.txt 2>&1
start_guest ga; start_guest gc; start_guest gd; start_guest gf

step "a: a domU's Linux blkfront on our backend"
BE=/local/domain/0/backend/xenblk/$GA/51728
FE=/local/domain/$GA/device/vbd/51728
wait_guest ga 900
check test "$(xenstore-read "$BE/state")" = 4
check test "$(xenstore-read "$FE/state")" = 4
sum=$(guest_log ga | sed -n 's/^sum-a: //p')
check test "$sum" = "$(dd if=/root/a.img bs=1M skip=128 count=8 status=none | sha256sum | cut -d' ' -f1)"
# libxl's permissions (xenstore-ls -p): the backend directory owned by
# dom0 and readable by the guest, the frontend directory owned by the
# guest and readable by dom0.
check test "$(xenstore-ls -p "$(dirname "$BE")" | sed -n "s/^51728 = .*(\(.*\))$/\1/p")" = "n0,r$GA"
check test "$(xenstore-ls -p "$(dirname "$FE")" | sed -n "s/^51728 = .*(\(.*\))$/\1/p")" = "n$GA,r0"
echo "a.img allocated after the guest's discard and mkfs: $(allocated_kib /root/a.img) KiB"
check test "$(allocated_kib /root/a.img)" -lt 100000
check $X detach --xen=linux --domain "$GA" xvdb
stop_guest ga

step "f: our frontend in a domU on our backend"
wait_guest gf 900
sum=$(guest_log gf | sed -n 's/^sum-f: //p')
check test "$sum" = "$(dd if=/root/f.img bs=1M skip=16 count=4 status=none | sha256sum | cut -d' ' -f1)"
grep -E "/backend/xenblk/$GF/" serve.log | grep -iE "connected|scsi" | head -5
stop_guest gf

step "d: xl pause / unpause under the guest's I/O"
# chunks GUEST: how many "d: chunk" lines its console has.
chunks() { guest_log "$1" | grep -c '^d: chunk '; }
# progress GUEST N SECONDS: until it has written N more chunks.
progress() { local want=$(( $(chunks "$1") + $2 )); wait_for "$3" sh -c "test \$(tr -d '\r' < $GUEST_LOGS/guest-$1.log | grep -c '^d: chunk ') -ge $want"; }
wait_guest gd 600 '^d: chunk 8$'
check xl pause gd
check sh -c "xl list gd | awk 'NR == 2 {print \$5}' | grep -q p"
n=$(chunks gd)
check xl unpause gd
if progress gd 2 120; then ok "the guest's I/O goes on after unpause ($n, then $(chunks gd) chunk lines)"; else bad "no I/O after unpause"; fi

step "d: xl save and xl restore under the guest's I/O"
check xl save gd /root/gd.save
if wait_for 60 sh -c "! xenstore-read /local/domain/0/backend/xenblk/$GD/51728/state"; then ok "the saved domain's vbd removed"; else bad "the saved domain's vbd is still there"; fi
n=$(chunks gd)
check xl restore -p /root/gd.save
GD2=$(guest_id gd)
echo "gd restored as domain $GD2"
check $X attach --xen=linux --domain "$GD2" 'format=raw, vdev=xvdb, access=rw, target=/root/d.img'
check xl unpause gd
if progress gd 4 300; then ok "the restored guest's I/O goes on ($n, then $(chunks gd) chunk lines)"; else bad "no I/O after the restore"; guest_log gd | tail -20; fi
check test "$(xenstore-read "/local/domain/0/backend/xenblk/$GD2/51728/state")" = 4
rm -f /root/gd.save

step "d: xl migrate to localhost under the guest's I/O"
# No ssh: -s "" runs the receiver's command line as given. The receiver
# keeps the domain paused (-p) for its disk to be attached.
n=$(chunks gd)
if timeout 600 xl migrate -s "" gd "xl migrate-receive -p" > migrate.log 2>&1; then
  ok "xl migrate gd to localhost"
  GD3=$(guest_id gd)
  echo "gd migrated to domain $GD3"
  check $X attach --xen=linux --domain "$GD3" 'format=raw, vdev=xvdb, access=rw, target=/root/d.img'
  check xl unpause gd
  if progress gd 4 300; then ok "the migrated guest's I/O goes on ($n, then $(chunks gd) chunk lines)"; else bad "no I/O after the migration"; fi
elif grep -q "Failed to enable logdirty" migrate.log; then
  # What this lab's Xen cannot do, said as such (not a pass, not a
  # failure of ours): live migration needs log-dirty mode, which Xen
  # here refuses for a PV guest (EOPNOTSUPP, then EINVAL); the sender
  # keeps the guest running, and the checks below go on with it.
  echo "note: xl migrate is not possible in this lab: $(grep -m1 'Failed to enable logdirty' migrate.log)"
  GD3=$(guest_id gd)
else
  bad "xl migrate to localhost failed: $(tail -3 migrate.log | tr '\n' ' ')"
  GD3=$(guest_id gd)
fi
cat migrate.log

step "d: the guest stops and reads every chunk again"
# A node dom0 makes is dom0's: the guest is given it, to read it.
check xenstore-write "/local/domain/$GD3/data/stop" 1
check xenstore-chmod "/local/domain/$GD3/data/stop" "n$GD3"
wait_guest gd 600
stop_guest gd

step "c: xl destroy mid-I/O"
# What serve holds with only dom0's own vbd (idle): file descriptors,
# gntdev mappings; then with gc's vbd busy; then after gc's death.
fds() { ls "/proc/$SERVE/fd" | wc -l; }
maps() { grep -c /dev/xen/gntdev "/proc/$SERVE/maps"; }
# dom0's ports whose other end is (or was, for a port left unbound by
# the domain's death) domain $1: ours, xenstored's, xenconsoled's.
chans() { /usr/lib/xen-*/bin/lsevtchn 0 | grep -cE "Remote Domain $1(,|\$)"; }
if wait_for 60 sh -c 'test "$(xenstore-list /local/domain/0/backend/xenblk)" = 0'; then ok "only dom0's vbd is left"; else bad "vbds left: $(xenstore-list /local/domain/0/backend/xenblk | tr '\n' ' ')"; fi
fds0=$(fds); maps0=$(maps)
echo "serve before gc's disk: $fds0 fds, $maps0 gntdev mappings"
check $X attach --xen=linux --domain "$GC" 'format=raw, vdev=xvdb, access=rw, target=/root/c.img'
wait_guest gc 600 '^c: io running'
if wait_for 60 sh -c "test \"\$(xenstore-read /local/domain/0/backend/xenblk/$GC/51728/state)\" = 4"; then ok "gc's vbd connected"; else bad "gc's vbd did not connect"; fi
echo "serve with gc writing: $(fds) fds, $(maps) gntdev mappings, $(chans "$GC") event channels to gc"
check test "$(chans "$GC")" -gt 0
check test "$(maps)" -gt "$maps0"
check xl destroy gc
if wait_for 60 sh -c "! xenstore-read /local/domain/0/backend/xenblk/$GC/51728/state"; then ok "the dead guest's vbd removed"; else bad "the dead guest's vbd is still there"; fi
if wait_for 60 sh -c "! xl list | grep -q '(null)'"; then ok "no zombie domain: every page of gc's unmapped"; else bad "gc stays a zombie"; xl list; fi
if wait_for 60 sh -c "test \$(ls /proc/$SERVE/fd | wc -l) = $fds0 && test \$(grep -c /dev/xen/gntdev /proc/$SERVE/maps) = $maps0"; then
  ok "serve holds what it held before gc: $fds0 fds, $maps0 gntdev mappings"
else
  bad "serve after gc's death: $(fds) fds (before: $fds0), $(maps) gntdev mappings (before: $maps0)"
fi
if wait_for 60 sh -c "test \$(/usr/lib/xen-*/bin/lsevtchn 0 | grep -cE 'Remote Domain $GC(,|\$)') = 0"; then
  ok "no event channel of dom0's to gc is left"
else
  bad "dom0's event channels to gc: $(/usr/lib/xen-*/bin/lsevtchn 0 | grep -E "Remote Domain $GC(,|\$)" | tr '\n' ';')"
fi
grep -E "domain gone|/backend/xenblk/$GC/" serve.log | tail -5
check grep -qE "domain gone.* domain=$GC " serve.log
# serve goes on serving dom0's vbd.
head -c 16M /dev/urandom > /root/x.bin
check dd if=/root/x.bin of=/dev/xvdd bs=1M oflag=direct status=none
check cmp -n $((16 << 20)) /root/x.bin /root/dom0.img

step "the end: serve stops cleanly"
check $X detach --xen=linux --domain 0 xvdd
stop $SERVE "our backend"
xl list
exit $fail
