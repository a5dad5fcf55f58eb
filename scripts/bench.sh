#!/usr/bin/env bash
# make bench: start a private redis-server on a free loopback port (no
# persistence), measure kombu-go (Go testing.B), Python Kombu and Celery
# (Debian's python3-kombu and python3-celery) and redis-benchmark on the same
# workloads against it in one run, print one Markdown table and save it under
# bench/results/ (file name: date, core count, redis version). Extra arguments
# go to `go run ./bench` (-reps, -benchtime, -quick, -groups). Takes about 6
# minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
command -v redis-benchmark >/dev/null 2>&1 || { echo "bench: redis-benchmark is missing (Debian: redis-tools)"; exit 1; }

source scripts/private-redis.sh

go run ./bench -url "redis://127.0.0.1:$port/0" -out bench/results -python /usr/bin/python3 "$@"
