#!/bin/bash
# Runs inside a one-vCPU VM (e2e/detach_test.go): tracers stop while new
# flows pass every probe point, so that an exit program that outlived its
# entry program would run for calls whose entry it never saw (issue 14:
# closed entry first, each such call counted a no-entry loss). One vCPU:
# under TCG, patching code that another vCPU runs at that moment can crash
# the guest (seen: a flood's softirq in nf_nat_setup_info+0x0 while a
# tracer detached), and here no other vCPU runs anything.
# Results go to /out: detach.MODE.{trace.jsonl,trace.err,trace.rc,ctp},
# detach.flood-started, detach.flood-alive.
set -u
cd /out
modes=(tl-auto tl-kprobe all-auto all-kprobe)
declare -A pid
for m in "${modes[@]}"; do
  flags=(--timeline)
  [[ $m = all-* ]] && flags=(--all)
  ctprobe trace "${flags[@]}" --attach "${m#*-}" -o json -w "detach.$m.ctp" >"detach.$m.trace.jsonl" 2>"detach.$m.trace.err" &
  pid[$m]=$!
done
for m in "${modes[@]}"; do
  for _ in $(seq 300); do
    grep -q '"kind":"plan"' "detach.$m.trace.jsonl" 2>/dev/null && break
    kill -0 "${pid[$m]}" 2>/dev/null || break
    sleep 0.2
  done
done
# -v says when the flood starts sending.
ctlab flood --scenario endpoints-2 --duration 120s -v -o json >detach.flood.json 2>detach.flood.err &
flood=$!
for _ in $(seq 600); do
  grep -q 'thread(s) sending' detach.flood.err 2>/dev/null && break
  kill -0 "$flood" 2>/dev/null || break
  sleep 0.1
done
grep -q 'thread(s) sending' detach.flood.err && echo yes >detach.flood-started
# Stop the tracers once both --all tracers have printed a new flow: the
# flood's flows reach the probes, and go on while they detach.
for _ in $(seq 600); do
  grep -q '"kind":"event"' detach.all-auto.trace.jsonl && grep -q '"kind":"event"' detach.all-kprobe.trace.jsonl && break
  sleep 0.1
done
echo "=== detach: stopping ${modes[*]} during ctlab flood"
kill -INT "${pid[@]}"
for m in "${modes[@]}"; do
  wait "${pid[$m]}"
  echo $? >"detach.$m.trace.rc"
done
# The flood must still run once every tracer has exited: then new flows
# passed every probe point throughout the detaching.
if kill -0 "$flood" 2>/dev/null; then echo yes; else echo no; fi >detach.flood-alive
kill -INT "$flood"
wait "$flood"
grep -h '"kind":"lost"' detach.*.trace.jsonl | head -n 5
exit 0
