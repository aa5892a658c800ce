#!/bin/bash
# Runs inside the VM lab (as /lab/run; see scripts/vm/README.md): for each
# scenario, trace with ctprobe while ctlab provokes races, then replay the
# capture. Results go to /out for e2e/vm_test.go to check on the host.
#   env: SCENARIOS="endpoints-1 endpoints-2 ...", LOOKUPS_<scenario>=N, LOOKUPS=N (default)
set -u
SCENARIOS=${SCENARIOS:-endpoints-2}
cd /out
ctprobe probes >probes.txt 2>&1
ctprobe probes -o json >probes.json 2>/dev/null
for s in ${SCENARIOS//,/ }; do
  var="LOOKUPS_${s//-/_}"
  n=${!var:-${LOOKUPS:-100}}
  echo "=== scenario $s: $n lookups"
  ctprobe trace -o json -w "$s.ctp" >"$s.trace.jsonl" 2>"$s.trace.err" &
  tp=$!
  # The plan line is printed once every probe is attached.
  for _ in $(seq 150); do
    grep -q '"kind":"plan"' "$s.trace.jsonl" 2>/dev/null && break
    kill -0 "$tp" 2>/dev/null || break
    sleep 0.2
  done
  ctlab run --scenario "$s" --lookups "$n" --keep -o json >"$s.lab.json" 2>"$s.lab.err"
  echo $? >"$s.lab.rc"
  kill -INT "$tp"
  wait "$tp"
  echo $? >"$s.trace.rc"
  ctlab cleanup --all >/dev/null 2>&1
  ctprobe report -r "$s.ctp" -o json >"$s.report.jsonl" 2>"$s.report.err"
  echo $? >"$s.report.rc"
  # What a user sees: the text report of the same capture.
  ctprobe report -r "$s.ctp" --no-color >"$s.report.txt" 2>&1
  tail -n 25 "$s.report.txt"
done
exit 0
