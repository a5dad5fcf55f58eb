#!/usr/bin/env bash
# Installs what the tests need, from Debian's packages: redis-server (and
# redis-sentinel), Debian's python3 with Kombu, Celery and redis-py, and
# openssl. Idempotent and quiet when everything is already there.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -x /usr/bin/python3 ] || need+=(python3)
if [ -x /usr/bin/python3 ]; then
	/usr/bin/python3 -c 'import kombu' >/dev/null 2>&1 || need+=(python3-kombu)
	/usr/bin/python3 -c 'import celery' >/dev/null 2>&1 || need+=(python3-celery)
	/usr/bin/python3 -c 'import redis' >/dev/null 2>&1 || need+=(python3-redis)
else
	need+=(python3-kombu python3-celery python3-redis)
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
