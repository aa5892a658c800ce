#!/bin/bash
# Runs inside the VM lab (as /lab/run; see scripts/vm/README.md): for each
# scenario, trace with ctprobe while ctlab provokes races, then replay the
# capture. Results go to /out for e2e/vm_test.go to check on the host.
#   env: SCENARIOS="endpoints-1,endpoints-2@kprobe,..." (NAME or NAME@ATTACH-MODE),
#        LOOKUPS_<name with - and @ as _>=N, LOOKUPS=N (default 100)
set -u
SCENARIOS=${SCENARIOS:-endpoints-2}
cd /out
ctprobe probes >probes.txt 2>&1
ctprobe probes -o json >probes.json 2>/dev/null
for s in ${SCENARIOS//,/ }; do
  base=${s%@*}
  attach=auto
  [[ $s == *@* ]] && attach=${s#*@}
  f=${s//@/-}
  var=LOOKUPS_${f//-/_}
  n=${!var:-${LOOKUPS:-100}}
  echo "=== scenario $base, attach $attach: $n lookups"
  ctprobe trace --attach "$attach" -o json -w "$f.ctp" >"$f.trace.jsonl" 2>"$f.trace.err" &
  tp=$!
  # The plan line is printed once every probe is attached.
  for _ in $(seq 150); do
    grep -q '"kind":"plan"' "$f.trace.jsonl" 2>/dev/null && break
    kill -0 "$tp" 2>/dev/null || break
    sleep 0.2
  done
  ctlab run --scenario "$base" --lookups "$n" --keep -o json >"$f.lab.json" 2>"$f.lab.err"
  echo $? >"$f.lab.rc"
  kill -INT "$tp"
  wait "$tp"
  echo $? >"$f.trace.rc"
  ctlab cleanup --all >/dev/null 2>&1
  ctprobe report -r "$f.ctp" -o json >"$f.report.jsonl" 2>"$f.report.err"
  echo $? >"$f.report.rc"
  # What a user sees: the text report of the same capture.
  ctprobe report -r "$f.ctp" --no-color >"$f.report.txt" 2>&1
  tail -n 25 "$f.report.txt"
done
echo "=== ctprobe selftest"
ctprobe selftest --lookups 100 --no-color >selftest.txt 2>&1
echo $? >selftest.rc
tail -n 5 selftest.txt
exit 0
