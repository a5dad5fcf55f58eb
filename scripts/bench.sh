#!/usr/bin/env bash
# make bench: a private redis-server on a free loopback port, then kombu-go
# (testing.Benchmark), redis-benchmark and Python Kombu on the same
# workloads in one run; prints one Markdown table and saves it under
# bench/results/. Extra arguments go to the Go harness (e.g. -quick).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
	--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
cleanup() {
	if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
	if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
	sleep 0.1
done
go run ./bench -url "redis://127.0.0.1:$port/0" -out bench/results "$@"
