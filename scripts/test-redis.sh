#!/usr/bin/env bash
# Prints a Redis URL for the test suite, starting a throwaway server if needed.
#
#   GPUNET_TEST_REDIS_URL set   -> used as it is
#   otherwise                   -> this checkout's server (state under var/redistest),
#                                  reused while it answers, else started on a free port
#   test-redis.sh stop          -> stop this checkout's server (`make clean` does)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/var/redistest

alive() { [ -f "$dir/port" ] && redis-cli -p "$(cat "$dir/port")" ping >/dev/null 2>&1; }

if [ "${1:-}" = stop ]; then
  if command -v redis-cli >/dev/null && alive; then
    redis-cli -p "$(cat "$dir/port")" shutdown nosave >/dev/null 2>&1 || true
    echo "stopped $dir" >&2
  fi
  rm -f "$dir/port"
  exit 0
fi
if [ -n "${GPUNET_TEST_REDIS_URL:-}" ]; then echo "$GPUNET_TEST_REDIS_URL"; exit 0; fi
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Redis from Debian packages..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) >&2
  else
    echo "Redis is not installed: install 'redis-server' or set GPUNET_TEST_REDIS_URL" >&2
    exit 1
  fi
fi

mkdir -p "$dir"
# The lock is never handed to the server (9>&-), or it would hold it for good.
exec 9>"$dir/start.lock"
flock 9
if ! alive; then
  for attempt in 1 2 3; do
    port=${GPUNET_TEST_REDIS_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
      --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null 9>&-
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    if redis-cli -p "$port" ping >/dev/null 2>&1; then echo "$port" >"$dir/port"; break; fi
    [ "$attempt" = 3 ] && { echo "cannot start Redis; see $dir/redis.log" >&2; exit 1; }
  done
fi
echo "redis://127.0.0.1:$(cat "$dir/port")/15"
