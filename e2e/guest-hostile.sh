#!/bin/bash
# Runs inside the VM (e2e/hostile_test.go): ctprobe traces races provoked by
# client threads that named themselves with escape sequences (retitle the
# terminal, clear the screen), as any unprivileged process may, and runs with
# the capabilities it keeps after attaching.
# The "local" scenario sends from the node netns, where the races happen, so
# that even the default mode names the sender of each incident.
# Results go to /out: hostile.{trace.txt,trace.err,trace.rc,trace.jsonl,
# trace.jsonl.err,trace.jsonl.rc,ctp,report.txt,report.rc,lab.json,lab.err,
# lab.rc,caps,unpriv_bpf_disabled,release}.
set -u
cd /out
uname -r >hostile.release
cat /proc/sys/kernel/unprivileged_bpf_disabled >hostile.unpriv_bpf_disabled
name=$'\e]0;pwned\a\e[2J'
ctprobe trace --no-color >hostile.trace.txt 2>hostile.trace.err &
tt=$!
ctprobe trace -o json -w hostile.ctp >hostile.trace.jsonl 2>hostile.trace.jsonl.err &
tj=$!
for _ in $(seq 150); do
  grep -q 'attach plan' hostile.trace.txt 2>/dev/null && grep -q '"kind":"plan"' hostile.trace.jsonl 2>/dev/null && break
  kill -0 "$tt" 2>/dev/null && kill -0 "$tj" 2>/dev/null || break
  sleep 0.2
done
# --keep: the lab's namespaces stay until the tracers have read their
# counters at the end.
ctlab run --scenario local --lookups 60 --min-clashes 5 --max-lookups 600 --comm "$name" --keep -o json >hostile.lab.json 2>hostile.lab.err
echo $? >hostile.lab.rc
# What every thread of a tracer holds, well after its probes attached.
for s in /proc/"$tt"/task/*/status; do
  grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' "$s" | tr '\n' ' '
  echo
done >hostile.caps
kill -INT "$tt" "$tj"
wait "$tt"
echo $? >hostile.trace.rc
wait "$tj"
echo $? >hostile.trace.jsonl.rc
ctlab cleanup --all >/dev/null 2>&1
ctprobe report -r hostile.ctp --no-color >hostile.report.txt 2>&1
echo $? >hostile.report.rc
exit 0
