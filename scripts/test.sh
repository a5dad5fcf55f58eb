#!/usr/bin/env bash
# make test: install dependencies, bring in the second Python version set,
# start a private redis-server on a free loopback port, run every check and
# test against it, then the interop tests again against the second set,
# stop the server.
#
# Version sets: "bookworm" is the system's python3-kombu 5.2.4,
# python3-celery 5.2.6, python3-redis 4.3.4; "trixie" is Kombu 5.5.3,
# Celery 5.5.2, redis-py 6.1.0 unpacked under .cache/pysets by
# scripts/pysets.sh. The whole suite runs once with bookworm's; every test
# that ran Python (it logs testenv's marker) runs again with trixie's.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
trixie=$(bash scripts/pysets.sh trixie) || { echo "make test: the trixie Python set is needed for the interop matrix (see above)"; exit 1; }

source scripts/private-redis.sh

export KOMBU_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
export KOMBU_REQUIRE_INTEGRATION=1
unset KOMBU_PYSET KOMBU_PYSET_PATH

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
go build -o "$dir/testreport" ./internal/testreport

echo "== go test -race, Python set bookworm (redis-server $(redis-server --version | awk '{print $3}') on port $port)"
set +e
go test -race -count=1 -timeout 20m -json ./... >"$dir/bookworm.json" 2>&1
status=$?
"$dir/testreport" -totals=false "$dir/bookworm.json"
rstatus=$?
set -e
if [ "$status" -ne 0 ] || [ "$rstatus" -ne 0 ]; then
	"$dir/testreport" -brief "$dir/bookworm.json" | tail -1
	exit 1
fi

echo "== go test -race, the tests that ran Python, again with Python set trixie"
"$dir/testreport" -python-tests "$dir/python-tests.txt" "$dir/bookworm.json"
pkgs=$(cut -f1 "$dir/python-tests.txt" | tr '\n' ' ')
names=$(cut -f2 "$dir/python-tests.txt" | sed 's/^\^(//; s/)\$$//' | tr '\n' '|' | sed 's/|$//')
if [ -z "$pkgs" ]; then
	echo "no test ran Python: the interop suite is missing"; exit 1
fi
set +e
KOMBU_PYSET=trixie KOMBU_PYSET_PATH="$trixie" \
	go test -race -count=1 -timeout 20m -json -run "^($names)\$" $pkgs >"$dir/trixie.json" 2>&1
status=$?
"$dir/testreport" -totals=false "$dir/trixie.json"
rstatus=$?
set -e
if [ "$status" -ne 0 ] || [ "$rstatus" -ne 0 ]; then
	"$dir/testreport" -brief "$dir/bookworm.json" "$dir/trixie.json" | tail -1
	exit 1
fi

echo "== fuzz (short: 50,000 inputs per target)"
bash scripts/fuzz.sh 50000x
echo "== summary (both runs)"
"$dir/testreport" -brief "$dir/bookworm.json" "$dir/trixie.json"
