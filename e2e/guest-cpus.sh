#!/bin/bash
# Runs inside a four-vCPU VM (e2e/cpus_test.go): --timeline with its
# history map shrunk to HISTORY slots, while a flood from every vCPU
# creates new flows and ctlab provokes races. The histories of racing flows
# must still be there when they clash.
# Results go to /out: cpus.{trace.jsonl,trace.err,trace.rc,ctp}, cpus.lab.*,
# cpus.flood.*.
set -u
cd /out
HISTORY=${HISTORY:-256}
ctprobe trace --timeline --history "$HISTORY" -o json -w cpus.ctp >cpus.trace.jsonl 2>cpus.trace.err &
tp=$!
for _ in $(seq 300); do
  grep -q '"kind":"plan"' cpus.trace.jsonl 2>/dev/null && break
  kill -0 "$tp" 2>/dev/null || break
  sleep 0.2
done
echo "=== cpus: --timeline --history $HISTORY on $(nproc) vCPUs, a flood from every vCPU beside the lookups"
ctlab flood --scenario endpoints-1 --threads "$(nproc)" --duration 600s --udp-timeout 2s -o json >cpus.flood.json 2>cpus.flood.err &
flood=$!
ctlab run --scenario endpoints-2 --lookups 100 --min-clashes 30 --max-lookups 1000 --keep -o json >cpus.lab.json 2>cpus.lab.err
echo $? >cpus.lab.rc
kill -INT "$flood"
wait "$flood"
kill -INT "$tp"
wait "$tp"
echo $? >cpus.trace.rc
ctlab cleanup --all >/dev/null 2>&1
grep -h '"kind":"lost"' cpus.trace.jsonl | head -n 5
exit 0
