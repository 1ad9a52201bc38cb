# Scenario d, in the guest: numbered 1 MiB chunks written and read back
# one after another, while dom0 pauses, saves and restores the domain.
# Chunk k is its number on 16 bytes, then the first 1 MiB - 16 bytes of
# /tmp/seed; each is compared as soon as written. The loop prints
# "d: chunk K" every 4 chunks, and stops when dom0 writes data/stop in
# the domain's own directory; then every chunk is read again.
step "blkfront found the disk"
if wait_for 300 test -b /dev/xvdb; then ok "/dev/xvdb appeared"; else bad "/dev/xvdb never appeared"; exit 1; fi
dd if=/dev/urandom of=/tmp/seed bs=1M count=1 2>/dev/null
chunk() { printf 'chunk-%09d\n' "$1"; head -c $((1048576 - 16)) /tmp/seed; }
chunks=$(( $(cat /sys/block/xvdb/size) / 2048 ))
k=0
errs=0
echo "d: io running"
while ! xenstore-read data/stop >/dev/null 2>&1; do
  n=$((k % chunks))
  chunk $k | dd of=/dev/xvdb bs=1M seek=$n count=1 iflag=fullblock oflag=direct 2>/dev/null
  dd if=/dev/xvdb of=/tmp/got bs=1M skip=$n count=1 iflag=direct 2>/dev/null
  if ! chunk $k | cmp -s - /tmp/got; then errs=$((errs + 1)); echo "d: chunk $k at $n read back wrong"; fi
  k=$((k + 1))
  [ $((k % 4)) = 0 ] && echo "d: chunk $k"
done
echo "d: stopped after $k chunks"
check test "$errs" = 0
step "every chunk written, read again"
last=$k
[ "$last" -gt "$chunks" ] && first=$((last - chunks)) || first=0
bad_chunks=0
k=$first
while [ $k -lt $last ]; do
  n=$((k % chunks))
  dd if=/dev/xvdb of=/tmp/got bs=1M skip=$n count=1 iflag=direct 2>/dev/null
  chunk $k | cmp -s - /tmp/got || { bad_chunks=$((bad_chunks + 1)); echo "chunk $k at $n wrong"; }
  k=$((k + 1))
done
echo "chunks $first..$((last - 1)) verified, $bad_chunks wrong"
check test "$bad_chunks" = 0
check test "$last" -ge 8
