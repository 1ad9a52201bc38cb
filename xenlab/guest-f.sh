# Scenario f, in the guest (booted with xen_blkfront blacklisted): our Go
# frontend, xenblk front --xen=linux, on the guest's own gntalloc, evtchn
# and xenbus, against xenblk serve in dom0; the disk through nbd-client.
# Environment: F_IN_SUM, the sha256 of the 4 MiB dom0 wrote at 8 MiB.
step "our frontend in the guest"
check test -c /dev/xen/gntalloc
check test -c /dev/xen/evtchn
check test -c /dev/xen/xenbus
xenblk front --xen=linux --vdev xvdb --nbd 127.0.0.1:10809 --control /tmp/f.sock --verbose > /tmp/front.log 2>&1 &
FRONT=$!
# front waits up to its --wait (5 min) for the backend; this waits longer.
if wait_for 360 test -S /tmp/f.sock; then ok "our frontend connected"; else bad "our frontend did not connect"; cat /tmp/front.log; exit 1; fi
cat /tmp/front.log
check grep -q "scsi true" /tmp/front.log
if nbd-client 127.0.0.1 10809 /dev/nbd0 -N xvdb -b 512 >/dev/null 2>&1 || nbd-client -N xvdb 127.0.0.1 10809 /dev/nbd0 >/dev/null 2>&1; then
  ok "nbd-client attached /dev/nbd0"
else
  bad "nbd-client could not attach /dev/nbd0"; exit 1
fi

step "data both ways over cross-domain grants"
got=$(dd if=/dev/nbd0 bs=1M skip=8 count=4 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
check test "$got" = "$F_IN_SUM"
dd if=/dev/urandom of=/tmp/out.bin bs=1M count=4 2>/dev/null
check dd if=/tmp/out.bin of=/dev/nbd0 bs=1M seek=16 oflag=direct conv=fsync
echo "sum-f: $(sha256sum /tmp/out.bin | cut -d' ' -f1)"
got=$(dd if=/dev/nbd0 bs=1M skip=16 count=4 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
check test "$got" = "$(sha256sum /tmp/out.bin | cut -d' ' -f1)"
nbd-client -d /dev/nbd0 >/dev/null 2>&1

step "the SCSI extension over cross-domain grants"
S="xenblk scsi --control /tmp/f.sock"
# The first command of a new I_T nexus reports the power-on unit
# attention; TEST UNIT READY takes it, as initiators do.
$S tur >/dev/null 2>&1 || echo "tur reported the unit attention (expected once)"
check $S tur
$S inquiry | tee /tmp/inquiry.txt
check grep -qi xenblk /tmp/inquiry.txt
check $S persist --out --register --param-sark 0x5678
check $S persist --out --reserve --param-rk 0x5678 --prout-type 1
$S persist --in --read-reservation | tee /tmp/read-reservation.txt
check grep -qi 0x5678 /tmp/read-reservation.txt
xenblk pr --control /tmp/f.sock read-keys | tee /tmp/pr-read-keys.txt
check grep -qi 5678 /tmp/pr-read-keys.txt
check $S persist --out --release --param-rk 0x5678 --prout-type 1
check $S persist --out --register --param-rk 0x5678 --param-sark 0
kill $FRONT
wait $FRONT
echo "front exited $?"
