//! Helpers shared by the tests of the `tether` binary: run it to the end
//! with some input, or start it and talk to it while it runs; an echo server
//! (`tether serve --echo`) that can be stopped and started again on its
//! port; signals.
#![allow(dead_code)] // each test file uses a part

pub(crate) mod browser;

use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// How long a test waits for the binary before it fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A finished run.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stdout_bytes: Vec<u8>,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }

    pub(crate) fn of(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }
}

/// Runs `tether args...` with `input` on standard input (a pipe); if
/// `keep_open`, standard input stays open until the process exits.
pub(crate) async fn tether(args: &[&str], input: impl AsRef<[u8]>, keep_open: bool) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A process that exits before reading everything closes the pipe.
    let _ = stdin.write_all(input.as_ref()).await;
    // Dropping standard input sends EOF; otherwise it stays open until the
    // process exits.
    let _keep = if keep_open {
        Some(stdin)
    } else {
        drop(stdin);
        None
    };
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("tether finished in time")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stdout_bytes: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends `signal` ("INT", "TERM") to process `pid`.
pub(crate) fn kill(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// A `tether serve --echo` process; killed when dropped.
pub(crate) struct EchoServer {
    /// The URL it printed (`listening on <url>`).
    pub(crate) url: String,
    /// host:port, to start it again on the same port.
    pub(crate) addr: String,
    pub(crate) child: Child,
    /// Its standard output, kept open while it runs.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl EchoServer {
    /// Stops it as Ctrl-C would (its clients get 1001) and waits for it.
    pub(crate) async fn stop(mut self) {
        kill(self.child.id().unwrap(), "INT");
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the server stopped")
            .unwrap();
    }
}

/// Starts `tether serve --echo args... 127.0.0.1:0` and reads the URL it
/// prints.
pub(crate) async fn echo_server(args: &[&str]) -> EchoServer {
    echo_server_at(args, "127.0.0.1:0").await
}

/// Starts `tether serve --echo args... ADDR`.
pub(crate) async fn echo_server_at(args: &[&str], addr: &str) -> EchoServer {
    let mut child = Command::new(BIN)
        .args(["serve", "--echo"])
        .args(args)
        .arg(addr)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let url = first.strip_prefix("listening on ").unwrap().to_string();
    let addr = url
        .trim_start_matches("ws://")
        .trim_start_matches("wss://")
        .trim_end_matches('/')
        .to_string();
    EchoServer {
        url,
        addr,
        child,
        _stdout: lines,
    }
}

/// A `tether` process that runs while the test talks to it: its JSON
/// events are read as they come.
pub(crate) struct Live {
    pub(crate) child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Option<ChildStderr>,
    /// Every event read so far.
    pub(crate) seen: Vec<Value>,
}

impl Live {
    /// Starts `tether args...` with `stdin` (`Stdio::null()`, a pipe...).
    pub(crate) fn start(args: &[&str], stdin: Stdio) -> Live {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = child.stderr.take();
        Live {
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Reads events until one named `name` (returned); fails after
    /// [`PATIENCE`] or at the end of the output.
    pub(crate) async fn wait_for(&mut self, name: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let line = tokio::time::timeout_at(deadline, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {name:?} event in time; seen: {:#?}", self.seen))
                .unwrap();
            let Some(line) = line else {
                panic!(
                    "output ended before a {name:?} event; seen: {:#?}",
                    self.seen
                )
            };
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
            self.seen.push(v.clone());
            if v["event"] == name {
                return v;
            }
        }
    }

    /// True while the process runs.
    pub(crate) fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the exit; reads the rest of the events. Returns the exit
    /// status and standard error.
    pub(crate) async fn finish(&mut self) -> (i32, String) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("tether exited in time")
            .unwrap();
        while let Ok(Some(line)) = self.stdout.next_line().await {
            self.seen.push(
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}")),
            );
        }
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut err).await;
        }
        (status.code().unwrap_or(-1), err)
    }

    /// The events named `name` seen so far.
    pub(crate) fn of(&self, name: &str) -> Vec<&Value> {
        self.seen.iter().filter(|e| e["event"] == name).collect()
    }
}

/// Fast reconnects for tests.
pub(crate) const FAST: &[&str] = &[
    "--reconnect",
    "--backoff-initial",
    "0.05",
    "--backoff-min",
    "0.05",
    "--backoff-max",
    "0.2",
];

/// `parts`, one after the other, as one argument list.
pub(crate) fn cat<'a>(parts: &[&[&'a str]]) -> Vec<&'a str> {
    parts.concat()
}

/// A fresh directory, removed when dropped.
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("tether-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> std::path::PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
