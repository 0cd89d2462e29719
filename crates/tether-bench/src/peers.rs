//! The servers of the compressed cells that are not Rust: Python websockets
//! and Node ws, each an echo server in a child process (the scripts are in
//! `crates/tether-bench/peers/`), from the pinned installation of
//! `bash interop/install.sh`.

use std::path::PathBuf;
use std::process::Command;

/// Where `interop/install.sh` installs by default.
const INTEROP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/interop");
/// The echo server scripts.
const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers");
const MISSING: &str = "run `bash interop/install.sh` first";

/// `$var`, or `default` under the interop directory, if it exists.
fn installed(var: &str, default: &str) -> Result<PathBuf, String> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(INTEROP).join(default));
    if p.exists() {
        Ok(p)
    } else {
        Err(format!("{} not found ({MISSING})", p.display()))
    }
}

fn python_bin() -> Result<PathBuf, String> {
    installed("TETHER_INTEROP_PYTHON", "venv/bin/python")
}

fn node_command() -> Result<Command, String> {
    let modules = installed("TETHER_INTEROP_NODE_MODULES", "node/node_modules")?;
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", modules);
    Ok(cmd)
}

/// Python websockets, `compression="deflate"` (its defaults), one asyncio
/// process.
pub(crate) fn python() -> Result<Command, String> {
    let mut cmd = Command::new(python_bin()?);
    cmd.arg(format!("{SCRIPTS}/echo_server.py"));
    Ok(cmd)
}

/// Python websockets' `broadcast()` relaying every message to every
/// connection (the fan-out cells), one asyncio process.
pub(crate) fn python_fanout() -> Result<Command, String> {
    let mut cmd = Command::new(python_bin()?);
    cmd.arg(format!("{SCRIPTS}/fanout_server.py"));
    Ok(cmd)
}

/// Node ws, `perMessageDeflate: true` (its defaults), one process (zlib
/// work runs on libuv's worker threads, pinned to the same CPU).
pub(crate) fn node() -> Result<Command, String> {
    let mut cmd = node_command()?;
    cmd.arg(format!("{SCRIPTS}/echo_server.js"));
    Ok(cmd)
}

/// The first line a command prints, or `?`.
fn output(cmd: Result<Command, String>) -> String {
    cmd.ok()
        .and_then(|mut c| c.output().ok())
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

/// The versions of the peers and their runtimes and zlib builds.
pub(crate) fn versions() -> String {
    let py = output(python_bin().map(|p| {
        let mut c = Command::new(p);
        c.args([
            "-c",
            "import sys, zlib, websockets; print(f'websockets {websockets.__version__} \
             (Python {sys.version.split()[0]}, zlib {zlib.ZLIB_RUNTIME_VERSION})')",
        ]);
        c
    }));
    let node = output(node_command().map(|mut c| {
        c.args([
            "-e",
            "console.log(`ws ${require('ws/package.json').version} \
             (Node ${process.version}, zlib ${process.versions.zlib})`)",
        ]);
        c
    }));
    format!("{py}, {node}")
}
