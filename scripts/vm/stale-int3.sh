#!/usr/bin/env bash
# Whether a guest's console shows a trap on an int3 that is no longer in the guest's code: exit 0
# if so, 1 if not (no int3 oops, or the int3 is still there).
#
#   scripts/vm/stale-int3.sh SERIAL_LOG
#
# An int3 oops prints the code around the trap's return address, that address's byte in <>; the
# int3 was the byte before it. x86's text_poke_bp puts an int3 over an instruction while it
# rewrites it, and takes it away only after every CPU has synced, so a CPU that runs the code in
# memory cannot trap on it afterwards. A vCPU under TCG can, on a translation made before the
# patch: seen on Debian's 7.2 at run time (__schedule's static branch, nop5 back in place under the
# trap), and at boot (run.sh's boot retry).
set -euo pipefail
log=${1:?usage: stale-int3.sh SERIAL_LOG}
# "Oops: int3: 0000 [#1]" in newer kernels, "int3: 0000 [#1]" in older ones.
code=$(sed -nE '/int3: [0-9a-f]{4} \[#/,$p' "$log" | grep -m1 'Code: ') || exit 1
byte=$(grep -oE '[0-9a-f]{2} <[0-9a-f]{2}>' <<<"$code" | head -n1 | cut -c1-2) || exit 1
[ -n "$byte" ] && [ "$byte" != cc ]
