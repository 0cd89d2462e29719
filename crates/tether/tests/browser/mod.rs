//! Headless Chromium for the browser tests (`chromium.rs`, `axum.rs`): a
//! browser on a fresh profile that loads one URL, killed when dropped.
//!
//! Chromium comes from `interop/install-chromium.sh` (run by
//! `scripts/test.sh`); `TETHER_CHROMIUM` overrides its path. Without it the
//! tests fail: they are never skipped.
#![allow(dead_code)]

use crate::peers::collect;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The Chromium binary; panics (the test fails) when it is missing.
pub(crate) fn chromium() -> PathBuf {
    let path = std::env::var_os("TETHER_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium not found at {} (set TETHER_CHROMIUM to another path); install it with \
         `bash interop/install-chromium.sh` (as root). This test fails rather than skips \
         without a browser.",
        path.display()
    );
    path
}

/// A fresh directory for Chromium's profile, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("tether-chromium-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the profile directory");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The last `max` bytes of a child's output, as text.
fn tail(buf: &Mutex<Vec<u8>>, max: usize) -> String {
    let b = buf.lock().unwrap();
    String::from_utf8_lossy(&b[b.len().saturating_sub(max)..]).into_owned()
}

/// A headless Chromium that loaded one URL; killed when dropped.
pub(crate) struct Browser {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    url: String,
    /// Declared last: removed after the browser is killed.
    _profile: TempDir,
}

impl Browser {
    /// Starts Chromium on `url`.
    pub(crate) fn open(url: &str) -> Browser {
        let chromium = chromium();
        let profile = TempDir::new();
        let mut child = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // Never route the loopback connections through a proxy from
                // the environment.
                "--no-proxy-server",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", chromium.display()));
        let out = collect(child.stdout.take().expect("piped stdout"));
        let err = collect(child.stderr.take().expect("piped stderr"));
        Browser {
            child,
            out,
            err,
            url: url.to_string(),
            _profile: profile,
        }
    }

    /// The end of the browser's output so far, for failure messages.
    pub(crate) fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            tail(&self.out, 4000),
            tail(&self.err, 8000)
        )
    }

    /// Waits up to `timeout` for `fut` (what the page's script makes the
    /// test's server report); panics with the browser's output if the
    /// browser exits first or the time runs out.
    pub(crate) async fn wait_for<T>(
        &mut self,
        fut: impl Future<Output = T>,
        timeout: Duration,
        what: &str,
    ) -> T {
        tokio::select! {
            r = tokio::time::timeout(timeout, fut) => match r {
                Ok(r) => r,
                Err(_) => panic!(
                    "Chromium did not {what} with {} within {timeout:?}\n{}",
                    self.url,
                    self.output()
                ),
            },
            status = self.child.wait() => panic!(
                "Chromium exited ({status:?}) before it could {what}\n{}",
                self.output()
            ),
        }
    }

    /// Kills the browser and waits for it to exit.
    pub(crate) async fn close(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
