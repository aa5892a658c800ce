#!/bin/bash
# make bench, inside the VM (as /lab/run; see scripts/vm/README.md): the
# packet rate through a DNAT'd ClusterIP (ctlab flood) with no tracer, with
# `ctprobe trace` in its default mode, with --timeline, with --all and with
# --all --timeline, attached with fentry and with kprobe (--all also with the
# kprobe + kretprobe pair that kernels before 6.10 get), and with a peer: a
# bpftrace one-liner on the probe point that --all needs, counting the
# verdicts of __nf_conntrack_confirm. Three workloads, each a flood of its
# own: new UDP flows (every packet a new flow: NAT, confirm), and the packets
# of established flows, UDP (one connected socket) and TCP (one connection),
# which only meet nf_conntrack_in's lookup.
#
# The rates of a workload come from ONE long flood on one topology, cut into
# windows by marks (ctlab flood --marks): untraced and traced windows
# alternate, and every traced window is compared with the mean of the
# untraced windows on either side, a few seconds away, so that the drift of
# an emulated, shared machine cancels out far better than between separate
# runs. The tracer's start-up and teardown (in which the flood pauses) and a
# settle window after each get windows of their own, which are left out.
# Then, unless BENCH_EXTRAS=0: per-packet probe time from the kernel's BPF
# statistics, loss at a sustained rate with the default ring size, and the
# exact accounting of an overloaded one-page ring buffer.
#
# Pinned, each window is also profiled where perf is present (make bench
# adds it): cpu-clock samples of the sending vCPU with call chains, from
# which each traced window's share of busy time in the probes (programs,
# helpers, trampolines, kprobe and fprobe handlers; ctprobe's or the
# peer's) is counted. That share is measured within the window, so the
# host's drift, which moves the rate ratios, cannot move it: 1 - share is
# the rate the probes' kernel time leaves.
#
# Output: /out/results.tsv, one line per window (in order) and per other run
# (scripts/bench.sh makes the table), and per-run files in /out/runs/.
# Progress lines start with "bench:".
#   env: BENCH_WORKLOADS ("new udp tcp"), BENCH_WINDOW (4s: one measured
#        window), BENCH_PAIRS (4: traced windows per workload, attach mode
#        and mode), BENCH_MODES ("default timeline all all-timeline": new
#        flows), BENCH_ESTABLISHED_MODES ("default timeline all"),
#        BENCH_ATTACH ("fentry kprobe kretprobe"; kretprobe is --all's pair
#        on confirm, which established packets never call), BENCH_PEERS
#        ("kretfunc kretprobe": bpftrace's attach types, on new flows; none
#        if bpftrace is absent), BENCH_SETTLE (3s: after the tracer attached
#        or exited), BENCH_SCENARIO (endpoints-2), BENCH_THREADS (1),
#        BENCH_DURATION (4s: each probe-time run), BENCH_PACED_RATE (300
#        flows/s), BENCH_PACED_DURATION (5s), BENCH_PIN (1: senders on
#        vCPU 0, the rest on vCPU 1; 0: no pinning), BENCH_CONTROL (1: a
#        control window without a tracer in every pair), BENCH_EXTRAS (1:
#        the probe-time and loss runs), BENCH_PROFILE_TOP (0; 1: each
#        profiled window's 40 costliest symbols in runs/NAME.top, and its
#        probes' samples by program and symbol in runs/NAME.probes)
set -u
cd /out || exit 1
window=${BENCH_WINDOW:-4s}
pairs=${BENCH_PAIRS:-4}
settle=${BENCH_SETTLE:-3s}
scenario=${BENCH_SCENARIO:-endpoints-2}
threads=${BENCH_THREADS:-1}
duration=${BENCH_DURATION:-4s}
paced_rate=${BENCH_PACED_RATE:-300}
paced_duration=${BENCH_PACED_DURATION:-5s}
# The new-flow flood's UDP conntrack timeout: its source ports wrap, each
# reused 1 s after its entry expired (see lab/flood.go), so the flood can
# last as long as the windows need, with about rate x 2 s entries in the
# table throughout. Established floods keep the kernel's timeouts (a flow
# must outlive the pauses; ctlab checks at the end that it did).
udp_timeout=2s
# Lists may be space- or comma-separated.
list() { echo "${1//,/ }"; }
workloads=$(list "${BENCH_WORKLOADS:-new udp tcp}")
modes=$(list "${BENCH_MODES:-default timeline all all-timeline}")
established_modes=$(list "${BENCH_ESTABLISHED_MODES:-default timeline all}")
attaches=$(list "${BENCH_ATTACH:-fentry kprobe kretprobe}")
peers=$(list "${BENCH_PEERS:-kretfunc kretprobe}")
command -v bpftrace >/dev/null || peers=''
# Attach modes: kprobe takes kprobe.session where the kernel has it (6.10+)
# for --all's confirm; kretprobe keeps the kprobe + kretprobe pair there, as
# before 6.10 (--max-active). Only --all attaches differently under the two,
# so kretprobe is measured with --all alone.
attach_flags() {
  case $1 in
    kretprobe) echo --attach kprobe --max-active 1024 ;;
    *) echo --attach "$1" ;;
  esac
}
mode_flags() {
  case $1 in
    default) ;;
    timeline) echo --timeline ;;
    all) echo --all ;;
    all-timeline) echo --all --timeline ;;
  esac
}
# The peer: the one-liner a user would run to see confirm's verdicts,
# attached like ctprobe --all (fexit, as ctprobe's fentry attach mode; a
# kretprobe, like its kprobe modes). BEGIN fires once every probe is
# attached, and says so.
peer_program() {
  local at=kretprobe:__nf_conntrack_confirm
  [ "$1" = kretfunc ] && at=kretfunc:nf_conntrack:__nf_conntrack_confirm
  printf '%s\n' "BEGIN { printf(\"attached\\n\"); } $at { @[retval] = count(); }"
}
# ctlab flood's flags for a workload.
workload_flags() {
  case $1 in
    new) ;;
    *) echo --established "$1" ;;
  esac
}
# Pinning: the flood's sender threads on vCPU 0, and everything else (the
# rest of ctlab: the responders, the TCP sinks and the marks reader; the
# tracer) on vCPU 1. The rate then shows the per-packet cost that the
# probes add in the kernel on the sending CPU, which is what a node pays on
# its busy CPUs; ctprobe's reader, whose CPU time each window reports apart,
# runs on another CPU, as it can on any node with a CPU to spare. Unpinned,
# on 2 vCPUs, the reader takes its CPU from the flood's own responders and
# sender.
flood_cmd=() tracer_pin=() profile=no
if [ "${BENCH_PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  # GOMAXPROCS: Go would size itself to the one CPU taskset leaves it.
  flood_cmd=(env GOMAXPROCS=2 taskset -c 1 ctlab flood --cpu 0)
  tracer_pin=(taskset -c 1)
  command -v perf >/dev/null && profile=yes
else
  flood_cmd=(ctlab flood)
fi
mkdir -p runs
results=results.tsv
printf 'run\tattach\tmode\tpackets_per_s\tpackets\tsent\treceived\tlost\tprobe_ns\tprobe_runs\tnote\tcpu_ms\tprobe_share\tidle_share\tworkload\n' >"$results"

log() { echo "bench: [$(cut -d' ' -f1 /proc/uptime)s] $*"; }

# num KEY FILE: a top-level number of ctlab's indented JSON.
num() { sed -n "s/^  \"$1\": \([0-9.e+-]*\),*$/\1/p" "$2" | head -n 1; }

# trailer KEY FILE: records_sent, records_received or records_lost from a
# capture's trailer (JSON at the end of the file).
trailer() { grep -ao "\"$1\":\"[0-9]*\"" "$2" | tail -n 1 | grep -o '[0-9][0-9]*'; }

# wait_for FILE PID [PATTERN]: until FILE is not empty (or has a line with
# PATTERN), for up to 60 s; fails if PID exits first.
wait_for() {
  for _ in $(seq 600); do
    if [ $# -gt 2 ]; then grep -q "$3" "$1" 2>/dev/null && return 0
    else [ -s "$1" ] && return 0
    fi
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

# cpu_ticks PID: the user and system CPU time of a process, in clock ticks
# (1/100 s), or 0 once it is gone.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# start_tracer NAME ATTACH MODE [flags...]: `ctprobe trace` writing
# runs/NAME.ctp in the background, or with MODE bpftrace the peer attached
# as ATTACH says, writing runs/NAME.bt; sets tracer_pid, and returns once
# the probes are attached (ctprobe: the capture's header is written) or
# fails after reaping a tracer that did not get there.
start_tracer() {
  local name=$1 attach=$2 mode=$3
  shift 3
  if [ "$mode" = bpftrace ]; then
    rm -f "runs/$name.bt"
    ${tracer_pin[@]+"${tracer_pin[@]}"} bpftrace -B none -e "$(peer_program "$attach")" >"runs/$name.bt" 2>"runs/$name.trace.err" 3>&- &
    tracer_pid=$!
    wait_for "runs/$name.bt" "$tracer_pid" '^attached' && return 0
  else
    rm -f "runs/$name.ctp"
    # shellcheck disable=SC2046 # attach_flags and mode_flags give words
    ${tracer_pin[@]+"${tracer_pin[@]}"} ctprobe trace $(attach_flags "$attach") -q -w "runs/$name.ctp" $(mode_flags "$mode") "$@" 2>"runs/$name.trace.err" 3>&- &
    tracer_pid=$!
    wait_for "runs/$name.ctp" "$tracer_pid" && return 0
  fi
  log "$name: $mode did not start: $(head -c 300 "runs/$name.trace.err")"
  kill -KILL "$tracer_pid" 2>/dev/null
  wait "$tracer_pid" 2>/dev/null
  return 1
}

# stop_tracer NAME MODE: stops tracer_pid and sets sent, received, lost and
# note: ok, or what went wrong. ctprobe's come from the capture's trailer
# (then the large capture is removed); the peer's from the counts it prints
# on exit: what it recorded is one count per confirm, all of them kept.
stop_tracer() {
  note=ok
  stop "$tracer_pid" || note=trace-rc-$?
  if [ "$2" = bpftrace ]; then
    sent=$(awk -F': ' '/^@\[/ { n += $2 } END { print n + 0 }' "runs/$1.bt")
    received=$sent lost=0
    return
  fi
  sent=$(trailer records_sent "runs/$1.ctp")
  received=$(trailer records_received "runs/$1.ctp")
  lost=$(trailer records_lost "runs/$1.ctp")
  if [ -z "$sent" ]; then
    note=no-trailer
  elif [ "$sent" != $((received + lost)) ]; then
    note=unaccounted
  fi
  rm -f "runs/$1.ctp"
}

# probe_time FILE: the summed run time and run count of every BPF program
# loaded (only the tracer's run here), from the kernel's statistics; FILE
# gets one line per program: name, run_time_ns, run_cnt.
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

# measure RUN WORKLOAD ATTACH MODE [ctprobe trace flags...] [-- ctlab flood
# flags...]: one flood of its own on a new topology, traced from before it
# starts to after it ends (the probe-time and loss runs).
measure() {
  local run=$1 wl=$2 attach=$3 mode=$4
  shift 4
  local targs=() fargs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do targs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  fargs=("$@")
  local name=$run-$wl-$attach-$mode fnote=ok pns='' pruns=''
  if ! start_tracer "$name" "$attach" "$mode" ${targs[@]+"${targs[@]}"}; then
    printf '%s\t%s\t%s\t\t\t\t\t\t\t\ttracer-failed\t\t\t\t%s\n' "$run" "$attach" "$mode" "$wl" >>"$results"
    return
  fi
  sleep "$settle" # the tracer's start-up work (loading is slow under TCG) ends
  # shellcheck disable=SC2046 # workload_flags gives words
  "${flood_cmd[@]}" --scenario "$scenario" --duration "$duration" --threads "$threads" $(workload_flags "$wl") \
    ${fargs[@]+"${fargs[@]}"} -o json >"runs/$name.flood.json" 2>"runs/$name.flood.err" || fnote=flood-failed
  if [ "${BENCH_STATS:-}" = 1 ]; then
    local pt
    pt=$(probe_time "runs/$name.progs") # (no /dev/fd in the guest for <(...))
    pns=${pt%%$'\t'*} pruns=${pt##*$'\t'}
  fi
  stop_tracer "$name" "$mode"
  [ "$fnote" = ok ] || note=$fnote
  local rate packets
  rate=$(num packets_per_second "runs/$name.flood.json")
  packets=$(num packets "runs/$name.flood.json")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t\t\t%s\n' "$run" "$attach" "$mode" "$rate" "$packets" \
    "$sent" "$received" "$lost" "$pns" "$pruns" "$note" "$wl" >>"$results"
  log "$(printf '%-30s %8.0f packets/s' "$name" "${rate:-0}")${sent:+  records sent $sent, received $received, lost $lost}${pns:+, probes ${pns} ns in ${pruns} runs}  [$note]"
}

# profiled_window NAME: one window of the flood; with profile=yes it is
# sampled on vCPU 0 (the sender's) into runs/NAME.perf, by a perf that runs
# on vCPU 1 like the rest. Untraced windows are sampled too, so that every
# window bears the sampling's own cost.
profiled_window() {
  if [ "$profile" = yes ]; then
    "${tracer_pin[@]}" perf record -q -g --no-buildid --no-buildid-cache -e cpu-clock -F 1000 -C 0 -o "runs/$1.perf" -- sleep "$window" \
      2>>runs/perf.err 3>&- && return
    log "$1: perf record failed: $(tail -n 1 runs/perf.err)"
  fi
  sleep "$window"
}

# probe_share NAME: "probe idle" shares of runs/NAME.perf's samples. A
# sample is the probes' when a frame of its call chain is a BPF program or
# what runs it (prog enter/exit, the ring buffer's wakeup, the kprobe,
# kretprobe and fprobe handlers and ftrace's register-saving caller), or
# when it falls in a trampoline itself (not below it: an fexit trampoline
# calls the traced function, and a kretprobe's return trampoline stands
# for the function's caller). Probe share is of busy samples, idle share of
# all.
# With BENCH_PROFILE_TOP=1 it also writes runs/NAME.probes: the probes'
# samples by program (the innermost bpf_prog_ frame, or "dispatch" for what
# runs programs) and leaf symbol, as shares of the busy samples, so that a
# change can be aimed at the program and the helper that cost the most.
probe_share() {
  local top=
  [ "${BENCH_PROFILE_TOP:-0}" = 1 ] && top=runs/$1.probes
  perf script -i "runs/$1.perf" -F ip,sym 2>/dev/null | awk -v top="$top" '
    function flush() {
      if (nf == 0) return
      if (leaf ~ /^(pv_native_safe_halt|native_safe_halt|default_idle|default_idle_call|poll_idle|cpu_idle_poll|acpi_idle_do_entry|intel_idle)$/) idle++
      else if (probe || leaf ~ /^(bpf_trampoline_|arch_rethook_trampoline|__kretprobe_trampoline|kretprobe_trampoline)/) {
        probes++
        if (top != "") by[(prog == "" ? "dispatch" : prog) " " leaf]++
      }
      n++; nf = 0; probe = 0; prog = ""
    }
    NF == 0 { flush(); next }
    {
      sym = $2
      if (nf++ == 0) leaf = sym
      if (prog == "" && sym ~ /^bpf_prog_/) prog = sym
      if (sym ~ /^(bpf_prog_|__bpf_prog_(enter|exit)|__bpf_tramp_(enter|exit)|bpf_ringbuf_notify|fprobe_|__fprobe_|kprobe_multi_link_|kprobe_ftrace_handler|kprobe_int3_handler|kprobe_dispatcher|kretprobe_dispatcher|kretprobe_rethook_handler|pre_handler_kretprobe|rethook_trampoline_handler|__kretprobe_trampoline_handler|trampoline_handler|optimized_callback|opt_pre_handler|ftrace_regs_caller|ftrace_caller|arch_ftrace_ops_list_func|trace_call_bpf|bpf_trace_run)/) probe = 1
    }
    END {
      flush()
      if (n > idle) printf "%.4f %.4f\n", probes / (n - idle), idle / n
      for (k in by) printf "%.4f %s\n", by[k] / (n - idle), k | "sort -rn >" top
    }'
}

# profile_shares: runs/shares.tsv, the probe and idle shares of each
# profiled traced window by segment number (runs/profiles.tsv), counted
# after the flood so that perf script's work does not fall in a window.
profile_shares() {
  local n name
  while IFS=$'\t' read -r n name; do
    [ -f "runs/$name.perf" ] || continue
    printf '%s\t%s\n' "$n" "$(probe_share "$name" | tr ' ' '\t')" >>runs/shares.tsv
    # Where the window's time went, by symbol (self time): what a change to
    # the probes must shrink.
    [ "${BENCH_PROFILE_TOP:-0}" = 1 ] &&
      perf report -i "runs/$name.perf" --no-children --sort sym -g none --stdio -q 2>/dev/null | head -n 40 >"runs/$name.top"
    rm -f "runs/$name.perf"
  done <runs/profiles.tsv
}

# The interleaved floods. Marks go through the FIFO runs/marks on fd 3,
# opened read-write so that neither side's open waits for the other; closing
# fd 3 ends the flood, once no child holds it (background children are
# started with 3>&-). Segment n of the flood's JSON is the window of the n-th
# mark (segment 0, before the first mark, is the flood's start).
nmarks=0
mark() {
  echo "$1" >&3
  nmarks=$((nmarks + 1))
  # A pause ("!" mark) must hold before probes attach or detach: give the
  # flood time to read the mark and a packet in flight time to end.
  [[ $1 != '!'* ]] || sleep 0.2
}

# traced_window WORKLOAD PAIR ATTACH MODE: an untraced window, the tracer's
# start-up, a settle window, a traced window, the tracer's teardown and a
# settle window; the tracer's accounting goes to runs/windows.tsv under the
# traced window's segment number. The flood pauses ("!" marks) while the
# tracer attaches and detaches: under TCG, patching the code of functions
# that the other vCPU runs at that moment crashed the guest (an int3 oops in
# __nf_conntrack_confirm, about once in 20 attaches). The settle windows let
# the conntrack table, which empties in a pause, fill again. Mode "control"
# (attach "none") goes through the same windows and pauses without a
# tracer: its ratio is the bench's own scatter, against which a mode that
# costs nothing measurable is judged.
traced_window() {
  local attach=$3 mode=$4 name=$1-w$2-$3-$4 n alive=yes cpu0 cpu=0
  mark "untraced"
  profiled_window "$name-before"
  rm -f "runs/$name-before.perf"
  mark "!startup $attach $mode"
  tracer_pid=''
  if [ "$mode" != control ] && ! start_tracer "$name" "$attach" "$mode"; then
    mark "failed $attach $mode"
    printf '%d\t\t\t\ttracer-failed\t\n' "$nmarks" >>runs/windows.tsv
    return
  fi
  mark "settle $attach $mode"
  sleep "$settle"
  mark "traced $attach $mode"
  n=$nmarks
  cpu0=$(cpu_ticks "$tracer_pid")
  profiled_window "$name"
  printf '%d\t%s\n' "$n" "$name" >>runs/profiles.tsv
  sent='' received='' lost='' note=ok
  if [ -n "$tracer_pid" ]; then
    cpu=$(($(cpu_ticks "$tracer_pid") - cpu0))
    # A tracer that died during the window did not trace all of it.
    kill -0 "$tracer_pid" 2>/dev/null || alive=no
  fi
  mark "!teardown $attach $mode"
  if [ -n "$tracer_pid" ]; then
    stop_tracer "$name" "$mode"
    [ "$alive" = yes ] || note=trace-died
  fi
  printf '%d\t%s\t%s\t%s\t%s\t%d\n' "$n" "$sent" "$received" "$lost" "$note" $((cpu * 10)) >>runs/windows.tsv
  log "$(printf '%-30s' "$name")  records sent ${sent:--}, received ${received:--}, lost ${lost:--}; tracer's CPU in the window $((cpu * 10)) ms  [$note]"
  mark "settle"
  sleep "$settle"
}

# window_rows JSON WORKLOAD: results.tsv rows for the flood's segments, in
# order: kind (the label's first word), attach, mode, packets/s, packets,
# and for traced windows the tracer's accounting from runs/windows.tsv and
# the profile's shares from runs/shares.tsv.
window_rows() {
  awk -F'\t' -v OFS='\t' -v wl="$2" '
    FILENAME == ARGV[1] { acct[$1] = $2 OFS $3 OFS $4 OFS "" OFS "" OFS $5 OFS $6; next }
    FILENAME == ARGV[2] { share[$1] = $2 OFS $3; next }
    /^  "segments": \[/ { in_segs = 1; next }
    in_segs && /^  \]/ { in_segs = 0 }
    !in_segs { next }
    /^      "label": / { sub(/^      "label": "/, ""); sub(/",$/, ""); label = $0 }
    /^      "duration_ns": / { gsub(/[^0-9]/, ""); dur = $0 }
    /^      "packets": / {
      gsub(/[^0-9]/, ""); packets = $0
      n = split(label, w, " ")
      rate = dur > 0 ? packets * 1e9 / dur : 0
      acct_cols = (seg in acct) ? acct[seg] : OFS OFS OFS OFS OFS "ok" OFS
      share_cols = (seg in share) ? share[seg] : OFS
      if (seg > 0)
        print w[1], (n > 1 ? w[2] : "none"), (n > 2 ? w[3] : "-"), sprintf("%.1f", rate), packets, acct_cols, share_cols, wl
      seg++
    }' runs/windows.tsv runs/shares.tsv "$1"
}

# interleaved WORKLOAD: one flood of the workload, cut into the windows of
# every pair: for each attach mode and mode (and the peers on new flows), a
# traced window, and a control window.
interleaved() {
  local wl=$1 json=runs/interleaved-$1.flood.json err=runs/interleaved-$1.flood.err fp wl_modes=$modes fargs
  [ "$wl" = new ] || wl_modes=$established_modes
  fargs=(--udp-timeout "$udp_timeout")
  [ "$wl" = new ] || fargs=(--established "$wl")
  : >runs/windows.tsv
  : >runs/profiles.tsv
  : >runs/shares.tsv
  nmarks=0
  rm -f runs/marks
  mkfifo runs/marks
  exec 3<>runs/marks
  # --duration only bounds a flood whose script went wrong: closing fd 3
  # ends it.
  "${flood_cmd[@]}" --scenario "$scenario" --threads "$threads" "${fargs[@]}" --duration 2h \
    --marks runs/marks -v -o json >"$json" 2>"$err" 3>&- &
  fp=$!
  if ! wait_for "$err" "$fp" "ctlab: flood: "; then
    log "$wl: interleaved flood did not start: $(tail -n 1 "$err")"
    printf 'flood\tnone\t-\t\t\t\t\t\t\t\tflood-failed\t\t\t\t%s\n' "$wl" >>"$results"
    exec 3>&-
    wait "$fp"
    return
  fi
  # Lead-in: the table fills to its steady state (rate x UDP timeout); an
  # established UDP flow becomes assured.
  mark "lead-in"
  sleep 5
  for p in $(seq "$pairs"); do
    log "$wl: pair $p of $pairs"
    for attach in $attaches; do
      # The pair differs only in confirm's probe, which an established
      # packet does not reach.
      [ "$attach" != kretprobe ] || [ "$wl" = new ] || continue
      for mode in $wl_modes; do
        [ "$attach" != kretprobe ] || [ "$mode" = all ] || continue
        traced_window "$wl" "$p" "$attach" "$mode"
      done
    done
    if [ "$wl" = new ]; then
      for peer in $peers; do traced_window "$wl" "$p" "$peer" bpftrace; done
    fi
    [ "${BENCH_CONTROL:-1}" = 1 ] && traced_window "$wl" "$p" none control
  done
  mark "untraced"
  sleep "$window"
  exec 3>&-
  local fnote=ok
  if ! wait "$fp"; then
    fnote=flood-failed
    log "$wl: interleaved flood failed: $(tail -n 1 "$err")"
  fi
  printf 'flood\tnone\t-\t\t\t\t\t\t\t\t%s\t\t\t\t%s\n' "$fnote" "$wl" >>"$results"
  [ "$profile" = no ] || { log "$wl: counting the probes' share of each profiled window"; profile_shares; }
  window_rows "$json" "$wl" >>"$results"
  log "$wl: $(num packets "$json") packets in $(num duration_ns "$json") ns, $nmarks windows"
}

cat /sys/devices/system/clocksource/clocksource0/current_clocksource >clocksource
log "kernel $(uname -r), $(nproc) vCPUs, clocksource $(cat clocksource); workloads $workloads; scenario $scenario, $threads sender thread(s), windows of $window, $pairs pairs; peers: ${peers:-none}; pinned: ${tracer_pin[*]:-no}"
command -v bpftrace >/dev/null && bpftrace --version >runs/bpftrace.version 2>&1
for wl in $workloads; do
  # Warm-up: the first topology and flood pay for module and page-cache
  # faults.
  # shellcheck disable=SC2046 # workload_flags gives words
  ctlab flood --scenario "$scenario" --duration 1s $(workload_flags "$wl") >/dev/null 2>&1
  interleaved "$wl"
done

if [ "${BENCH_EXTRAS:-1}" = 1 ]; then
  # Per-packet time in the probes, from the kernel's BPF run-time
  # statistics (they cost a clock read per program run, so the windows above
  # go without). Established packets run programs only under --timeline.
  echo 1 >/proc/sys/kernel/bpf_stats_enabled
  for wl in $workloads; do
    for attach in fentry kprobe; do
      for mode in default timeline all; do
        [ "$wl" = new ] || [ "$mode" = timeline ] || continue
        BENCH_STATS=1 measure stats "$wl" "$attach" "$mode"
      done
    done
    [ "$wl" = new ] || continue
    BENCH_STATS=1 measure stats new kretprobe all
    for peer in $peers; do BENCH_STATS=1 measure stats new "$peer" bpftrace; done
  done
  echo 0 >/proc/sys/kernel/bpf_stats_enabled

  # Loss, with new flows: --all at a paced rate with the default ring size
  # (the reader keeps up: nothing lost), and a one-page ring buffer at full
  # speed (records are lost, and every one is counted: sent = received +
  # lost).
  if [[ " $workloads " == *" new "* ]]; then
    measure sustained new fentry all -- --rate "$paced_rate" --duration "$paced_duration"
    measure overload new fentry all --ring-size 4096
  fi
fi
ctlab cleanup --all >/dev/null 2>&1
log "done"
exit 0
