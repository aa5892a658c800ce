#!/bin/bash
# make bench, inside the VM (as /lab/run; see scripts/vm/README.md): the rate
# of new UDP flows through a DNAT'd ClusterIP (ctlab flood) with no tracer and
# with `ctprobe trace` in its default mode, with --timeline and with --all,
# attached with fentry and with kprobe. Untraced runs alternate with traced
# ones, and every traced run is compared with the mean of the untraced runs
# around it, so that drift of an emulated, shared machine cancels out. Then:
# per-flow probe time from the kernel's BPF statistics, loss at a sustained
# rate with the default ring size, and the exact accounting of an overloaded
# one-page ring buffer.
#
# Output: /out/results.tsv, one line per run (scripts/bench.sh makes the
# table), and per-run files in /out/runs/. Progress lines start with "bench:".
#   env: BENCH_ROUNDS (5), BENCH_DURATION (4s), BENCH_SCENARIO (endpoints-2),
#        BENCH_THREADS (1), BENCH_PACED_RATE (300 flows/s), BENCH_PACED_DURATION (5s)
set -u
cd /out
rounds=${BENCH_ROUNDS:-5}
duration=${BENCH_DURATION:-4s}
scenario=${BENCH_SCENARIO:-endpoints-2}
threads=${BENCH_THREADS:-1}
paced_rate=${BENCH_PACED_RATE:-300}
paced_duration=${BENCH_PACED_DURATION:-5s}
mkdir -p runs
results=results.tsv
printf 'run\tattach\tmode\tflows_per_s\tflows\tsent\treceived\tlost\tprobe_ns\tprobe_runs\tnote\n' >"$results"

log() { echo "bench: [$(cut -d' ' -f1 /proc/uptime)s] $*"; }

# num KEY FILE: a top-level number of ctlab's indented JSON.
num() { sed -n "s/^  \"$1\": \([0-9.e+-]*\),*$/\1/p" "$2" | head -n 1; }

# trailer KEY FILE: records_sent, records_received or records_lost from a
# capture's trailer (JSON at the end of the file).
trailer() { grep -ao "\"$1\":\"[0-9]*\"" "$2" | tail -n 1 | grep -o '[0-9][0-9]*'; }

# wait_capture FILE PID: the tracer writes the capture's header once its
# probes are attached; then 2 s for its start-up work (loading programs is
# slow under TCG) to end, so that runs measure the steady state.
wait_capture() {
  for _ in $(seq 600); do
    [ -s "$1" ] && { sleep 2; return 0; }
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# stop PID: SIGINT, then up to 60 s for the tracer to drain and exit.
stop() {
  kill -INT "$1" 2>/dev/null
  for _ in $(seq 600); do
    kill -0 "$1" 2>/dev/null || { wait "$1"; return $?; }
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null
  wait "$1"
  return 124
}

# probe_time FILE: the summed run time and run count of every BPF program
# loaded (only ctprobe's run here), from the kernel's statistics; FILE gets
# one line per program: name, run_time_ns, run_cnt.
probe_time() {
  bpftool prog show 2>/dev/null | awk -v per="$1" '
    {
      name = ""; t = 0; c = 0
      for (i = 1; i < NF; i++) {
        if ($i == "name") name = $(i+1)
        if ($i == "run_time_ns") t = $(i+1)
        if ($i == "run_cnt") c = $(i+1)
      }
      if (c > 0) { printf "%s\t%d\t%d\n", name, t, c > per; ns += t; n += c }
    }
    END { printf "%d\t%d\n", ns, n }'
}

# measure RUN ATTACH MODE [ctprobe trace flags...] [-- ctlab flood flags...]
#   ATTACH: none, fentry or kprobe; MODE: default, timeline or all (for none, a label).
measure() {
  local run=$1 attach=$2 mode=$3
  shift 3
  local targs=() fargs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do targs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  fargs=("$@")
  local name=$run-$attach-$mode tp= note=ok
  local ctp=runs/$name.ctp
  rm -f "$ctp"
  if [ "$attach" != none ]; then
    local a=(--attach "$attach" -q -w "$ctp")
    [ "$mode" = default ] || a+=(--"$mode")
    ctprobe trace "${a[@]}" ${targs[@]+"${targs[@]}"} 2>"runs/$name.trace.err" &
    tp=$!
    if ! wait_capture "$ctp" "$tp"; then
      log "$name: ctprobe trace did not start: $(head -c 300 "runs/$name.trace.err")"
      kill -KILL "$tp" 2>/dev/null
      wait "$tp" 2>/dev/null
      printf '%s\t%s\t%s\t\t\t\t\t\t\t\ttracer-failed\n' "$run" "$attach" "$mode" >>"$results"
      return
    fi
  fi
  ctlab flood --scenario "$scenario" --duration "$duration" --threads "$threads" ${fargs[@]+"${fargs[@]}"} \
    -o json >"runs/$name.flood.json" 2>"runs/$name.flood.err" || note=flood-failed
  local rate flows sent= received= lost= pns= pruns=
  rate=$(num flows_per_second "runs/$name.flood.json")
  flows=$(num flows "runs/$name.flood.json")
  if [ -n "$tp" ]; then
    if [ "${BENCH_STATS:-}" = 1 ]; then
      local pt
      pt=$(probe_time "runs/$name.progs") # (no /dev/fd in the guest for <(...))
      pns=${pt%%$'\t'*} pruns=${pt##*$'\t'}
    fi
    stop "$tp" || note=trace-rc-$?
    sent=$(trailer records_sent "$ctp")
    received=$(trailer records_received "$ctp")
    lost=$(trailer records_lost "$ctp")
    [ -n "$sent" ] || note=no-trailer
    if [ -n "$sent" ] && [ "$sent" != $((received + lost)) ]; then
      note=unaccounted
    fi
    rm -f "$ctp" # --all captures are large; the trailer's counts are kept above
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$attach" "$mode" "$rate" "$flows" \
    "$sent" "$received" "$lost" "$pns" "$pruns" "$note" >>"$results"
  log "$(printf '%-22s %8.0f flows/s' "$name" "${rate:-0}")${sent:+  records sent $sent, received $received, lost $lost}${pns:+, probes ${pns} ns in ${pruns} runs}  [$note]"
}

log "kernel $(uname -r), $(nproc) vCPUs; scenario $scenario, $threads sender thread(s), $duration per run, $rounds rounds"
# Warm-up: the first topology and flood pay for module and page-cache faults.
ctlab flood --scenario "$scenario" --duration 1s >/dev/null 2>&1

# Every traced run sits between two untraced runs; scripts/bench.sh compares
# it with their mean, so that a drifting host rate cancels out.
n=0
for r in $(seq "$rounds"); do
  for attach in fentry kprobe; do
    for mode in default timeline all; do
      measure "u$n" none -
      n=$((n + 1))
      measure "r$r" "$attach" "$mode"
    done
  done
done
measure "u$n" none -

# Per-flow time in the probes, from the kernel's BPF run-time statistics
# (they cost a clock read per program run, so the rate runs above go without).
echo 1 >/proc/sys/kernel/bpf_stats_enabled
for attach in fentry kprobe; do
  for mode in default timeline all; do
    BENCH_STATS=1 measure stats "$attach" "$mode"
  done
done
echo 0 >/proc/sys/kernel/bpf_stats_enabled

# Loss: --all at a paced rate with the default ring size (the reader keeps
# up: nothing lost), and a one-page ring buffer at full speed (records are
# lost, and every one is counted: sent = received + lost).
measure sustained fentry all -- --rate "$paced_rate" --duration "$paced_duration"
measure overload fentry all --ring-size 4096
ctlab cleanup --all >/dev/null 2>&1
log "done"
exit 0
