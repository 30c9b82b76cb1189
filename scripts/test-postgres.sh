#!/usr/bin/env bash
# Prints a PostgreSQL URL for the test suite, starting a throwaway server if needed.
#
#   GPUNET_TEST_POSTGRES_URL set   -> used as it is (an existing server)
#   otherwise                      -> this checkout's private cluster under var/pgtest,
#                                     reused while it runs, else started on a free port;
#                                     installed from Debian's packages if missing (root)
#   test-postgres.sh stop          -> stop this checkout's cluster (`make clean` does)
#
# Everything is keyed to the checkout (state under its var/, port chosen free), so any
# number of checkouts on one machine each run their own suite without meeting.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data=$root/var/pgtest

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
running() { [ -n "$bindir" ] && [ -f "$data/PG_VERSION" ] && as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; }

if [ "${1:-}" = stop ]; then
  if running; then as_pg "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null; echo "stopped $data" >&2; fi
  exit 0
fi
if [ -n "${GPUNET_TEST_POSTGRES_URL:-}" ]; then echo "$GPUNET_TEST_POSTGRES_URL"; exit 0; fi

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

mkdir -p "$root/var"
# One start at a time per checkout (make test and a manual run may race).
# The lock is never handed to the server (9>&-), or it would hold it for good.
exec 9>"$root/var/pgtest-start.lock"
flock 9

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if [ ! -f "$data/PG_VERSION" ]; then
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres: "$data"
  as_pg "$bindir/initdb" -D "$data" -U gpunet --auth=trust -E UTF8 >/dev/null
fi
if ! running; then
  for attempt in 1 2 3; do
    port=${GPUNET_TEST_POSTGRES_PORT:-$(free_port)}
    # TCP only: a Unix socket path under a deep checkout can exceed the 107-byte limit.
    if as_pg "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -o \
      "-p $port -c unix_socket_directories= -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >/dev/null 9>&-; then
      break
    fi
    # Someone took the port between the check and the start: try another.
    [ "$attempt" = 3 ] && { echo "cannot start PostgreSQL; see $data/server.log" >&2; exit 1; }
  done
fi
# The running cluster's port is on line 4 of its postmaster.pid.
port=$(sed -n 4p "$data/postmaster.pid")
as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U gpunet -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname='gpunet_test'" | grep -q 1 \
  || as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U gpunet gpunet_test
echo "postgresql://gpunet@127.0.0.1:$port/gpunet_test"
