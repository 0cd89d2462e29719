#!/usr/bin/env bash
# Install the real proxy servers used by tether's proxy tests
# (crates/tether/tests/proxy.rs):
#
#   tinyproxy     HTTP CONNECT proxy, with Basic proxy authentication
#   dante-server  SOCKS5 proxy (danted), with RFC 1929 username/password
#
#   bash interop/install-proxies.sh
#
# From Debian's packages, with apt-get (as root). Idempotent: when both are
# installed it only says so. The daemons are never started by the install
# (the tests start their own, on free loopback ports, with generated
# configurations); the tests also need `unshare` and `mount` (util-linux,
# mount), present on every Debian system, and root.
set -euo pipefail

have_tinyproxy() { command -v tinyproxy >/dev/null 2>&1 || [[ -x /usr/bin/tinyproxy ]]; }
have_danted() { command -v danted >/dev/null 2>&1 || [[ -x /usr/sbin/danted ]]; }

missing=()
have_tinyproxy || missing+=(tinyproxy)
have_danted || missing+=(dante-server)

if ((${#missing[@]} == 0)); then
  echo "proxies already installed: $(command -v tinyproxy || echo /usr/bin/tinyproxy)," \
    "$(command -v danted || echo /usr/sbin/danted)"
  exit 0
fi

if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the proxy tests need the Debian packages ${missing[*]};" \
    "install them as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

# Serialize concurrent runs (apt holds its own lock, but a second caller
# should wait and then find everything installed).
lock=/var/lock/tether-install-proxies.lock
if command -v flock >/dev/null 2>&1; then
  exec 9>"$lock"
  flock 9
  missing=()
  have_tinyproxy || missing+=(tinyproxy)
  have_danted || missing+=(dante-server)
  if ((${#missing[@]} == 0)); then
    echo "proxies installed by a concurrent run"
    exit 0
  fi
fi

# Keep the packages' init scripts from starting system-wide daemons: a
# policy-rc.d that denies every start, only for this install and only when
# the machine has none of its own.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\n# tether interop/install-proxies.sh: no daemon starts during the install\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
echo "==> apt-get install ${missing[*]}"
if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

have_tinyproxy && have_danted || {
  echo "error: tinyproxy or danted still missing after the install" >&2
  exit 1
}
echo "proxies installed"
