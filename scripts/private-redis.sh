# Sourced by test.sh and bench.sh: starts a private redis-server on a free
# loopback port without persistence, waits until it answers, and stops it
# (and removes its directory) when the sourcing script exits. Sets $port
# and $dir (a temporary directory the caller may also use).
port=$(/usr/bin/python3 -I -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
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
