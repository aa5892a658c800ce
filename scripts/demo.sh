#!/usr/bin/env bash
# make demo: boot a stock Debian kernel under QEMU, provoke the Kubernetes
# DNS race (endpoints-2) under `ctprobe trace`, stream ctprobe's live output
# here, and leave the capture file on the host.
#   scripts/demo.sh [cloud|rt]     (bin/ctprobe and bin/ctlab must be built: make demo does it)
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-cloud}
[ -x bin/ctprobe ] && [ -x bin/ctlab ] || { echo "demo.sh: bin/ctprobe or bin/ctlab missing: run make demo" >&2; exit 1; }
kdir=$(scripts/vm/fetch-kernel.sh "$flavour" | tail -n 1)
initrd=.cache/vm/demo-$flavour.cpio.gz
scripts/vm/build-initramfs.sh --kernel-dir "$kdir" --out "$initrd" \
  --add bin/ctprobe:/bin/ctprobe --add bin/ctlab:/bin/ctlab --run scripts/demo-guest.sh >&2
out=out/demo
rc=0
scripts/vm/run.sh --kernel-dir "$kdir" --initrd "$initrd" --out "$out" --timeout 900 || rc=$?
if [ -f "$out/demo.ctp" ]; then
  echo
  echo "capture file: $out/demo.ctp  (read it anywhere: bin/ctprobe report -r $out/demo.ctp)"
fi
exit "$rc"
