#!/usr/bin/env bash
# Runs every fuzz target for a short time (argument: duration per target).
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $f ($t)"
		if ! out=$(go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" 2>&1); then
			# Show why: the failing input, the message, and where the
			# fuzzer wrote the input (under the package's testdata/fuzz).
			echo "$out" | tail -n 40
			echo "FAIL: fuzz target $f in $pkg"
			exit 1
		fi
	done
done
