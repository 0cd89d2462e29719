#!/usr/bin/env bash
# Install redis-server, used by the scale-out tests (fan-out across server
# processes and resume after a reconnect, feature `redis`):
#
#   bash interop/install-redis.sh
#
# From Debian's package (bookworm: 7.0.x), with apt-get (as root).
# Idempotent: when it is installed it only says so. The daemon is never
# started by the install: the tests start their own redis-server on a free
# loopback port, without persistence, and stop it.
set -euo pipefail

have_redis() { command -v redis-server >/dev/null 2>&1 || [[ -x /usr/bin/redis-server ]]; }

if have_redis; then
  echo "redis-server already installed: $(redis-server --version | head -1)"
  exit 0
fi

if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the scale-out tests need the Debian package redis-server;" \
    "install it as root: apt-get install -y --no-install-recommends redis-server" >&2
  exit 1
fi

lock=/var/lock/tether-install-redis.lock
if command -v flock >/dev/null 2>&1; then
  exec 9>"$lock"
  flock 9
  if have_redis; then
    echo "redis-server installed by a concurrent run"
    exit 0
  fi
fi

# Keep the package's init script from starting a system-wide daemon.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\n# tether interop/install-redis.sh: no daemon starts during the install\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
echo "==> apt-get install redis-server"
if ! apt-get install -y -q --no-install-recommends redis-server; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends redis-server
fi

have_redis || {
  echo "error: redis-server still missing after the install" >&2
  exit 1
}
echo "redis-server installed: $(redis-server --version | head -1)"
