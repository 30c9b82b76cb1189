#!/usr/bin/env bash
# Prints a PostgreSQL URL for the test suite, starting a throwaway server if needed.
#
#   GPUNET_TEST_POSTGRES_URL set   -> used as it is (an existing server)
#   otherwise                      -> a private cluster under var/pgtest on port 54329,
#                                     installed from Debian's packages if missing (root)
set -euo pipefail
if [ -n "${GPUNET_TEST_POSTGRES_URL:-}" ]; then echo "$GPUNET_TEST_POSTGRES_URL"; exit 0; fi

port=${GPUNET_TEST_POSTGRES_PORT:-54329}
root=$(cd "$(dirname "$0")/.." && pwd)
data=/tmp/gpunet-pgtest-$(echo "$root" | md5sum | cut -c1-8)
url="postgresql://gpunet@127.0.0.1:$port/gpunet_test"

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$bindir" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing PostgreSQL from Debian packages..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  else
    echo "PostgreSQL is not installed: install the 'postgresql' package or set GPUNET_TEST_POSTGRES_URL" >&2
    exit 1
  fi
fi

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ ! -f "$data/PG_VERSION" ]; then
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres: "$data"
  as_pg "$bindir/initdb" -D "$data" -U gpunet --auth=trust -E UTF8 >/dev/null
fi
if ! as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  as_pg "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -o \
    "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null
fi
as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U gpunet -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname='gpunet_test'" | grep -q 1 \
  || as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U gpunet gpunet_test
echo "$url"
