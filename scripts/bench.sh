#!/usr/bin/env bash
# make bench: what ctprobe costs. Boots the VM lab (a Debian kernel under QEMU
# TCG) with scripts/bench-guest.sh, which runs one long flood per workload
# through a DNAT'd ClusterIP (new UDP flows; established UDP and TCP flows)
# and alternates untraced windows with windows traced by ctprobe in its
# default mode, with --timeline, --all and --all --timeline (fentry and
# kprobe), and by a peer (a bpftrace one-liner counting confirm's verdicts),
# plus probe time per packet from the kernel's BPF statistics and loss at a
# sustained rate and under overload. Then runs scripts/bench-go.sh
# (user-space benchmarks) and prints one table.
#
# make bench-quick (BENCH_QUICK=1) measures the same table in fewer windows:
# fentry only, the default mode, --all and --timeline, the fexit peer, one
# pair of 3 s windows per row, no probe-time or loss runs, and the Go
# benchmarks once: a check before a change lands (under 10 minutes on a
# quiet machine), not figures to publish.
#
# Rates under TCG are relative, not absolute: every instruction is emulated
# and the host may be busy, so each traced window is compared with the mean
# of the untraced windows on either side of it, seconds apart in the same
# flood; the table gives the median ratio and its range over the windows.
# The probe share (the probes' part of the sending vCPU's busy time, from a
# profile of each window) is what judges the targets, since the host's drift
# does not move it. Targets are reported against, never enforced: the
# script fails only when the VM run fails or the ring-buffer accounting
# does not add up (sent != received + lost), which is a bug, not noise.
#
#   scripts/bench.sh     (bin/ctprobe and bin/ctlab must be built: make bench does it)
#   scripts/bench.sh --table DIR   prints the table of the run in DIR again (out/bench, say)
#   env: FLAVOUR (cloud), BENCH_QUICK, and the guest's knobs (see
#        scripts/bench-guest.sh): BENCH_WORKLOADS, BENCH_WINDOW, BENCH_PAIRS,
#        BENCH_SETTLE, BENCH_THREADS, BENCH_SCENARIO, BENCH_DURATION,
#        BENCH_PACED_RATE, BENCH_PACED_DURATION, BENCH_MODES,
#        BENCH_ESTABLISHED_MODES, BENCH_ATTACH, BENCH_PEERS, BENCH_PIN,
#        BENCH_CONTROL, BENCH_EXTRAS; COUNT, BENCHTIME, ... are passed on to
#        scripts/bench-go.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# num KEY FILE: a top-level number of ctlab's indented JSON.
num() { sed -n "s/^  \"$1\": \([0-9.e+-]*\),*$/\1/p" "$2" 2>/dev/null | head -n 1; }

# table DIR GO_TABLE: the table of the run in DIR (its results.tsv, by
# scripts/bench-guest.sh, and runs/), with the rows of scripts/bench-go.sh's
# table GO_TABLE; exits 2 if the ring-buffer accounting does not add up.
table() {
awk -F'\t' -v go_table="$2" -v progs="$1/runs/stats-new-fentry-timeline.progs" \
  -v tcp_segments="$(num packets "$1/runs/interleaved-tcp.flood.json")" -v tcp_writes="$(num tcp_writes "$1/runs/interleaved-tcp.flood.json")" '
function median(list,    v, n, i, j, t) {
	n = split(list, v, " ")
	if (n == 0) return ""
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j-1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function count(list,    v) { return split(list, v, " ") }
# spread: "lowest-highest" of a list.
function spread(list) { return sprintf("%.3f-%.3f", bottom(list), top(list)) }
function bottom(list,    v, n, i, lo) { n = split(list, v, " "); lo = v[1]; for (i = 2; i <= n; i++) if (v[i] + 0 < lo + 0) lo = v[i]; return lo }
function top(list,    v, n, i, hi) { n = split(list, v, " "); hi = v[1]; for (i = 2; i <= n; i++) if (v[i] + 0 > hi + 0) hi = v[i]; return hi }
function row(m, v, r) { printf "%-66s  %-38s  %s\n", m, v, r }
function flags(mode) { return mode == "default" ? "default mode" : mode == "all-timeline" ? "--all --timeline" : "--" mode }
function label(attach, mode) {
	if (mode == "bpftrace") return "bpftrace on confirm, " (attach == "kretfunc" ? "kretfunc (fexit)" : attach)
	return flags(mode) ", " (attach == "kretprobe" ? "kprobe + kretprobe (--max-active)" : attach)
}
function wname(wl) { return wl == "new" ? "new" : "est. " toupper(wl) }
function unit(wl) { return wl == "new" ? "flows" : "packets" }
# The targets of issue 22 (new flows: the first round for the default mode
# and --all); none for --all --timeline, the control and the peer.
function target(wl, mode) {
	if (mode == "control" || mode == "bpftrace" || mode == "all-timeline") return ""
	if (wl == "new") return mode == "default" ? 0.98 : 0.90
	return mode == "default" ? 1 : mode == "all" ? 0.99 : 0.98
}
# A target of 1 is met when the figure rounds to 1.00.
function verdict(v, t) { return (t == 1 ? v >= 0.995 : v >= t) ? "met" : "NOT met" }
function tshow(t) { return t == 1 ? "= 1.00" : sprintf(">= %.2f", t) }
NR == 1 { next }
{
	run = $1; attach = $2; mode = $3; rate = $4; packets = $5; sent = $6; recv = $7; lost = $8; wl = $15
	if (!(wl in seen_wl)) { seen_wl[wl] = 1; wls[++nwl] = wl }
	if ($11 != "ok") { bad[++nbad] = wl " " run " " attach " " mode ": " $11; if ($11 == "unaccounted") unaccounted = 1 }
	if (sent != "" && sent != recv + lost) unaccounted = 1
	key = wl SUBSEP attach SUBSEP mode
	if (run == "untraced") {
		# Windows are in flood order: the traced windows since the last
		# untraced one are compared with the mean of the two around them.
		if (rate > 0) {
			nones[wl] = nones[wl] " " rate
			for (i = 1; i <= npend[wl] && last[wl] > 0; i++) {
				ratios[pkey[wl, i]] = ratios[pkey[wl, i]] " " prate[wl, i] / ((last[wl] + rate) / 2)
				rates[pkey[wl, i]] = rates[pkey[wl, i]] " " prate[wl, i]
			}
			npend[wl] = 0
			last[wl] = rate
		}
	} else if (run == "startup" || run == "settle" && mode != "-") {
		# The tracer records from its start-up to its teardown: the
		# packets of those windows go with its records.
		alive = run == "startup" ? packets : alive + packets
	} else if (run == "teardown") {
		if (key == lastok) life[key] += packets
		lastok = ""
	} else if (run == "traced") {
		measured[key] = 1
		if ($11 == "ok") { pkey[wl, ++npend[wl]] = key; prate[wl, npend[wl]] = rate }
		if ($11 == "ok" && $12 != "" && rate > 0) {
			cpu[key] += $12; csec[key] += packets / rate; cpkts[key] += packets; crec[key] += sent
			life[key] += alive + packets; lastok = key
		}
		if ($11 == "ok" && $13 != "") { shares[key] = shares[key] " " $13; idles[key] = idles[key] " " $14 }
		fsent[key] += sent; flost[key] += lost; frecv[key] += recv
	} else if (run == "stats") {
		if ($9 != "" && packets > 0) { pns[key] = $9 / packets; pruns[key] = $10 / packets; spkts[key] = packets }
	} else if (run == "sustained" || run == "overload") {
		s[run] = sent; rv[run] = recv; l[run] = lost; rt[run] = rate
	}
	# lead-in, startup, teardown, settle, failed and flood rows are left out.
}
END {
	ncombos = split("none control|fentry default|kprobe default|fentry all|kprobe all|kretprobe all|fentry timeline|kprobe timeline|fentry all-timeline|kprobe all-timeline|kretfunc bpftrace|kretprobe bpftrace", combos, "|")
	row("measurement", "value", "ratio / target")
	row("-----------", "-----", "--------------")
	for (w = 1; w <= nwl; w++) {
		wl = wls[w]; tag = wname(wl) ": "
		mnone = median(nones[wl])
		if (mnone == "") { row(tag "untraced", "no untraced window succeeded", ""); continue }
		what = wl == "new" ? "new UDP flows via ClusterIP DNAT" : wl == "udp" ? "a UDP flow via DNAT (connected socket)" : "a TCP connection via DNAT (TCP_NODELAY)"
		row(tag "untraced: " what, sprintf("%.0f %s/s (median of %d windows)", mnone, unit(wl), count(nones[wl])), "1 (reference)")
		if (wl == "tcp" && tcp_segments > 0)
			row(tag "  writes per data segment (whole flood)", sprintf("%.2f", tcp_writes / tcp_segments), "(1: none coalesced; the rates count segments)")
		for (c = 1; c <= ncombos; c++) {
			split(combos[c], ca, " "); key = wl SUBSEP ca[1] SUBSEP ca[2]
			if (!(key in measured)) continue # not asked for (BENCH_*)
			name = ca[2] == "control" ? "control: the same windows, no tracer" : "traced: " label(ca[1], ca[2])
			if (ratios[key] == "") { row(tag name, "no successful window", ""); continue }
			mr = median(ratios[key]); t = target(wl, ca[2])
			if (ca[2] == "control") v = sprintf("%.3f (%s): the scatter of the bench itself", mr, spread(ratios[key]))
			else if (t == "") v = sprintf("%.3f (%s; no target)", mr, spread(ratios[key]))
			else v = sprintf("%.3f (%s) / %s  %s", mr, spread(ratios[key]), tshow(t), verdict(mr, t))
			row(tag name, sprintf("%.0f %s/s (median of %d)", median(rates[key]), unit(wl), count(rates[key])), v)
		}
		# The in-window profiles: the share of the sending vCPU busy time
		# spent in the probes, which drift of the host does not move (for
		# the control window it must be zero); 1 - share is the rate the
		# probes leave.
		for (c = 1; c <= ncombos; c++) {
			split(combos[c], ca, " "); key = wl SUBSEP ca[1] SUBSEP ca[2]
			if (shares[key] == "") continue
			ms = median(shares[key]); t = target(wl, ca[2])
			value = sprintf("%.1f%% of busy time (median of %d; idle %.1f%%)", 100 * ms, count(shares[key]), 100 * median(idles[key]))
			if (ca[2] == "control") v = top(shares[key]) == 0 ? "no probes: 0, as it must be" : "NOT 0: the classifier counts other work as the probes"
			else if (t == "") v = sprintf("1 - share %.3f (%.3f-%.3f; no target)", 1 - ms, 1 - top(shares[key]), 1 - bottom(shares[key]))
			else v = sprintf("1 - share %.3f (%.3f-%.3f) / %s  %s", 1 - ms, 1 - top(shares[key]), 1 - bottom(shares[key]), tshow(t), verdict(1 - ms, t))
			row(tag "probe share, sending vCPU: " (ca[2] == "control" ? "control" : label(ca[1], ca[2])), value, v)
		}
		# The peer: ctprobe --all against the one-liner attached the same
		# way, per packet (probe share) and in what each records.
		npairs = split("fentry kretfunc|kprobe kretprobe|kretprobe kretprobe", pairs_, "|")
		for (p = 1; p <= npairs; p++) {
			split(pairs_[p], pa, " ")
			ck = wl SUBSEP pa[1] SUBSEP "all"; pk = wl SUBSEP pa[2] SUBSEP "bpftrace"
			if (shares[ck] == "" || shares[pk] == "") continue
			cs = median(shares[ck]); ps = median(shares[pk])
			row(tag "peer: ctprobe " label(pa[1], "all") " vs bpftrace, " (pa[2] == "kretfunc" ? "kretfunc" : pa[2]),
				sprintf("probe share %.1f%% vs %.1f%%", 100 * cs, 100 * ps), sprintf("ctprobe no higher: %s", cs <= ps ? "met" : "NOT met"))
			if (life[ck] > 0 && life[pk] > 0)
				row(tag "  what each records per new flow", sprintf("ctprobe %.2f records, bpftrace %.2f counts", crec[ck] / life[ck], crec[pk] / life[pk]),
					"(record: tuples, NAT, verdict, process, netns)")
		}
		for (c = 1; c <= ncombos; c++) {
			split(combos[c], ca, " "); key = wl SUBSEP ca[1] SUBSEP ca[2]
			if (ca[2] == "control" || !(key in csec) || csec[key] == 0) continue
			# The records of the traced window: the tracer'"'"'s records
			# over its life, in proportion to the window'"'"'s packets.
			per = crec[key] > 0 && life[key] > 0 && ca[2] != "bpftrace" ? sprintf(", %.1f us per record", cpu[key] * 1000 / (crec[key] * cpkts[key] / life[key])) : ""
			row(tag (ca[2] == "bpftrace" ? "" : "ctprobe ") "CPU time (user + system): " label(ca[1], ca[2]), sprintf("%.0f ms per s%s", cpu[key] / csec[key], per), "(no target)")
		}
		pktns = 1e9 / mnone
		for (c = 1; c <= ncombos; c++) {
			split(combos[c], ca, " "); key = wl SUBSEP ca[1] SUBSEP ca[2]
			if (!(key in pns)) continue
			row(tag "probe time per " (wl == "new" ? "flow" : "packet") ": " label(ca[1], ca[2]), sprintf("%.2f us in %.2f program runs", pns[key] / 1000, pruns[key]),
				sprintf("%.3f of an untraced %s (%.1f us)", pns[key] / pktns, wl == "new" ? "flow" : "packet", pktns / 1000))
			if (wl == "new" && ca[1] == "fentry" && ca[2] == "timeline" && spkts[key] > 0)
				while ((getline line < progs) > 0) {
					split(line, pf, "\t")
					row("  of which " pf[1], sprintf("%.1f us in %.1f runs", pf[2] / spkts[key] / 1000, pf[3] / spkts[key]), "")
				}
		}
		for (c = 1; c <= ncombos; c++) {
			split(combos[c], ca, " "); key = wl SUBSEP ca[1] SUBSEP ca[2]
			if (ca[2] !~ /^all/ || fsent[key] == 0) continue
			row(tag "loss at full speed: " label(ca[1], ca[2]) ", default ring", sprintf("lost %d of %d records", flost[key], fsent[key]),
				fsent[key] == frecv[key] + flost[key] ? "sent = received + lost" : "UNACCOUNTED")
		}
	}
	if ("sustained" in s) {
		row(sprintf("new: loss at %.0f flows/s: fentry, --all, default ring", rt["sustained"]), sprintf("lost %d of %d records", l["sustained"], s["sustained"]),
			sprintf("0 lost: %s", l["sustained"] == 0 && s["sustained"] == rv["sustained"] ? "met" : "NOT met"))
	}
	if ("overload" in s) {
		row("new: overload: fentry, --all, --ring-size 4096", sprintf("lost %d of %d records", l["overload"], s["overload"]),
			sprintf("lost > 0, sent = received + lost: %s", l["overload"] > 0 && s["overload"] == rv["overload"] + l["overload"] ? "yes" : "NO"))
	}
	n = split(go_table, gl, "\n")
	for (i = 1; i <= n; i++) {
		split(gl[i], f, " ")
		if (f[2] !~ /^[0-9.]+$/) continue
		row("user space (Go, 1 core): " f[1], sprintf("%.0f events/s, %s ns/event", f[2], f[3]), sprintf("%s allocs/event", f[4]))
	}
	for (i = 1; i <= nbad; i++) print "problem: " bad[i]
	exit unaccounted ? 2 : 0
}' "$1/results.tsv"
}

if [ "${1:-}" = --table ]; then
  [ -s "${2:-}/results.tsv" ] || { echo "bench.sh: --table DIR: no results.tsv in '${2:-}'" >&2; exit 2; }
  table "$2" ""
  exit
fi
[ -x bin/ctprobe ] && [ -x bin/ctlab ] || { echo "bench.sh: bin/ctprobe or bin/ctlab missing: run make bench" >&2; exit 1; }
flavour=${FLAVOUR:-cloud}
out=out/bench
minutes=60
if [ "${BENCH_QUICK:-}" = 1 ]; then
  out=out/bench-quick minutes=10
  : "${BENCH_ATTACH:=fentry}" "${BENCH_MODES:=default all timeline}" "${BENCH_ESTABLISHED_MODES:=default all timeline}"
  : "${BENCH_PEERS:=kretfunc}" "${BENCH_PAIRS:=1}" "${BENCH_WINDOW:=3s}" "${BENCH_SETTLE:=2s}" "${BENCH_EXTRAS:=0}" "${COUNT:=1}"
  export COUNT
fi

host_cpus=$(nproc)
host_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
host_load=$(cut -d' ' -f1-3 /proc/loadavg)
qemu_version=$(qemu-system-x86_64 --version 2>/dev/null | sed -n '1s/.*version \([^ ]*\).*/\1/p')
started=$(date +%s)

kdir=$(scripts/vm/fetch-kernel.sh "$flavour" | tail -n 1)
initrd=.cache/vm/bench-$flavour.cpio.gz
# perf: each window's profile of the sending vCPU; bpftrace: the peer
# (scripts/bench-guest.sh). bpftrace brings LLVM and clang, about 200 MB
# unpacked, which the guest's 2 GiB hold.
scripts/deps.sh linux-perf bpftrace
scripts/vm/build-initramfs.sh --kernel-dir "$kdir" --out "$initrd" --prog perf --prog bpftrace \
  --add bin/ctprobe:/bin/ctprobe --add bin/ctlab:/bin/ctlab --run scripts/bench-guest.sh >&2
env_args=()
for v in BENCH_WORKLOADS BENCH_WINDOW BENCH_PAIRS BENCH_SETTLE BENCH_THREADS BENCH_SCENARIO BENCH_DURATION BENCH_PACED_RATE \
  BENCH_PACED_DURATION BENCH_MODES BENCH_ESTABLISHED_MODES BENCH_ATTACH BENCH_PEERS BENCH_PIN BENCH_CONTROL BENCH_EXTRAS BENCH_PROFILE_TOP; do
  [ -n "${!v:-}" ] && env_args+=(--env "$v=${!v}")
done
echo "bench.sh: booting the VM (about $minutes minutes on a quiet host; progress below, console in $out/serial.log)" >&2
# tsc=reliable: the guest reads time from the TSC, as nodes do. Under TCG its
# TSC sync check fails and the kernel falls back to HPET, whose every read is
# an emulated device access: 5-7 us for each bpf_ktime_get_ns of a probe in
# the VM lab (BPF statistics on 6.1), where a node's TSC read takes tens of
# nanoseconds. The kernel's own clock reads cost less too.
rc=0
scripts/vm/run.sh --kernel-dir "$kdir" --initrd "$initrd" --out "$out" --timeout 7200 --disk-size 1024 --append tsc=reliable ${env_args[@]+"${env_args[@]}"} |
  grep --line-buffered -E '^(bench:|ctprobe-vm:|run\.sh:)' >&2 || rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ] || [ ! -s "$out/results.tsv" ]; then
  echo "bench.sh: the VM run failed (rc $rc; see $out/serial.log)" >&2
  exit 1
fi
kver=$(cat "$kdir/kver" 2>/dev/null || basename "$kdir")

go_table=
echo "bench.sh: scripts/bench-go.sh (user-space benchmarks)" >&2
if ! go_table=$(OUT="$out" scripts/bench-go.sh); then
  echo "bench.sh: scripts/bench-go.sh failed; its rows are left out" >&2
  go_table=
fi

echo
echo "ctprobe overhead ($(date -u +%Y-%m-%d), ctprobe $(git describe --always --dirty 2>/dev/null || echo '?'), $((($(date +%s) - started + 59) / 60)) minutes):"
echo "host $host_cpus CPUs ($host_model, load average $host_load at start);"
echo "VM: Debian $kver under QEMU ${qemu_version:-?} TCG (software emulation), 2 vCPUs, clocksource $(cat "$out/clocksource" 2>/dev/null || echo '?');"
echo "peer: $(head -n 1 "$out/runs/bpftrace.version" 2>/dev/null || echo 'no bpftrace')."
echo "TCG rates are relative, not absolute: compare the ratios. One flood per workload on a topology of its own, cut"
echo "into windows of ${BENCH_WINDOW:-4s}; each traced window against the mean of the untraced windows on either side"
echo "(${BENCH_PAIRS:-4} per row; median, with the lowest-highest range). Left out: the tracer's start-up and teardown,"
echo "in which the flood pauses (attaching under load crashes TCG guests), and ${BENCH_SETTLE:-3s} of settling after each."
if [ "${BENCH_PIN:-1}" = 1 ]; then
  echo "Pinned: the flood's sender thread on vCPU 0, which bears the probes' per-packet cost; the tracer, the lab's"
  echo "responders and sinks and the rest of ctlab on vCPU 1 (the tracer's CPU time is its own row)."
else
  echo "Not pinned (BENCH_PIN=0): ctprobe's reader takes its CPU time from the flood's own vCPUs."
fi
echo "Judged by the probe share (1 - share: the sending CPU left to the traffic), with the rate ratio beside it."
echo
table "$out" "$go_table" | tee "$out/table.txt"
status=${PIPESTATUS[0]}
if [ "$status" -eq 2 ]; then
  echo "bench.sh: ring-buffer accounting does not add up (sent != received + lost): see $out/results.tsv" >&2
fi
exit "$status"
