//! Headless Chromium for the tests that load a page (`serve_page.rs`,
//! `resume_browser.rs`): the browser installed by
//! `interop/install-chromium.sh`, a fresh profile per test, its standard
//! error kept for failure messages.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::TempDir;

/// The Chromium binary; panics (the test fails) when it is missing.
pub(crate) fn chromium() -> PathBuf {
    let path = std::env::var_os("TETHER_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium not found at {} (set TETHER_CHROMIUM); install it with \
         `bash interop/install-chromium.sh` (as root)",
        path.display()
    );
    path
}

/// Headless Chromium on `url`, on a fresh profile; its standard error is
/// kept for failure messages. Killed when dropped.
pub(crate) fn open_browser(url: &str, profile: &TempDir) -> (Child, Arc<Mutex<Vec<u8>>>) {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start Chromium");
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut err = child.stderr.take().unwrap();
    let sink = log.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (child, log)
}
