#!/bin/bash
# Runs inside the VM lab for e2e/doctor_test.go: for each scenario, ctprobe
# doctor judges a ctlab topology before any lookup, then ctprobe trace
# watches the same scenario's lookups, so the host can check the prediction
# against the observation.
#
# The topology doctor reads is built first and kept (ctlab run --lookups 0
# --keep), with a glibc program (bash) in each client namespace whose
# /etc/resolv.conf names the scenario's target (ip netns exec bind-mounts
# /etc/netns/NAME/resolv.conf); it is removed before the traced run builds
# the same scenario's topology again, with the same rules.
# Results go to /out: doctor.NAME.{twin.json,twin.err,json,rc,err},
# doctor.NAME.{trace.jsonl,trace.err,trace.rc,lab.json,lab.err,lab.rc}.
#   env: SCENARIOS="a,b" (default: every scenario), LOOKUPS=N (default 60)
set -u
cd /out
SCENARIOS=${SCENARIOS:-endpoints-1,endpoints-2,nonat,ipv6,local,snat-one-port,vxlan-masq}
LOOKUPS=${LOOKUPS:-60}
# The mount point ip netns exec binds each namespace's resolv.conf onto.
[ -e /etc/resolv.conf ] || : >/etc/resolv.conf
for s in ${SCENARIOS//,/ }; do
  f=doctor.$s
  echo "=== doctor: scenario $s"
  ctlab run --scenario "$s" --lookups 0 --keep -o json >"$f.twin.json" 2>"$f.twin.err"
  prefix=$(sed -n 's/^ctlab: kept namespaces \([^ ]*\)\* .*/\1/p' "$f.twin.err")
  target=$(sed -n 's/.*"target": "\(.*\):53".*/\1/p' "$f.twin.json" | tr -d '[]')
  if [ -z "$prefix" ] || [ -z "$target" ]; then
    echo "no kept topology for $s: $(cat "$f.twin.err")"
    continue
  fi
  clients=(pod pod2)
  [ "$s" = local ] && clients=(node)
  holders=()
  for role in "${clients[@]}"; do
    [ -e "/run/netns/$prefix$role" ] || continue
    mkdir -p "/etc/netns/$prefix$role"
    printf 'nameserver %s\noptions ndots:5\n' "$target" >"/etc/netns/$prefix$role/resolv.conf"
    # bash stays the parent of its sleep: a glibc process in the pod.
    ip netns exec "$prefix$role" bash -c 'sleep 600; :' &
    holders+=($!)
  done
  sleep 1
  ctprobe doctor -o json >"$f.json" 2>"$f.err"
  echo $? >"$f.rc"
  kill "${holders[@]}" 2>/dev/null
  wait "${holders[@]}" 2>/dev/null
  rm -rf /etc/netns
  ctlab cleanup --all >/dev/null 2>&1

  ctprobe trace -o json >"$f.trace.jsonl" 2>"$f.trace.err" &
  tp=$!
  for _ in $(seq 150); do
    grep -q '"kind":"plan"' "$f.trace.jsonl" 2>/dev/null && break
    kill -0 "$tp" 2>/dev/null || break
    sleep 0.2
  done
  ctlab run --scenario "$s" --lookups "$LOOKUPS" --min-clashes 20 --max-lookups $((LOOKUPS * 10)) -o json >"$f.lab.json" 2>"$f.lab.err"
  echo $? >"$f.lab.rc"
  kill -INT "$tp"
  wait "$tp"
  echo $? >"$f.trace.rc"
  ctlab cleanup --all >/dev/null 2>&1
  grep -o '"id":"[^"]*","severity":"[^"]*"' "$f.json" | sort | uniq -c
done
exit 0
