#!/usr/bin/env bash
# Runs every fuzz target for a while. The argument is go test's -fuzztime
# per target: a duration (60s) or a number of inputs (50000x). make test
# uses a number: with a duration, Go's fuzz coordinator can race its own
# deadline on a loaded machine and fail with a bare "context deadline
# exceeded" that is no finding (no failing input is written); a run that
# fails only that way is tried once more.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-50000x}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $f ($t)"
		ok=1
		for attempt in 1 2; do
			if out=$(go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" 2>&1); then
				ok=1
				break
			fi
			ok=0
			if ! grep -q 'context deadline exceeded' <<<"$out" || grep -q 'Failing input written' <<<"$out"; then
				break
			fi
			echo "  (the fuzz coordinator's deadline race, no finding: trying once more)"
		done
		if [ "$ok" = 0 ]; then
			# Show why: the failing input, the message, and where the
			# fuzzer wrote the input (under the package's testdata/fuzz).
			echo "$out" | tail -n 40
			echo "FAIL: fuzz target $f in $pkg"
			exit 1
		fi
	done
done
