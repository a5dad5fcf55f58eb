#!/usr/bin/env bash
# make bench: start a private redis-server on a free loopback port (no
# persistence), measure kombu-go (Go testing.B), Python Kombu (Debian's
# python3-kombu) and redis-benchmark on the same workloads against it in one
# run, print one Markdown table and save it under bench/results/ (file name:
# date, core count, redis version). Extra arguments go to `go run ./bench`
# (-reps, -benchtime, -quick). Takes about 4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
command -v redis-benchmark >/dev/null 2>&1 || { echo "bench: redis-benchmark is missing (Debian: redis-tools)"; exit 1; }

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
	--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
cleanup() {
	if [ -f "$dir/redis.pid" ]; then
		kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
	if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
	sleep 0.1
done
redis-cli -p "$port" ping >/dev/null

go run ./bench -url "redis://127.0.0.1:$port/0" -out bench/results -python /usr/bin/python3 "$@"
