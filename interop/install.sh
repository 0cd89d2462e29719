#!/usr/bin/env bash
# Install the pinned third-party WebSocket peers used by tether's interop tests.
#
#   bash interop/install.sh
#
# Installs into ${TETHER_INTEROP_DIR:-<repo>/target/interop}:
#   venv/                Python venv with websockets (pinned in requirements.txt)
#   node/node_modules/   Node project with ws (pinned in package-lock.json)
#   stamp                hash of the pin files; when it matches, nothing is redone
#
# Idempotent: a second run with unchanged pins only checks the stamp and exits.
# Works as root, with CI=true, and needs only python3 (+ venv) and node/npm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
dest="${TETHER_INTEROP_DIR:-$repo/target/interop}"
venv="$dest/venv"
nodedir="$dest/node"
stamp="$dest/stamp"

# The stamp records what was installed: both pin files plus the interpreter
# versions (a changed python3 or node invalidates the venv / node_modules).
want="$(
  {
    cat "$here/requirements.txt" "$here/package.json" "$here/package-lock.json"
    python3 --version 2>&1
    node --version 2>&1
  } | sha256sum | cut -d' ' -f1
)"

print_paths() {
  echo "TETHER_INTEROP_DIR=$dest"
  echo "TETHER_INTEROP_PYTHON=$venv/bin/python"
  echo "TETHER_INTEROP_NODE_MODULES=$nodedir/node_modules"
}

installed_ok() {
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
    [[ -x "$venv/bin/python" && -f "$nodedir/node_modules/ws/package.json" ]]
}

# Serialize concurrent runs (e.g. several test binaries calling this at once):
# a second caller waits, then finds the stamp and returns immediately.
mkdir -p "$dest"
if command -v flock >/dev/null; then
  exec 9>"$dest/.lock"
  flock 9
fi

if installed_ok; then
  echo "interop peers already installed (stamp $want)"
  print_paths
  exit 0
fi

rm -f "$stamp"

# --- Python: websockets in a venv -------------------------------------------
echo "==> python venv in $venv"
rm -rf "$venv"
if ! python3 -m venv "$venv" 2>/dev/null; then
  # Debian splits ensurepip into python3-venv; as root we can add it.
  rm -rf "$venv"
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "python3 -m venv failed; installing python3-venv with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q python3-venv ||
      { apt-get update -q && apt-get install -y -q python3-venv; }
    python3 -m venv "$venv"
  else
    echo "error: 'python3 -m venv' failed; install the python3-venv package" >&2
    exit 1
  fi
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-input -r "$here/requirements.txt"

# --- Node: ws via npm ci from the committed lockfile ------------------------
echo "==> node project in $nodedir"
mkdir -p "$nodedir"
cp "$here/package.json" "$here/package-lock.json" "$nodedir/"
(cd "$nodedir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)

# Quick sanity check that both libraries import at the pinned versions.
"$venv/bin/python" -c 'import websockets; print("websockets", websockets.__version__)'
(cd "$nodedir" && node -e 'console.log("ws", require("ws/package.json").version)')

echo "$want" >"$stamp"
echo "interop peers installed"
print_paths
