# Guests for the domU scenarios (sourced in dom0 after lib.sh, cwd
# /mnt/share): PV domUs booted with the lab's own kernel and an initramfs
# made here from what dom0 has. See xenlab/README.md, "Guests".
#
#   guest_setup                 once per boot: console logs, the base image
#   make_guest [--with PART]... [--mem MIB] NAME SCRIPT [XL-LINE...]
#                               an image and an xl config for guest NAME;
#                               SCRIPT runs in the guest (guest-init says how)
#   create_guest NAME [VAR=VALUE...]  xl create, paused (attach its disks now);
#                               the VAR=VALUEs reach the script's environment
#   start_guest NAME            xl unpause
#   run_guest NAME [VAR=VALUE...]     create_guest + start_guest
#   guest_id NAME               its domain id
#   wait_guest NAME SECONDS [PATTERN]  until the console shows PATTERN
#                               (default: the script's end), then report
#   stop_guest NAME             xl destroy
#
# PARTs: fio (fio and its libraries, about 80 MB: give --mem 512), xenblk
# (the static xenblk of the share, and nbd-client), xentest (the share's
# static xentest.test, whose XENTEST_ROLE runs a guest's program). The base has busybox,
# the Xen frontends and the kernel modules they need (blkfront,
# scsifront, sd, sg, ext4, nbd, gntalloc, gntdev, evtchn, xenfs),
# e2fsprogs, sg3_utils, lsscsi and the xenstore tools.
#
# An image is cpio archives concatenated (the kernel unpacks them in
# turn): the base, the parts, then the script, so a guest costs one small
# archive and no copy of the base.
GUEST_DIR=/root/guest
# On the share (cwd), so that the consoles come back even from a lab run
# that timed out.
GUEST_LOGS=$PWD/guest-consoles
GUEST_KERNEL=$(ls /boot/vmlinuz-* | head -1)
GUEST_KVER=${GUEST_KERNEL#/boot/vmlinuz-}

# guest_setup: xenconsoled logs every guest's console to
# $GUEST_LOGS/guest-NAME.log (restarted with --log=guest), and the base
# image is built (the parts are built when a guest first asks for them).
guest_setup() {
  mkdir -p "$GUEST_DIR" "$GUEST_LOGS"
  local pid
  pid=$(cat /run/xenconsoled.pid 2>/dev/null)
  if [ -n "$pid" ]; then
    kill "$pid"
    wait_for 20 sh -c "! kill -0 $pid" || { echo "guest: xenconsoled $pid did not stop"; return 1; }
  fi
  /usr/lib/xen-*/bin/xenconsoled --log=guest --log-dir="$GUEST_LOGS" --pid-file=/run/xenconsoled.pid \
    </dev/null >/dev/null 2>&1 || { echo "guest: xenconsoled did not start"; return 1; }
  guest_part base
}

# guest_files FILE...: the FILEs and the shared libraries they load (as
# the dynamic loader lists them), with every parent directory before what
# it holds, as paths relative to /. One loader run per dynamic file and
# one awk: under the lab's emulation a process costs a lot.
guest_files() {
  local f
  for f in "$@"; do
    echo "/${f#/}"
    # Not through the loader: modules, the loader itself, static
    # binaries (it would run them).
    case $f in *.ko | */ld-linux* | */busybox) continue ;; esac
    /lib64/ld-linux-x86-64.so.2 --list "$f" 2>/dev/null
  done | awk '
    { p = ($3 ~ /^\//) ? $3 : ($1 ~ /^\//) ? $1 : "" }
    p == "" { next }
    { sub(/^\//, "", p); n = split(p, c, "/"); q = ""
      for (i = 1; i < n; i++) { q = q (i > 1 ? "/" : "") c[i]; if (!seen[q]++) print q }
      if (!seen[p]++) print p }'
}

# guest_cpio: a newc archive of the paths (relative to /) on stdin,
# symbolic links followed (merged /usr: /lib, /sbin and /bin are links).
guest_cpio() { (cd / && cpio -o -H newc -L --quiet); }

# guest_part NAME: $GUEST_DIR/NAME.cpio, one part of an image.
guest_part() {
  local out=$GUEST_DIR/$1.cpio root m
  case $1 in
    base)
      root=$GUEST_DIR/base.root
      rm -rf "$root"; mkdir -p "$root/etc" "$root/dev" "$root/usr/local/bin"
      install -m 0755 ./guest-init "$root/init" || return 1
      mknod "$root/dev/console" c 5 1
      modprobe -a --show-depends -S "$GUEST_KVER" xen-blkfront xen-scsifront sd_mod sg ext4 nbd \
        xen-gntalloc xen-gntdev xen-evtchn xenfs | awk '$1 == "insmod" && !seen[$2]++ {print $2}' > "$root/etc/guest-modules"
      ln -s /usr/sbin/mke2fs "$root/usr/local/bin/mkfs.ext4"
      ln -s /usr/sbin/e2fsck "$root/usr/local/bin/fsck.ext4"
      {
        (cd "$root" && find . | cpio -o -H newc --quiet) || return 1
        { guest_files /bin/busybox /lib64/ld-linux-x86-64.so.2 /usr/sbin/mke2fs /usr/sbin/e2fsck \
            /usr/sbin/blkdiscard /usr/bin/lsscsi /usr/bin/sg_inq /usr/bin/sg_persist /usr/bin/sg_readcap \
            /usr/bin/sg_turs /usr/bin/sg_raw /usr/bin/sg_vpd /usr/bin/sg_luns /usr/bin/xenstore-read \
            /usr/bin/xenstore-write /usr/bin/xenstore-ls /usr/bin/xenstore-list /usr/bin/xenstore-rm \
            /usr/bin/xenstore-chmod /usr/bin/xenstore-exists $(cat "$root/etc/guest-modules")
        } | guest_cpio || return 1
      } > "$out"
      rm -rf "$root"
      ;;
    fio) guest_files /usr/bin/fio | guest_cpio > "$out" || return 1 ;;
    xenblk)
      root=$GUEST_DIR/xenblk.root
      rm -rf "$root"; mkdir -p "$root/usr/local/bin"
      cp ./xenblk "$root/usr/local/bin/" || return 1
      {
        (cd "$root" && find . | cpio -o -H newc --quiet) || return 1
        guest_files /usr/sbin/nbd-client | guest_cpio || return 1
      } > "$out"
      rm -rf "$root"
      ;;
    xentest)
      root=$GUEST_DIR/xentest.root
      rm -rf "$root"; mkdir -p "$root/usr/local/bin"
      cp ./xentest.test "$root/usr/local/bin/" || return 1
      (cd "$root" && find . | cpio -o -H newc --quiet) > "$out" || return 1
      rm -rf "$root"
      ;;
    *) echo "guest: no image part $1"; return 1 ;;
  esac
  echo "guest: image part $1: $(($(stat -c %s "$out") >> 20)) MiB ($(date +%T))"
}

# make_guest [--with PART]... [--mem MIB] NAME SCRIPT [XL-LINE...]
make_guest() {
  local parts="" mem=256
  while :; do
    case ${1:-} in
      --with) parts="$parts $2"; shift 2 ;;
      --mem) mem=$2; shift 2 ;;
      *) break ;;
    esac
  done
  local name=$1 script=$2 p; shift 2
  for p in $parts; do
    [ -f "$GUEST_DIR/$p.cpio" ] || guest_part "$p" || return 1
  done
  local root=$GUEST_DIR/$name.root
  rm -rf "$root"; mkdir -p "$root"
  cp "$script" "$root/guest.sh" || return 1
  (cd "$root" && find . | cpio -o -H newc --quiet) > "$GUEST_DIR/$name.script.cpio" || return 1
  rm -rf "$root"
  {
    cat "$GUEST_DIR/base.cpio"
    for p in $parts; do cat "$GUEST_DIR/$p.cpio" || return 1; done
    cat "$GUEST_DIR/$name.script.cpio"
  } > "$GUEST_DIR/$name.img" || return 1
  {
    echo "name = \"$name\""
    echo "type = \"pv\""
    echo "kernel = \"$GUEST_KERNEL\""
    echo "ramdisk = \"$GUEST_DIR/$name.img\""
    echo "extra = \"console=hvc0 quiet loglevel=3\""
    echo "memory = $mem"
    echo "vcpus = 1"
    echo "on_poweroff = \"destroy\""
    echo "on_reboot = \"destroy\""
    echo "on_crash = \"preserve\""
    for p in "$@"; do echo "$p"; done
  } > "$GUEST_DIR/$name.cfg"
  rm -f "$GUEST_DIR/$name.reported"
}

# create_guest NAME [VAR=VALUE...]: the domain, paused.
create_guest() {
  local name=$1; shift
  : > "$GUEST_DIR/$name.reported"
  xl create -p "$GUEST_DIR/$name.cfg" "extra=\"console=hvc0 quiet loglevel=3 $*\""
}
start_guest() { xl unpause "$1"; }
run_guest() { create_guest "$@" && start_guest "$1"; }
guest_id() { xl domid "$1"; }
stop_guest() { xl destroy "$1"; }

# guest_log NAME: the console log, without the carriage returns of hvc.
guest_log() { tr -d '\r' < "$GUEST_LOGS/guest-$1.log" 2>/dev/null; }

# guest_report NAME: the ok:/FAIL: lines the guest printed since the last
# report, as "ok: [NAME] ..." (a FAIL fails the scenario).
guest_report() {
  local name=$1 seen new line
  seen=$(cat "$GUEST_DIR/$name.reported" 2>/dev/null); seen=${seen:-0}
  new=$(guest_log "$name" | grep -E '^(ok|FAIL): ')
  echo "$new" | grep -c . > "$GUEST_DIR/$name.reported"
  echo "$new" | tail -n +$((seen + 1)) | while IFS= read -r line; do
    case $line in
      ok:*) echo "ok: [$name]${line#ok:}" ;;
      FAIL:*) echo "FAIL: [$name]${line#FAIL:}" ;;
    esac
  done
  echo "$new" | tail -n +$((seen + 1)) | grep -q '^FAIL:' && fail=1
  return 0
}

# wait_guest NAME SECONDS [PATTERN]: wait for PATTERN (an ERE; default the
# script's end) on the guest's console, then report. Fails (and shows the
# console's tail) if it does not come in time, or if the script ended
# with a non-zero status.
wait_guest() {
  local name=$1 t=$2 pat=${3:-^guest: done rc=}
  if wait_for "$t" sh -c "tr -d '\r' < '$GUEST_LOGS/guest-$name.log' | grep -qE '$pat'"; then
    guest_report "$name"
    if [ $# -lt 3 ] && ! guest_log "$name" | grep -q '^guest: done rc=0'; then
      bad "guest $name's script ended: $(guest_log "$name" | grep '^guest: done')"
    fi
    return 0
  fi
  guest_report "$name"
  bad "guest $name: no '$pat' on its console in $t s; its last lines:"
  guest_log "$name" | tail -30
  return 1
}
