#!/usr/bin/env bash
# Boot the VM lab under QEMU (software emulation; x86-64 or arm64, as the kernel is) and collect
# what the guest wrote to /out.
#
#   scripts/vm/run.sh --kernel-dir D --initrd F --out DIR [--timeout SECONDS] [--append "words"]
#                     [--env NAME=VALUE ...] [--disk-size MiB] [--smp N] [--mem MiB]
#
# The serial console streams to stdout and is saved in DIR/serial.log. The guest packs /out as a
# tar onto a raw virtio disk (serial "ctprobe-out"); afterwards it is unpacked into DIR, so DIR
# holds /lab/run's files plus console.log, dmesg.txt and rc. The exit code is the guest's rc
# (124 when /lab/run timed out in the guest); when the guest wrote none (boot failure, panic, host
# timeout) a one-line reason is printed and the exit code is 124 for a host timeout, else 125.
#
# --timeout    host-side limit for the whole VM (default 1500 s). The guest's own limit for
#              /lab/run, LAB_TIMEOUT, defaults to 4/5 of it; --env LAB_TIMEOUT=N overrides.
# --env        NAME=VALUE for /lab/run's environment, passed on the kernel command line (the kernel
#              hands unknown NAME=VALUE words to /init). At most ~30; no double quotes in values.
# --disk-size  size of the output disk (sparse; default 256 MiB): the most /out may hold.
# DIR must be empty, missing, or an earlier run.sh output (it is emptied first).
# Runs without a TTY: stdin is never read (Ctrl-C stops the VM).
set -euo pipefail

die() { echo "run.sh: $*" >&2; exit 125; }
repo=$(cd "$(dirname "$0")/../.." && pwd)

kdir='' initrd='' dir='' timeout=1500 append='' disk_mib=256 smp=2 mem=2048
envs=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --kernel-dir) kdir=${2:?}; shift 2 ;;
    --initrd) initrd=${2:?}; shift 2 ;;
    --out) dir=${2:?}; shift 2 ;;
    --timeout) timeout=${2:?}; shift 2 ;;
    --append) append=${2?}; shift 2 ;;
    --env) envs+=("${2:?}"); shift 2 ;;
    --disk-size) disk_mib=${2:?}; shift 2 ;;
    --smp) smp=${2:?}; shift 2 ;;
    --mem) mem=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ -n "$kdir" ] && [ -n "$initrd" ] && [ -n "$dir" ] || die "--kernel-dir, --initrd and --out are required (see --help)"
[ -s "$kdir/kver" ] || die "$kdir/kver missing: pass the directory printed by scripts/vm/fetch-kernel.sh"
kver=$(cat "$kdir/kver")
kernel=$kdir/vmlinuz-$kver
[ -f "$kernel" ] || die "$kernel missing: rerun scripts/vm/fetch-kernel.sh"
[ -f "$initrd" ] || die "initrd $initrd not found: build it with scripts/vm/build-initramfs.sh"
for n in "$timeout" "$disk_mib" "$smp" "$mem"; do
  case "$n" in ''|*[!0-9]*) die "'$n' is not a whole number" ;; esac
done

# The emulator and machine of the kernel's architecture (fetch-kernel.sh writes it to D/arch).
# arm64: QEMU's generic "virt" board with a Neoverse N1 (the core of AWS Graviton2 and Ampere
# Altra); QEMU's "max" CPU would also emulate pointer authentication, which the kernel uses in
# every function and TCG emulates slowly.
[ -s "$kdir/arch" ] || die "$kdir/arch missing: rerun scripts/vm/fetch-kernel.sh"
case "$(cat "$kdir/arch")" in
  amd64) qemu=qemu-system-x86_64 machine=(-cpu max) console=ttyS0
         "$repo/scripts/deps.sh" qemu-system-x86 ;;
  arm64) qemu=qemu-system-aarch64 machine=(-M virt -cpu neoverse-n1) console=ttyAMA0
         "$repo/scripts/deps.sh" qemu-system-arm ;;
  *) die "$kdir/arch: unknown architecture '$(cat "$kdir/arch")'" ;;
esac

# Guest environment on the kernel command line.
cmd_env=
has_lab_timeout=
for e in "${envs[@]}"; do
  name=${e%%=*} val=${e#*=}
  [[ "$e" == *=* && "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--env $e: expected NAME=VALUE"
  [[ "$val" != *'"'* ]] || die "--env $e: double quotes cannot be passed on the kernel command line"
  [ "$name" != LAB_TIMEOUT ] || has_lab_timeout=1
  cmd_env+=" $name=\"$val\""
done
[[ "$append" != *LAB_TIMEOUT=* ]] || has_lab_timeout=1
# The guest must give up before the host does, so that rc and the partial results still come back.
[ -n "$has_lab_timeout" ] || cmd_env+=" LAB_TIMEOUT=$((timeout * 4 / 5))"

# Refuse to empty a directory that is not ours.
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ -n "$(ls -A "$dir")" ] && [ ! -e "$dir/serial.log" ]; then
  die "$dir is not empty and not an earlier run.sh output: pass a new or empty directory"
fi
find "$dir" -mindepth 1 -delete
img=$dir/.out.img
# Sparse and zero-filled: an all-zero first block later means "the guest wrote nothing".
truncate -s "${disk_mib}M" "$img"

# -nodefaults: no NIC/VGA/floppy to probe. stdin is /dev/null and the monitor is off, so this
# works without a TTY; the chardev logfile keeps a copy of the console.
# timeout --foreground keeps QEMU in the terminal's process group so Ctrl-C reaches it.
boot() {
  timeout --foreground -k 10 "$timeout" "$qemu" \
    -nodefaults -no-user-config -display none -monitor none -no-reboot \
    -accel tcg,thread=multi "${machine[@]}" -smp "$smp" -m "$mem" \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=$console quiet panic=-1 $append$cmd_env" \
    -chardev "stdio,id=con0,logfile=$dir/serial.log" -serial chardev:con0 \
    -drive "file=$img,format=raw,if=none,id=out0,cache=unsafe" \
    -device virtio-blk-pci,drive=out0,serial=ctprobe-out \
    -device virtio-rng-pci \
    </dev/null
}
# A kernel that panics before /init says hello ran nothing of ours: under TCG the kernel's own
# boot-time code patching can trip the emulator (seen: an int3 oops in sched_clock_cpu during the
# initcalls). Such a boot is retried, at most twice, and its console kept as serial.boot-N.log.
# Later, a panic is the run's result, except one proven to be the emulator's: a trap on an int3
# that is no longer in the code (stale-int3.sh). That run is run again, once, its console kept as
# serial.stale-int3.log.
start=$(date +%s)
boot_retries=0 reruns=0
set +e
while :; do
  boot
  qrc=$?
  grep -q 'Kernel panic' "$dir/serial.log" 2>/dev/null || break
  if ! grep -q 'ctprobe-vm: kernel ' "$dir/serial.log" && [ "$boot_retries" -lt 2 ]; then
    boot_retries=$((boot_retries + 1))
    mv "$dir/serial.log" "$dir/serial.boot-$boot_retries.log"
    echo "run.sh: the guest kernel panicked while booting, before /init ran (see $dir/serial.boot-$boot_retries.log); booting again" >&2
  elif [ "$reruns" -lt 1 ] && "$repo/scripts/vm/stale-int3.sh" "$dir/serial.log"; then
    reruns=1
    mv "$dir/serial.log" "$dir/serial.stale-int3.log"
    echo "run.sh: the guest trapped on an int3 that is no longer in its code, the emulator running code from before a patch (see $dir/serial.stale-int3.log); running it again" >&2
  else
    break
  fi
  truncate -s 0 "$img" && truncate -s "${disk_mib}M" "$img"
done
set -e
wall=$(($(date +%s) - start))
[ ! -f "$dir/serial.log" ] || sed -i 's/\r$//' "$dir/serial.log"

# Unpack the guest's tar. GNU tar stops at the archive's end marker, so the rest of the disk
# is never read.
if [ -z "$(head -c 512 "$img" | tr -d '\0')" ]; then
  rm -f "$img" # the guest wrote nothing
elif tar -xf "$img" -C "$dir" --warning=no-timestamp; then
  rm -f "$img"
else
  echo "run.sh: the output disk holds a damaged tar (kept as $img)" >&2
fi

if [ -f "$dir/rc" ] && grep -qxE '[0-9]+' "$dir/rc"; then
  rc=$(cat "$dir/rc")
  echo "run.sh: guest rc=$rc, VM wall time ${wall}s, results in $dir" >&2
  exit "$rc"
fi
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
  echo "run.sh: VM killed after the host timeout of ${timeout}s without results; see $dir/serial.log" >&2
  exit 124
elif grep -q 'Kernel panic' "$dir/serial.log" 2>/dev/null; then
  echo "run.sh: guest kernel panicked ($(grep -m1 'Kernel panic' "$dir/serial.log" | cut -c1-120)); see $dir/serial.log" >&2
elif [ "$qrc" -ne 0 ]; then
  echo "run.sh: $qemu failed with exit code $qrc (message above); no results" >&2
elif why=$(grep -a 'ctprobe-vm: error:' "$dir/serial.log" 2>/dev/null | tail -n 1) && [ -n "$why" ]; then
  echo "run.sh: the guest wrote no results: ${why#*ctprobe-vm: error: }" >&2
else
  echo "run.sh: the guest stopped without writing results (boot failure or /init died); see $dir/serial.log" >&2
fi
exit 125
