# Scenario e, in each of two guests sharing one disk through PVSCSI (our
# serve in dom0): ROLE=a fences, ROLE=b is fenced. Sourced by guest-init.
# dom0 moves both through phases by writing data/phase in each guest's
# own xenstore directory; each guest prints a marker line when it is done
# with a phase ("guest ROLE: PHASE"), which dom0 waits for.
KA=0xa1
# try COMMAND...: check for this script's own functions (check runs its
# command under timeout, which cannot run a shell function).
try() { if "$@"; then ok "$*"; else bad "$* (status $?)"; fi; }
phase() { xenstore-read data/phase 2>/dev/null; }
at_phase() { [ "$(phase)" = "$1" ]; }
# lun CLASS: the node scsifront made for LUN 0 (block or scsi_generic).
lun() {
  for d in /sys/bus/xen/devices/vscsi-*/host*/target*/*:*:*:0/$1/*; do
    [ -e "$d" ] && { echo "/dev/${d##*/}"; return 0; }
  done
  return 1
}
# write_one: one WRITE(10) of block 0 through SCSI generic, sg_raw's report.
write_one() { head -c 512 /dev/zero > /tmp/zero.blk; sg_raw -s 512 -i /tmp/zero.blk "$SG" 2a 00 00 00 00 00 00 00 01 00 2>&1; }
conflict() { write_one | grep -qi "reservation conflict"; }
read_one() { sg_raw -r 512 "$SG" 28 00 00 00 00 00 00 00 01 00 >/dev/null 2>&1; }
# pr NAME ARGS...: one sg_persist, its output printed (dom0 keeps the log).
pr() { local name=$1; shift; echo "sg_persist $*" ; sg_persist -n "$@" "$SG" > /tmp/pr-$name.txt 2>&1; local r=$?; cat /tmp/pr-$name.txt; return $r; }
# wait_dev: scsifront shows the LUN (its probe can take seconds) and a
# TEST UNIT READY takes the unit attention a new nexus (or a restarted
# backend) reports first.
wait_dev() {
  wait_for 300 sh -c 'ls /sys/bus/xen/devices/vscsi-*/host*/target*/*:*:*:0/scsi_generic/* >/dev/null 2>&1' || return 1
  wait_for 60 lun scsi_generic >/dev/null || return 1
  SG=$(lun scsi_generic); SD=$(lun block)
  wait_for 30 test -c "$SG"
  sg_turs "$SG" >/dev/null 2>&1
  return 0
}

step "guest $ROLE: the shared disk through xen-scsifront"
if wait_dev; then ok "LUN 0 is $SG ($SD)"; else bad "no LUN 0"; return; fi
check sg_inq "$SG"
case $ROLE in
a)
  try pr register -o -I -Z -S $KA
  try pr reserve -o -R -K $KA -T 5
  try pr read-reservation -i -r
  check grep -qi "Write Exclusive, registrants only" /tmp/pr-read-reservation.txt
  try write_one
  echo "guest a: reserved"
  wait_for 1200 at_phase restarted || bad "no restart phase"
  wait_dev
  sg_turs "$SG" >/dev/null 2>&1
  try pr read-keys-restarted -i -k
  check grep -q "$KA" /tmp/pr-read-keys-restarted.txt
  try pr read-reservation-restarted -i -r
  check grep -qi "Write Exclusive, registrants only" /tmp/pr-read-reservation-restarted.txt
  try write_one
  echo "guest a: still reserved"
  wait_for 1200 at_phase release || bad "no release phase"
  try pr release -o -L -K $KA -T 5
  try pr clear -o -C -K $KA
  try pr read-keys-cleared -i -k
  check grep -qi "no registered" /tmp/pr-read-keys-cleared.txt
  echo "guest a: released"
  ;;
b)
  wait_for 1200 at_phase fenced || bad "no fenced phase"
  sg_turs "$SG" >/dev/null 2>&1
  try conflict
  try read_one
  if dd if=/dev/zero of="$SD" bs=4k count=1 oflag=direct 2>/tmp/dd.txt; then
    bad "a write through $SD succeeded while fenced"
  else
    ok "a write through $SD failed while fenced: $(cat /tmp/dd.txt)"
  fi
  echo "guest b: fenced"
  wait_for 1200 at_phase restarted || bad "no restart phase"
  wait_dev
  sg_turs "$SG" >/dev/null 2>&1
  try conflict
  try read_one
  echo "guest b: still fenced"
  wait_for 1200 at_phase released || bad "no released phase"
  sg_turs "$SG" >/dev/null 2>&1
  try write_one
  check dd if=/dev/zero of="$SD" bs=4k count=1 oflag=direct
  echo "guest b: free"
  ;;
esac
