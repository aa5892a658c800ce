#!/usr/bin/env bash
# Runs `go test -v ARGS...` with its output streamed and kept in LOG, and on
# failure repeats the output of each failed test at the end. With -v, a
# test's messages are printed where it ran, long before the verdicts; CI
# shows the end of a log.
#   scripts/gotest.sh LOG [go test arguments]
set -uo pipefail
log=$1
shift
mkdir -p "$(dirname "$log")"
"${GO:-go}" test -v "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
	echo "=== the output of each failed test again (whole log: $log)"
	"$(dirname "$0")/failed-tests.awk" "$log"
fi
exit "$rc"
