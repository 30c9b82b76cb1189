#!/usr/bin/env bash
# Prints a Redis URL for the test suite, starting a throwaway server if needed.
set -euo pipefail
if [ -n "${GPUNET_TEST_REDIS_URL:-}" ]; then echo "$GPUNET_TEST_REDIS_URL"; exit 0; fi
port=${GPUNET_TEST_REDIS_PORT:-63799}
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Redis from Debian packages..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) >&2
  else
    echo "Redis is not installed: install 'redis-server' or set GPUNET_TEST_REDIS_URL" >&2
    exit 1
  fi
fi
if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --logfile /tmp/gpunet-redis-test.log >/dev/null
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
echo "redis://127.0.0.1:$port/15"
