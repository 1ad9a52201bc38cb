# Scenario c, in the guest: writes to /dev/xvdb without end, until dom0
# destroys the domain (xl destroy mid-I/O).
step "blkfront found the disk"
# dom0 attaches it last, once a, d and f are done: wait long.
if wait_for 1800 test -b /dev/xvdb; then ok "/dev/xvdb appeared"; else bad "/dev/xvdb never appeared"; exit 1; fi
dd if=/dev/urandom of=/tmp/c.bin bs=1M count=4 2>/dev/null
echo "c: io running"
while :; do
  dd if=/tmp/c.bin of=/dev/xvdb bs=1M seek=$(( $(date +%s) % 60 )) oflag=direct 2>/dev/null
done
