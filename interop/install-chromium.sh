#!/usr/bin/env bash
# Install Chromium (the Debian package `chromium`) for the headless-browser
# interop test, crates/tether/tests/chromium.rs.
#
#   bash interop/install-chromium.sh
#
# Idempotent: when /usr/bin/chromium exists it only prints its version.
# Otherwise it installs the package with apt-get (as root, or through a
# password-less sudo), without recommended packages. The test itself never
# installs anything: without a browser it fails and points here.
set -euo pipefail

bin=/usr/bin/chromium

if [[ -x "$bin" ]]; then
  echo "chromium already installed: $("$bin" --version 2>/dev/null || echo "$bin")"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "error: $bin is missing and apt-get is not available;" \
    "install Chromium and link it as $bin" >&2
  exit 1
fi

as_root=()
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "error: $bin is missing; installing it needs root:" \
      "sudo bash interop/install-chromium.sh" >&2
    exit 1
  fi
fi

# Serialize concurrent runs; apt-get also waits for dpkg's own lock.
lock="${TMPDIR:-/tmp}/tether-install-chromium.lock"
if command -v flock >/dev/null; then
  exec 9>"$lock"
  flock 9
  if [[ -x "$bin" ]]; then
    echo "chromium installed by a concurrent run: $("$bin" --version 2>/dev/null || echo "$bin")"
    exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
apt_install=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q
  --no-install-recommends -o DPkg::Lock::Timeout=300 chromium)
echo "==> installing chromium with apt-get"
# Try with the package lists at hand first; refresh them only if that fails.
if ! "${apt_install[@]}"; then
  "${as_root[@]}" apt-get update -q -o DPkg::Lock::Timeout=300
  "${apt_install[@]}"
fi

if [[ ! -x "$bin" ]]; then
  echo "error: apt-get succeeded but $bin does not exist" >&2
  exit 1
fi
echo "chromium installed: $("$bin" --version 2>/dev/null || echo "$bin")"
