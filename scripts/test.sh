#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the pinned interop peers
# (Python websockets, Node ws) into target/interop and the proxy servers
# (tinyproxy, dante; Debian packages) and redis-server, then runs every test
# of the workspace (unit, property, integration, interop, doc tests) with
# every Cargo feature on, so that the tests and doc examples of optional
# features (`hyper`, `axum`, `redis`, `webpki-roots`) run too.
set -euo pipefail
cd "$(dirname "$0")/.."

bash interop/install.sh
bash interop/install-chromium.sh  # headless Chromium, for tests/chromium.rs and axum.rs
bash interop/install-proxies.sh   # tinyproxy and dante, for tests/proxy.rs
bash interop/install-redis.sh     # redis-server, for the scale-out tests (feature redis)
cargo test --workspace --exclude tether-bench --all-features "$@"
