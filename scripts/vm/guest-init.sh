#!/bin/sh
# /init of the VM lab guest. /bin/sh is bash there (see build-initramfs.sh), other tools are
# BusyBox applets unless the real program was copied in. Sets the machine up, runs /lab/run with /out as its
# working directory, then writes /out as a tar onto the output disk and powers off. It must reach
# the poweroff in every case, so it does not use `set -e`; whatever fails is reported and
# /lab/run's exit code (or 124 on timeout, 127 when missing) goes to /out/rc.
#
# Kernel command-line words of the form NAME=value that the kernel does not know are passed here
# as environment variables, and /lab/run inherits them (run.sh --env NAME=value). Read here:
#   LAB_TIMEOUT  seconds /lab/run may take before it is killed (default 1200)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/lab
export HOME=/root OUT=/out
LAB_TIMEOUT=${LAB_TIMEOUT:-1200}
export LAB_TIMEOUT

mount -t devtmpfs devtmpfs /dev 2>/dev/null
# The kernel may not have found /dev/console before devtmpfs was up.
exec </dev/console >/dev/console 2>&1
say() { echo "ctprobe-vm: $*"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing || say "warning: tracefs mount failed"
mount -t debugfs debugfs /sys/kernel/debug || say "warning: debugfs mount failed"
mount -t bpf bpffs /sys/fs/bpf || say "warning: bpffs mount failed"
mount -t cgroup2 cgroup2 /sys/fs/cgroup || say "warning: cgroup2 mount failed"
mkdir -p /run/netns /out
# iproute2 6.1 keeps netns names under /var/run/netns; make /var/run and /run one place.
[ -e /var/run ] || ln -s /run /var/run
hostname ctprobe-vm
ip link set lo up

# Modules chosen by build-initramfs.sh (built-in ones are not in the list).
failed=
if [ -f /etc/lab/modules ]; then
  while read -r m; do
    modprobe "$m" 2>/dev/null || failed="$failed $m"
  done </etc/lab/modules
fi
[ -z "$failed" ] || say "warning: modprobe failed:$failed"

kprobe_pmu=no
[ -d /sys/bus/event_source/devices/kprobe ] && kprobe_pmu=yes
read -r up _ </proc/uptime
say "kernel $(uname -r), $(nproc) cpus, kprobe pmu: $kprobe_pmu, booted in ${up}s, timeout ${LAB_TIMEOUT}s"

# Is pid $1 running (not gone, not a zombie)?
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

rc=127
if [ ! -x /lab/run ]; then
  say "error: /lab/run is missing or not executable"
else
  # Output goes to the console as it happens and to /out/console.log. tee reads a fifo so that
  # it is a child of ours that can be waited for.
  mkfifo /run/lab.fifo
  tee /out/console.log </run/lab.fifo &
  teepid=$!
  cd /out || say "warning: cannot cd to /out"
  # setsid: /lab/run leads its own process group, so a timeout kills its children too.
  setsid /lab/run </dev/null >/run/lab.fifo 2>&1 &
  labpid=$!
  (sleep "$LAB_TIMEOUT"; : >/run/lab.timedout; kill -KILL -"$labpid" 2>/dev/null; kill -KILL "$labpid" 2>/dev/null) &
  wait "$labpid"
  rc=$?
  cd /
  if [ -e /run/lab.timedout ]; then
    rc=124
    say "error: /lab/run timed out after ${LAB_TIMEOUT}s and was killed"
  fi
  # Whatever it left running (background jobs, daemons that left its group) is killed, so
  # nothing writes to /out while it is packed and tee sees the end of the fifo.
  # Kernel threads have no /proc/PID/exe.
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = 1 ] || [ "$p" = "$teepid" ] || [ ! -e "/proc/$p/exe" ] || kill -KILL "$p" 2>/dev/null
  done
  i=0
  while alive "$teepid" && [ "$i" -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
  kill "$teepid" 2>/dev/null
  wait "$teepid" 2>/dev/null
fi
echo "$rc" >/out/rc
dmesg >/out/dmesg.txt 2>/dev/null
read -r up _ </proc/uptime
say "/lab/run exited with rc=$rc at ${up}s"

# The output disk is the virtio disk with serial "ctprobe-out" (run.sh sets it); else the last one.
outdev=
for s in /sys/block/vd*/serial; do
  [ -f "$s" ] || continue
  d=${s%/serial}
  [ "$(cat "$s")" = ctprobe-out ] && outdev=/dev/${d##*/}
done
[ -n "$outdev" ] || for d in /sys/block/vd*; do [ -d "$d" ] && outdev=/dev/${d##*/}; done
if [ -z "$outdev" ] || [ ! -b "$outdev" ]; then
  say "error: no output disk (virtio_blk not loaded?); results are lost"
else
  need_kb=$(du -sk /out | cut -f1)
  have_kb=$(($(cat "/sys/block/${outdev#/dev/}/size") / 2))
  if [ $((need_kb + need_kb / 8 + 64)) -gt "$have_kb" ]; then
    say "error: /out holds ${need_kb} KiB, the output disk ${have_kb} KiB: rerun with run.sh --disk-size MiB"
  elif tar -cf "$outdev" -C /out .; then
    sync
    blockdev --flushbufs "$outdev" 2>/dev/null
  else
    say "error: writing /out to $outdev failed"
  fi
fi
poweroff -f
# Not reached unless ACPI poweroff failed; with qemu -no-reboot a reboot ends the VM too.
reboot -f
