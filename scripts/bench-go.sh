#!/usr/bin/env bash
# User-space throughput: the Go benchmarks of decode and correlate over a
# synthetic busy-node capture (tracer/stream/streamtest), on one core,
# COUNT times each, and a table of the medians:
#
#   benchmark  events/s  ns/event  allocs/event
#
# allocs/event is the exact average (allocs/op rounds down); the allocations
# it shows are those of the incidents (tracer/stream/alloc_test.go asserts
# that nothing else allocates). The raw `go test` output is kept in
# $OUT/bench-go.txt (for benchstat, say). Timings on a shared machine are
# noisy: this measures, it never fails on a number.
#
# Environment: GO (go), COUNT (5), BENCH (.), BENCHTIME (1s), OUT (out).
# With a file argument, it only prints the table for that `go test -bench`
# output (to compare runs made otherwise, say before and after a change).
set -euo pipefail
raw=${1:+$(realpath "$1")}
cd "$(dirname "$0")/.."

if [ -z "$raw" ]; then
	GO=${GO:-go}
	COUNT=${COUNT:-5}
	BENCH=${BENCH:-.}
	BENCHTIME=${BENCHTIME:-1s}
	OUT=${OUT:-out}
	PKGS=(./tracer/stream/ ./tracer/event/ ./tracer/incident/)
	mkdir -p "$OUT"
	raw="$OUT/bench-go.txt"
	echo "bench-go: ${PKGS[*]} -cpu 1 -count $COUNT -benchtime $BENCHTIME (raw output: $raw)" >&2
	"$GO" test -run='^$' -bench="$BENCH" -benchmem -cpu 1 -count "$COUNT" -benchtime "$BENCHTIME" "${PKGS[@]}" >"$raw" || {
		cat "$raw" >&2
		exit 1
	}
fi

# One row per benchmark, in the order they ran. A benchmark that does not
# report events/s itself has one event per op (event.Decode, Correlator).
awk '
function median(list,    v, n, i, j, t) {
	n = split(list, v, " ")
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j-1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
/^pkg: / { pkg = $2; sub(/.*\//, "", pkg) }
/^Benchmark/ {
	name = $1
	sub(/^Benchmark/, "", name)
	sub(/-[0-9]+$/, "", name)
	name = pkg "/" name
	delete m
	for (i = 3; i < NF; i += 2) m[$(i + 1)] = $i
	if (!("events/s" in m)) {
		m["events/s"] = 1e9 / m["ns/op"]
		m["ns/event"] = m["ns/op"]
		m["allocs/event"] = m["allocs/op"]
	}
	if (!(name in seen)) { seen[name] = 1; order[++rows] = name }
	eps[name] = eps[name] " " m["events/s"]
	nse[name] = nse[name] " " m["ns/event"]
	ape[name] = ape[name] " " m["allocs/event"]
	runs[name]++
}
END {
	if (rows == 0) { print "bench-go: no benchmark results" > "/dev/stderr"; exit 1 }
	printf "%-32s %14s %10s %13s  %s\n", "benchmark", "events/s", "ns/event", "allocs/event", "(median of)"
	for (r = 1; r <= rows; r++) {
		n = order[r]
		printf "%-32s %14.0f %10.1f %13.4f  %d\n", n, median(eps[n]), median(nse[n]), median(ape[n]), runs[n]
	}
}' "$raw"
