#!/usr/bin/env bash
# Installs what the tests need, from Debian's packages by name: gcc and
# libc6-dev (go test -race needs cgo), redis-server, redis-sentinel and
# redis-tools (redis-cli, which builds the tests' local Redis Cluster),
# openssl, Debian's python3 with Kombu, Celery and redis-py. Idempotent and
# quiet when everything is already there. The Python probes run isolated
# (-I) from a neutral directory and read a real attribute: from the
# repository root, our Go folders celery/ and redis/ would otherwise import
# as empty namespace packages and hide a missing package.
set -euo pipefail

need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc)
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools) # redis-cli --cluster create (testenv.StartCluster)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
probe() { (cd / && /usr/bin/python3 -I -c "import $1; $1.__version__" >/dev/null 2>&1); }
if [ -x /usr/bin/python3 ]; then
	probe kombu || need+=(python3-kombu)
	probe celery || need+=(python3-celery)
	probe redis || need+=(python3-redis)
else
	need+=(python3 python3-kombu python3-celery python3-redis)
fi

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
	sudo="sudo"
fi
echo "deps: installing ${need[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package scripts may start a system redis-server; the tests use their own.
