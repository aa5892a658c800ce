#!/usr/bin/env bash
# make bench: what ctprobe costs. Boots the VM lab (a Debian kernel under QEMU
# TCG) with scripts/bench-guest.sh, which measures the rate of new UDP flows
# through a DNAT'd ClusterIP with no tracer, with ctprobe's default mode, with
# --timeline and with --all (fentry and kprobe), each traced run between two
# untraced ones, plus loss at a
# sustained rate and under overload. Then runs scripts/bench-go.sh (user-space
# decode/correlate benchmarks) if it exists, and prints one table.
#
# Rates under TCG are relative, not absolute: every instruction is emulated
# and the host may be busy, so only ratios measured within one run mean
# anything. The targets (default mode >= 98% of the untraced rate, --all >=
# 90%; --timeline, opt-in, has none) are reported against, never enforced.
# The script fails only when the VM run fails or the ring-buffer accounting
# does not add up (sent != received + lost), which is a bug, not noise.
#
#   scripts/bench.sh     (bin/ctprobe and bin/ctlab must be built: make bench does it)
#   env: FLAVOUR (cloud), BENCH_ROUNDS (5), BENCH_DURATION (4s), BENCH_THREADS (1),
#        BENCH_SCENARIO (endpoints-2), BENCH_PACED_RATE (300), BENCH_PACED_DURATION (5s);
#        COUNT, BENCHTIME, ... are passed on to scripts/bench-go.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bin/ctprobe ] && [ -x bin/ctlab ] || { echo "bench.sh: bin/ctprobe or bin/ctlab missing: run make bench" >&2; exit 1; }
flavour=${FLAVOUR:-cloud}
out=out/bench

host_cpus=$(nproc)
host_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
host_load=$(cut -d' ' -f1-3 /proc/loadavg)
qemu_version=$(qemu-system-x86_64 --version 2>/dev/null | sed -n '1s/.*version \([^ ]*\).*/\1/p')

kdir=$(scripts/vm/fetch-kernel.sh "$flavour" | tail -n 1)
initrd=.cache/vm/bench-$flavour.cpio.gz
scripts/vm/build-initramfs.sh --kernel-dir "$kdir" --out "$initrd" \
  --add bin/ctprobe:/bin/ctprobe --add bin/ctlab:/bin/ctlab --run scripts/bench-guest.sh >&2
env_args=()
for v in BENCH_ROUNDS BENCH_DURATION BENCH_THREADS BENCH_SCENARIO BENCH_PACED_RATE BENCH_PACED_DURATION; do
  [ -n "${!v:-}" ] && env_args+=(--env "$v=${!v}")
done
echo "bench.sh: booting the VM (about 5 minutes; progress below, console in $out/serial.log)" >&2
rc=0
scripts/vm/run.sh --kernel-dir "$kdir" --initrd "$initrd" --out "$out" --timeout 1800 ${env_args[@]+"${env_args[@]}"} |
  grep --line-buffered -E '^(bench:|ctprobe-vm:|run\.sh:)' >&2 || rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ] || [ ! -s "$out/results.tsv" ]; then
  echo "bench.sh: the VM run failed (rc $rc; see $out/serial.log)" >&2
  exit 1
fi
kver=$(cat "$kdir/kver" 2>/dev/null || basename "$kdir")

go_table=
if [ -x scripts/bench-go.sh ]; then
  echo "bench.sh: scripts/bench-go.sh (user-space benchmarks)" >&2
  if ! go_table=$(OUT="$out" scripts/bench-go.sh); then
    echo "bench.sh: scripts/bench-go.sh failed; its rows are left out" >&2
    go_table=
  fi
fi

echo
echo "ctprobe overhead: host $host_cpus CPUs ($host_model, load average $host_load at start);"
echo "VM: Debian $kver under QEMU ${qemu_version:-?} TCG (software emulation), 2 vCPUs."
echo "TCG rates are relative, not absolute: compare the ratios (each traced run against the mean of the untraced runs around it; medians, with the lowest-highest range)."
echo
awk -F'\t' -v go_table="$go_table" -v progs="$out/runs/stats-fentry-timeline.progs" '
function median(list,    v, n, i, j, t) {
	n = split(list, v, " ")
	if (n == 0) return ""
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j-1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function count(list,    v) { return split(list, v, " ") }
# spread: "lowest-highest" of a list.
function spread(list,    v, n, i, lo, hi) {
	n = split(list, v, " ")
	lo = hi = v[1]
	for (i = 2; i <= n; i++) { if (v[i] + 0 < lo + 0) lo = v[i]; if (v[i] + 0 > hi + 0) hi = v[i] }
	return sprintf("%.2f-%.2f", lo, hi)
}
function row(m, v, r) { printf "%-54s  %-36s  %s\n", m, v, r }
function label(attach, mode) { return attach (mode == "default" ? ", default mode" : ", --" mode) }
NR == 1 { next }
{
	run = $1; attach = $2; mode = $3; rate = $4; flows = $5; sent = $6; recv = $7; lost = $8
	if ($11 != "ok") { bad[++nbad] = run " " attach " " mode ": " $11; if ($11 == "unaccounted") unaccounted = 1 }
	if (attach == "none") {
		if (rate != "") {
			nones = nones " " rate
			# The traced run before this one: compare it with the mean of
			# the untraced runs on either side.
			if (pkey != "" && none > 0) {
				ratios[pkey] = ratios[pkey] " " prate / ((none + rate) / 2)
				rates[pkey] = rates[pkey] " " prate
			}
			none = rate
		}
		pkey = ""
		next
	}
	if (sent != "" && sent != recv + lost) unaccounted = 1
	key = attach SUBSEP mode
	pkey = ""
	if (run ~ /^r[0-9]+$/) {
		if (rate != "") { pkey = key; prate = rate }
		fsent[key] += sent; flost[key] += lost; frecv[key] += recv
	} else if (run == "stats") {
		if ($9 != "" && flows > 0) { pns[key] = $9 / flows; pruns[key] = $10 / flows; sflows[key] = flows }
	} else {
		s[run] = sent; rv[run] = recv; l[run] = lost; fl[run] = flows; rt[run] = rate
	}
}
END {
	row("measurement", "value", "ratio / target")
	row("-----------", "-----", "--------------")
	mnone = median(nones)
	if (mnone == "") { print "no untraced run succeeded" > "/dev/stderr"; exit 1 }
	row("untraced: new UDP flows via ClusterIP DNAT", sprintf("%.0f flows/s (median of %d)", mnone, count(nones)), "1 (reference)")
	ncombos = split("fentry default|fentry timeline|fentry all|kprobe default|kprobe timeline|kprobe all", combos, "|")
	for (c = 1; c <= ncombos; c++) {
		split(combos[c], ca, " "); key = ca[1] SUBSEP ca[2]
		if (ratios[key] == "") { row("traced: " label(ca[1], ca[2]), "no successful run", ""); continue }
		mr = median(ratios[key])
		if (ca[2] == "timeline") verdict = sprintf("%.3f (%s; opt-in, no target)", mr, spread(ratios[key]))
		else {
			target = ca[2] == "all" ? 0.90 : 0.98
			verdict = sprintf("%.3f (%s) / >= %.2f  %s", mr, spread(ratios[key]), target, mr >= target ? "met" : "NOT met")
		}
		row("traced: " label(ca[1], ca[2]), sprintf("%.0f flows/s (median of %d)", median(rates[key]), count(rates[key])), verdict)
	}
	flowns = 1e9 / mnone
	for (c = 1; c <= ncombos; c++) {
		split(combos[c], ca, " "); key = ca[1] SUBSEP ca[2]
		if (!(key in pns)) continue
		row("probe time per flow: " label(ca[1], ca[2]), sprintf("%.1f us in %.1f program runs", pns[key] / 1000, pruns[key]),
			sprintf("%.3f of an untraced flow (%.0f us)", pns[key] / flowns, flowns / 1000))
		if (ca[1] == "fentry" && ca[2] == "timeline" && sflows[key] > 0)
			while ((getline line < progs) > 0) {
				split(line, pf, "\t")
				row("  of which " pf[1], sprintf("%.1f us in %.1f runs", pf[2] / sflows[key] / 1000, pf[3] / sflows[key]), "")
			}
	}
	for (c = 1; c <= ncombos; c++) {
		split(combos[c], ca, " "); key = ca[1] SUBSEP ca[2]
		if (ca[2] != "all" || !(key in fsent)) continue
		row("loss at full speed: " ca[1] ", --all, default ring", sprintf("lost %d of %d records", flost[key], fsent[key]),
			fsent[key] == frecv[key] + flost[key] ? "sent = received + lost" : "UNACCOUNTED")
	}
	if ("sustained" in s) {
		row(sprintf("loss at %.0f flows/s: fentry, --all, default ring", rt["sustained"]), sprintf("lost %d of %d records", l["sustained"], s["sustained"]),
			sprintf("0 lost: %s", l["sustained"] == 0 && s["sustained"] == rv["sustained"] ? "met" : "NOT met"))
	}
	if ("overload" in s) {
		row("overload: fentry, --all, --ring-size 4096", sprintf("lost %d of %d records", l["overload"], s["overload"]),
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
}' "$out/results.tsv" | tee "$out/table.txt"
status=${PIPESTATUS[0]}
if [ "$status" -eq 2 ]; then
  echo "bench.sh: ring-buffer accounting does not add up (sent != received + lost): see $out/results.tsv" >&2
fi
exit "$status"
