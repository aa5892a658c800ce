#!/usr/bin/env bash
# Run every Go fuzz target in the repository briefly (default 50000 executions each): each
# one decodes bytes from outside (ring buffer records, capture files, DNS).
#   scripts/fuzz.sh [FUZZTIME]   (an execution count such as 50000x; see the Makefile)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-50000x}
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
  pkg=./$(dirname "${file#./}")
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
    echo "fuzz $pkg $target ($fuzztime)"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg"
  done
done
