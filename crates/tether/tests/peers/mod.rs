//! The third-party interop peers (Python `websockets` and Node `ws`, pinned
//! and installed by `interop/install.sh`) and their processes, shared by the
//! interop test binaries.
//!
//! The peers are installed by the tests themselves (once per test binary);
//! if that fails the tests fail, they are never skipped. A peer process is
//! killed when its [`PeerProcess`] is dropped, and its stderr is shown when
//! the test is failing.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

// ---------------------------------------------------------------------------
// Installing the peers
// ---------------------------------------------------------------------------

/// Where `interop/install.sh` put the peers.
#[derive(Debug)]
pub(crate) struct Peers {
    pub(crate) dir: PathBuf,
    pub(crate) python: PathBuf,
}

/// The root of the repository (where `interop/` is).
pub(crate) fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Runs `interop/install.sh` once per test binary. A failure panics in every
/// test that needs the peers: interop tests fail, they do not skip.
pub(crate) fn peers() -> &'static Peers {
    static PEERS: OnceLock<Result<Peers, String>> = OnceLock::new();
    match PEERS.get_or_init(install_peers) {
        Ok(p) => p,
        Err(e) => panic!("interop peers could not be installed, so the interop tests fail:\n{e}"),
    }
}

fn install_peers() -> Result<Peers, String> {
    let script = repo_root().join("interop/install.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run `bash {}`: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "`bash {}` failed ({}); it needs python3 (with venv) and node/npm.\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            script.display(),
            out.status
        ));
    }
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(PathBuf::from)
            .ok_or_else(|| format!("install.sh printed no {key}=... line:\n{stdout}\n{stderr}"))
    };
    let peers = Peers {
        dir: value("TETHER_INTEROP_DIR")?,
        python: value("TETHER_INTEROP_PYTHON")?,
    };
    let node_modules = value("TETHER_INTEROP_NODE_MODULES")?;
    if !peers.python.is_file() {
        return Err(format!(
            "install.sh reported {} but it does not exist",
            peers.python.display()
        ));
    }
    if !node_modules.join("ws/package.json").is_file() {
        return Err(format!(
            "install.sh reported {} but it holds no `ws`",
            node_modules.display()
        ));
    }
    Ok(peers)
}

// ---------------------------------------------------------------------------
// Peer processes
// ---------------------------------------------------------------------------

/// A third-party peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    Python,
    Node,
}

impl Peer {
    /// The peer's command-protocol server script.
    pub(crate) fn server_script(self) -> &'static str {
        match self {
            Peer::Python => "py_server.py",
            Peer::Node => "node_server.js",
        }
    }

    /// The peer's scripted client.
    pub(crate) fn client_script(self) -> &'static str {
        match self {
            Peer::Python => "py_client.py",
            Peer::Node => "node_client.js",
        }
    }

    /// A command running `interop/<script>` with the peer's interpreter,
    /// its stdout and stderr piped, killed when dropped.
    pub(crate) fn command(self, script: &str) -> Command {
        let peers = peers();
        let mut cmd = match self {
            Peer::Python => Command::new(&peers.python),
            Peer::Node => Command::new("node"),
        };
        cmd.arg(repo_root().join("interop").join(script))
            // load_ws.js finds `ws` there.
            .env("TETHER_INTEROP_DIR", &peers.dir)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// Collects a child's output in the background, so that it can never block
/// on a full pipe and can be shown when a test fails.
pub(crate) fn collect(pipe: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    tokio::spawn(async move {
        let mut pipe = pipe;
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

/// What [`collect`] has gathered so far, as text.
pub(crate) fn text_of(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

/// A running peer process; killed when dropped. When the test is failing,
/// the drop shows the peer's stderr.
pub(crate) struct PeerProcess {
    /// The peer, its script and its arguments.
    pub(crate) name: String,
    pub(crate) child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl PeerProcess {
    /// Starts `script` of `peer` with `args`; returns it with its stdout.
    pub(crate) fn spawn(peer: Peer, script: &str, args: &[&str]) -> (PeerProcess, ChildStdout) {
        let mut cmd = peer.command(script);
        cmd.args(args);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start the {peer:?} peer {script}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        let name = std::iter::once(script)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        (
            PeerProcess {
                name: format!("{peer:?} {name}"),
                child,
                stderr,
            },
            stdout,
        )
    }

    /// The peer's stderr so far.
    pub(crate) fn stderr(&self) -> String {
        text_of(&self.stderr)
    }

    /// Panics if the peer has exited (a server serves until killed).
    pub(crate) fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); stderr:\n{}",
                self.name,
                self.stderr()
            );
        }
    }

    /// Waits up to `timeout` for a peer client to exit; returns its exit
    /// status and its stdout (once it holds the `# ...` summary line, or
    /// after 5 s more). `ctx` names the run in the panic messages.
    pub(crate) async fn finish(
        &mut self,
        stdout: ChildStdout,
        timeout: Duration,
        ctx: &str,
    ) -> (ExitStatus, String) {
        let stdout = collect(stdout);
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => panic!("{ctx}: wait failed: {e}"),
            Err(_) => panic!(
                "{ctx}: did not finish within {timeout:?}; stdout so far:\n{}",
                text_of(&stdout)
            ),
        };
        // Let the output collectors reach EOF.
        let deadline = Instant::now() + Duration::from_secs(5);
        let out = loop {
            let out = text_of(&stdout);
            if out.lines().any(|l| l.starts_with("# ")) || Instant::now() > deadline {
                break out;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        (status, out)
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!("--- stderr of {} ---\n{}", self.name, self.stderr());
        }
    }
}

/// Starts the command-protocol server of `peer` with `args`, waits for its
/// `LISTENING <port>` line, and returns it with its address.
pub(crate) async fn start_server(peer: Peer, args: &[&str]) -> (PeerProcess, SocketAddr) {
    let (mut proc_, stdout) = PeerProcess::spawn(peer, peer.server_script(), args);
    let mut lines = BufReader::new(stdout).lines();
    let line = match tokio::time::timeout(Duration::from_secs(15), lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        Ok(r) => {
            let status = proc_.child.wait().await;
            panic!(
                "{} ended before printing LISTENING ({r:?}, {status:?}); stderr:\n{}",
                proc_.name,
                proc_.stderr()
            )
        }
        Err(_) => panic!("{} printed no LISTENING line within 15 s", proc_.name),
    };
    let port: u16 = line
        .strip_prefix("LISTENING ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{} printed {line:?}, expected `LISTENING <port>`",
                proc_.name
            )
        });
    // Nothing else is printed on stdout, but keep the pipe drained.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (proc_, SocketAddr::from(([127, 0, 0, 1], port)))
}
