#!/usr/bin/env bash
# make test: install dependencies, start a private redis-server on a free
# loopback port, run every check and test against it, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

source scripts/private-redis.sh

export KOMBU_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
export KOMBU_REQUIRE_INTEGRATION=1

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== go test -race (redis-server $(redis-server --version | awk '{print $3}') on port $port)"
log="$dir/go-test.log"
set +e
go test -race -count=1 -timeout 20m -v ./... >"$log" 2>&1
status=$?
set -e
grep -E '^(ok|FAIL|panic:)' "$log" || true
if [ "$status" -ne 0 ]; then
	echo "== failures"
	grep -E -B3 -A40 -- '--- FAIL|^panic:|build failed|\[setup failed\]' "$log" | head -400
fi
passed=$(grep -cE -- '^ *--- PASS' "$log" || true)
failed=$(grep -cE -- '^ *--- FAIL' "$log" || true)
skipped=$(grep -cE -- '^ *--- SKIP' "$log" || true)
if [ "$skipped" -gt 0 ]; then
	echo "== skipped (capabilities a backend does not promise; run go test -v for the reasons)"
	grep -E -- '^ *--- SKIP' "$log" | sed 's/^ */  /' | head -60
fi
if [ "$status" -ne 0 ]; then
	echo "tests: $passed passed, $failed failed, $skipped skipped"
	exit "$status"
fi
echo "== fuzz (short: 50,000 inputs per target)"
bash scripts/fuzz.sh 50000x
echo "tests: $passed passed, $failed failed, $skipped skipped"
