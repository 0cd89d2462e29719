#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the pinned interop peers
# (Python websockets, Node ws) into target/interop, then runs every test of
# the workspace (unit, property, integration, interop, doc tests).
set -euo pipefail
cd "$(dirname "$0")/.."

bash interop/install.sh
cargo test --workspace --exclude tether-bench "$@"
