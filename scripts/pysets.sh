#!/usr/bin/env bash
# pysets.sh SET: makes the Python version set SET available for the interop
# tests and prints the directory to put first on sys.path (KOMBU_PYSET_PATH).
#
#   trixie   Kombu 5.5.3, Celery 5.5.2, redis-py 6.1.0 and their pure-Python
#            dependencies, from Debian trixie.
#
# The system's apt configuration is not touched: apt-get runs with a
# private sources list, package lists and state under .cache/pysets/SET,
# naming the suite on the Debian mirror this machine's own apt sources use;
# the packages are downloaded with `apt-get download` and unpacked with
# `dpkg -x` into the same folder. Bookworm's python3 runs them (they are
# pure Python). Idempotent: a complete set is reused without a network call.
# A set that cannot be fetched is an error that says why.
set -euo pipefail
cd "$(dirname "$0")/.."

set_name=${1:?usage: scripts/pysets.sh trixie}
case "$set_name" in
trixie)
	suite=trixie
	# The top-level packages; their python3-* dependencies are followed.
	roots="python3-kombu python3-celery python3-redis"
	want="kombu=5.5 celery=5.5 redis=6."
	;;
*)
	echo "pysets: unknown set '$set_name' (known: trixie)" >&2
	exit 2
	;;
esac

top=$PWD/.cache/pysets/$set_name
site=$top/root/usr/lib/python3/dist-packages
if [ -f "$top/.complete" ] && [ -d "$site" ]; then
	echo "$site"
	exit 0
fi

fail() {
	echo "pysets: cannot bring in the $set_name set: $*" >&2
	exit 1
}

# The mirror this machine already uses for Debian (deb822 or one-line sources).
mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
	grep -E '^(URIs:|deb )' | grep -oE '(https?|file)://[^ ]+' | grep -v -- '-security' | head -1 || true)
[ -n "$mirror" ] || fail "no Debian mirror found in this machine's apt sources (/etc/apt/sources.list*)"

rm -rf "$top"
apt=$top/apt
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/etc" "$top/debs" "$top/root"
touch "$apt/status"
echo "deb $mirror $suite main" >"$apt/etc/sources.list"
opts=(
	-o "Dir::Etc::SourceList=$apt/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
	-o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=$apt/status"
	-o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root
)
echo "pysets: fetching the $set_name package lists ($suite main)" >&2
apt-get "${opts[@]}" -qq update >"$top/apt.log" 2>&1 || fail "apt-get update failed: $(tail -3 "$top/apt.log")"

# Follow python3-* dependencies (first alternative); packages that are not
# Architecture: all hold extensions built for another Python and are left
# to the system (none of them is needed to import Kombu, Celery or redis).
todo=$roots
seen=" "
get=()
while [ -n "${todo// /}" ]; do
	read -r p todo <<<"$todo"
	case "$seen" in *" $p "*) continue ;; esac
	seen="$seen$p "
	info=$(apt-cache "${opts[@]}" show --no-all-versions "$p" 2>/dev/null) || fail "package $p is not in $suite"
	arch=$(awk '/^Architecture:/ {print $2; exit}' <<<"$info")
	[ "$arch" = all ] || continue
	get+=("$p")
	deps=$(awk -F': ' '/^(Pre-)?Depends:/ {print $2}' <<<"$info" | tr ',' '\n' |
		sed 's/|.*//; s/(.*)//; s/:any//; s/ //g' | grep '^python3-' | grep -v 'supported-min' || true)
	todo="$todo $(echo $deps)"
done
echo "pysets: downloading ${#get[@]} packages from $suite" >&2
(cd "$top/debs" && apt-get "${opts[@]}" -qq download "${get[@]}") >>"$top/apt.log" 2>&1 ||
	fail "apt-get download failed: $(tail -3 "$top/apt.log")"
for deb in "$top"/debs/*.deb; do
	dpkg -x "$deb" "$top/root" || fail "dpkg -x $deb failed"
done

# Check what bookworm's python3 imports from there, isolated from this folder.
got=$(/usr/bin/python3 -I -c '
import sys
sys.path.insert(0, sys.argv[1])
import kombu, celery, redis, celery.bin.celery, kombu.transport.redis, celery.backends.redis
print("kombu=%s celery=%s redis=%s" % (kombu.__version__, celery.__version__, redis.__version__))
' "$site" 2>&1) || fail "the unpacked packages do not import: $got"
for w in $want; do
	case " $got" in *" $w"*) ;; *) fail "expected $w..., imported $got" ;; esac
done
echo "$got" >"$top/versions"
touch "$top/.complete"
echo "pysets: $set_name ready: $got" >&2
echo "$site"
