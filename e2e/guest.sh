#!/bin/bash
# Runs inside the VM lab (as /lab/run; see scripts/vm/README.md): for each
# scenario, trace with ctprobe in each of MODES at once (the default mode:
# $f.*, --timeline: $f.tl.*, --all: $f.all.*, --all --timeline: $f.atl.*)
# while ctlab provokes races, then replay the captures.
# Results go to /out for e2e/vm_test.go to check on the host.
#   env: SCENARIOS="endpoints-1,endpoints-2@kprobe,..." (NAME or NAME@ATTACH-MODE),
#        NOT_JUDGED="a,b": scenarios doctor does not judge (e2e/vm_test.go: notJudged),
#        LOOKUPS_<name with - and @ as _>=N, LOOKUPS=N (default 100),
#        MODES="default,timeline,all" (any of those and all-timeline)
set -u
SCENARIOS=${SCENARIOS:-endpoints-2}
MODES=${MODES:-default,timeline,all}
declare -A mode_suffix=([default]='' [timeline]=.tl [all]=.all [all-timeline]=.atl)
declare -A mode_flags=([default]='' [timeline]=--timeline [all]=--all [all-timeline]='--all --timeline')
cd /out
uname -m >machine
uname -v >version # PREEMPT_RT, PREEMPT: whether a BPF program can be preempted

# doctor_judge SCENARIO FILE: builds the scenario's topology and keeps it
# (ctlab run --lookups 0 --keep), starts a glibc process (bash) in each
# client namespace whose /etc/resolv.conf names the scenario's target (ip
# netns exec binds /etc/netns/NAME/resolv.conf), runs ctprobe doctor
# (FILE.doctor.{json,rc,err}; FILE.doctor.twin.{json,err} name the
# topology), then removes it all: the traced run builds the same rules anew.
doctor_judge() {
  local s=$1 f=$2.doctor prefix target role holders=()
  ctlab run --scenario "$s" --lookups 0 --keep -o json >"$f.twin.json" 2>"$f.twin.err"
  prefix=$(sed -n 's/^ctlab: kept namespaces \([^ ]*\)\* .*/\1/p' "$f.twin.err")
  target=$(sed -n 's/.*"target": "\(.*\):53".*/\1/p' "$f.twin.json" | tr -d '[]')
  [ -e /etc/resolv.conf ] || : >/etc/resolv.conf # ip netns exec binds onto it
  for role in pod pod2 node; do
    [ "$role" = node ] && [ "$s" != local ] && continue
    [ -n "$prefix" ] && [ -e "/run/netns/$prefix$role" ] || continue
    mkdir -p "/etc/netns/$prefix$role"
    printf 'nameserver %s\noptions ndots:5\n' "$target" >"/etc/netns/$prefix$role/resolv.conf"
    ip netns exec "$prefix$role" bash -c 'sleep 600; :' & # bash stays: a glibc process
    holders+=($!)
  done
  sleep 1
  ctprobe doctor -o json >"$f.json" 2>"$f.err"
  echo $? >"$f.rc"
  [ "${#holders[@]}" -eq 0 ] || { kill "${holders[@]}"; wait "${holders[@]}"; } 2>/dev/null
  rm -rf /etc/netns
  ctlab cleanup --all >/dev/null 2>&1
}

ctprobe probes >probes.txt 2>&1
ctprobe probes -o json >probes.json 2>/dev/null
cat /proc/sys/kernel/unprivileged_bpf_disabled >unpriv_bpf_disabled
for s in ${SCENARIOS//,/ }; do
  base=${s%@*}
  attach=auto
  [[ $s == *@* ]] && attach=${s#*@}
  # NAME@kprobe1: kprobe mode with one kretprobe instance per function, so
  # that concurrent calls are missed (and must be reported); --max-active
  # also keeps --all's confirm on a kretprobe where kprobe.session exists.
  # NAME@noclash: no clash probe, as where nf_ct_resolve_clash is inlined
  # (4.19-5.5): the winner must be found by the in-kernel tuple lookup.
  maxactive= skip=
  case "$attach" in
    kprobe1) attach=kprobe maxactive=1 ;;
    noclash) attach=auto skip=clash ;;
  esac
  f=${s//@/-}
  var=LOOKUPS_${f//-/_}
  n=${!var:-${LOOKUPS:-100}}
  echo "=== scenario $base, attach $attach: $n lookups ($(date -u +%T))"
  started=$SECONDS
  # ctprobe doctor (issue 23) judges the scenario before any lookup, for
  # e2e/doctor_test.go to hold against this scenario's trace ($f.doctor.*).
  [[ ,${NOT_JUDGED:-}, == *,$s,* ]] || [[ $s == *@* ]] || doctor_judge "$base" "$f"
  tracers=() traced=()
  for m in ${MODES//,/ }; do
    g=$f${mode_suffix[$m]}
    # shellcheck disable=SC2086 # the mode's flags are words
    ctprobe trace ${mode_flags[$m]} --attach "$attach" ${maxactive:+--max-active "$maxactive"} ${skip:+--skip-point "$skip"} -o json -w "$g.ctp" >"$g.trace.jsonl" 2>"$g.trace.err" &
    tracers+=($!) traced+=("$g")
  done
  extra=()
  if [ "$s" = endpoints-2 ] && [[ ,$MODES, == *,default,* ]]; then
    # Filters run in the kernel, beside the main tracer: one that matches the
    # ClusterIP (every incident, with a summary every second), one port
    # nothing uses (none), and -c 2.
    ctprobe trace --host 10.96.0.10 --interval 1s -o json >"$f.host.jsonl" 2>&1 & extra+=($!)
    ctprobe trace --port 9999 -o json >"$f.port9999.jsonl" 2>&1 & extra+=($!)
    ctprobe trace -c 2 -o json >"$f.count2.jsonl" 2>&1 &
    count_pid=$!
  fi
  # Each tracer prints its plan line once every probe is attached; a main
  # tracer that died at start ends the wait (its exit code tells why).
  for out in "${traced[@]/%/.trace.jsonl}" "$f".host.jsonl "$f".port9999.jsonl "$f".count2.jsonl; do
    [[ $out = *.trace.jsonl ]] || [ ${#extra[@]} -gt 0 ] || continue
    for _ in $(seq 150); do
      grep -q '"kind":"plan"' "$out" 2>/dev/null && break
      kill -0 "${tracers[@]}" 2>/dev/null || break
      sleep 0.2
    done
  done
  case "$base" in
    chain-too-long)
      # New flows as fast as possible into a 512-bucket hash table whose
      # chains the lab already made long (entries made through ctnetlink):
      # most inserts pass the kernel's limit.
      ctlab flood --scenario "$base" --duration 2s --keep -o json >"$f.lab.json" 2>"$f.lab.err" ;;
    table-full|snat-one-port-held)
      # Deterministic: n single queries, the later ones into a full table;
      # or n race-4 drops, each against an entry 1.5 s old.
      ctlab run --scenario "$base" --lookups "$n" --keep -o json >"$f.lab.json" 2>"$f.lab.err" ;;
    *)
      # Enough lookups to race even on a busy host: at least n, and on until
      # the kernel counted 20 clashes (a deterministic scenario has one a
      # lookup; a reverse collision that NAT settled counts too).
      ctlab run --scenario "$base" --lookups "$n" --min-clashes 20 --max-lookups $((n * 10)) --keep -o json >"$f.lab.json" 2>"$f.lab.err" ;;
  esac
  echo $? >"$f.lab.rc"
  # What every thread of the first mode's tracer holds once attached.
  for st in /proc/"${tracers[0]}"/task/*/status; do
    grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' "$st" | tr '\n' ' '
    echo
  done >"$f.caps"
  kill -INT "${tracers[@]}" ${extra[@]+"${extra[@]}"}
  for i in "${!tracers[@]}"; do
    wait "${tracers[$i]}"
    echo $? >"${traced[$i]}.trace.rc"
  done
  for p in ${extra[@]+"${extra[@]}"}; do wait "$p"; done
  if [ -n "${count_pid:-}" ]; then
    # -c 2 must have stopped by itself after two incidents.
    if kill -0 "$count_pid" 2>/dev/null; then kill -INT "$count_pid"; echo running >"$f.count2.rc"; wait "$count_pid"; else wait "$count_pid"; echo $? >"$f.count2.rc"; fi
    count_pid=
  fi
  # Removes the namespaces and restores the global conntrack settings a
  # scenario changed (nf_conntrack_max, the hash table's size).
  ctlab cleanup --all >/dev/null 2>&1
  for g in "${traced[@]}"; do
    ctprobe report -r "$g.ctp" -o json >"$g.report.jsonl" 2>"$g.report.err"
    echo $? >"$g.report.rc"
    # What a user sees: the text report of the same capture.
    ctprobe report -r "$g.ctp" --no-color >"$g.report.txt" 2>&1
    tail -n 25 "$g.report.txt"
  done
  # What the scenario costs each kernel's run (CI's budget: Makefile, test).
  echo "=== scenario $s took $((SECONDS - started))s"
done
echo "=== ctprobe trace --duration 2s -q -w - | ctprobe report -r -"
ctprobe trace --duration 2s -q -w - 2>pipe.err | ctprobe report -r - -o json >pipe.jsonl 2>>pipe.err
echo "${PIPESTATUS[0]} ${PIPESTATUS[1]}" >pipe.rc
echo "=== ctprobe selftest"
ctprobe selftest --lookups 100 --min-clashes 20 --no-color >selftest.txt 2>&1
echo $? >selftest.rc
tail -n 5 selftest.txt
# ==== overload: exact loss accounting (checked by e2e/overload_test.go) ====
# Three tracers watch one flood of new UDP flows and then a few racing lookups:
# overload.ctp streams every event of every probe (--all --timeline) through a
# one-page ring buffer, so it must lose records and count each one
# (sent = received + lost); moderate.ctp
# runs --timeline (history of every flow) with the default ring size, so it
# must lose none.
echo "=== overload: ctprobe trace --all --timeline --ring-size 4096, --timeline and the default mode, during ctlab flood and ctlab run"
ctprobe trace --all --timeline --ring-size 4096 -o json -w overload.ctp >overload.trace.jsonl 2>overload.trace.err &
ov_pid=$!
ctprobe trace --timeline -o json -w moderate.ctp >moderate.trace.jsonl 2>moderate.trace.err &
mod_pid=$!
# quiet.ctp: the default mode, which must send records for clashes only.
ctprobe trace -o json -w quiet.ctp >quiet.trace.jsonl 2>quiet.trace.err &
quiet_pid=$!
for out in overload.trace.jsonl moderate.trace.jsonl quiet.trace.jsonl; do
  for _ in $(seq 200); do
    grep -q '"kind":"plan"' "$out" 2>/dev/null && break
    kill -0 "$ov_pid" 2>/dev/null && kill -0 "$mod_pid" 2>/dev/null && kill -0 "$quiet_pid" 2>/dev/null || break
    sleep 0.2
  done
done
ctlab flood --scenario endpoints-2 --duration 3s -o json >overload.flood.json 2>overload.flood.err
echo $? >overload.flood.rc
ctlab run --scenario endpoints-2 --lookups 20 --min-clashes 3 --max-lookups 200 -o json >overload.lab.json 2>overload.lab.err
echo $? >overload.lab.rc
kill -INT "$ov_pid" "$mod_pid" "$quiet_pid"
wait "$ov_pid"
echo $? >overload.trace.rc
wait "$mod_pid"
echo $? >moderate.trace.rc
wait "$quiet_pid"
echo $? >quiet.trace.rc
ctlab cleanup --all >/dev/null 2>&1
grep -h '"kind":"lost"' overload.trace.jsonl | tail -n 3
tail -n 1 overload.trace.jsonl | cut -c 1-160
# ==== end of overload ====
exit 0
