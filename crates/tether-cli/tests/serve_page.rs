//! The built-in console page in a real browser: `tether serve --broadcast
//! --print --stdin --page --static DIR` with headless Chromium.
//!
//! Chromium loads `harness.html`, served by `--static`, which holds the
//! console page (`/`, served by `--page`) in a same-origin frame and drives
//! it as a person would: waits for it to say "connected", types a message
//! in its input and submits the form, waits for the message to come back
//! into the page's log (`--broadcast` sends it to every client, the page
//! included), then waits for a line typed on the server's standard input
//! (`--stdin`) to appear in the log too. The harness reports over a
//! WebSocket of its own, and the test reads the reports, and the page's
//! message, in the server's `--print` events.
//!
//! Chromium comes from `interop/install-chromium.sh` (run by
//! `scripts/test.sh`); `TETHER_CHROMIUM` overrides its path. Without it the
//! test fails: it is never skipped.

mod support;

use serde_json::Value;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use support::browser::open_browser;
use support::TempDir;
use support::{kill, Live};
use tokio::io::AsyncWriteExt;
use tokio::process::Child;

const SENT: &str = "hello from the console page";
const TYPED: &str = "typed on the server";

/// The page the test serves with `--static`: it drives the console in a
/// frame and reports `page-ready`, then `verdict: ok` (or what went wrong).
const HARNESS: &str = r##"<!doctype html>
<html><head><meta charset="utf-8"><title>harness</title></head>
<body>
<iframe id="console" src="/" width="800" height="600"></iframe>
<script>
"use strict";
const SENT = "hello from the console page", TYPED = "typed on the server";
const report = new WebSocket("ws://" + location.host + "/report");
const say = (text) => report.send(text);
const deadline = Date.now() + 25000;
let phase = "load";
const entries = (doc, cls) =>
  Array.from(doc.querySelectorAll("#log li." + cls), (li) => li.textContent);
const timer = setInterval(() => {
  if (report.readyState !== WebSocket.OPEN) return;
  const doc = document.getElementById("console").contentDocument;
  const status = doc && doc.getElementById("status");
  if (Date.now() > deadline) {
    clearInterval(timer);
    const log = doc && doc.getElementById("log");
    say(("verdict: stuck at " + phase + "; status " + (status && status.textContent) +
         "; log " + (log && log.textContent)).slice(0, 500));
    return;
  }
  if (!status) return;
  if (phase === "load" && status.textContent === "connected") {
    doc.getElementById("input").value = SENT;
    doc.getElementById("send").requestSubmit();
    phase = "sent";
  } else if (phase === "sent" && entries(doc, "out").includes(SENT) &&
             entries(doc, "in").includes(SENT)) {
    say("page-ready");
    phase = "typed";
  } else if (phase === "typed" && entries(doc, "in").includes(TYPED)) {
    clearInterval(timer);
    say("verdict: ok");
  }
}, 50);
</script>
</body></html>
"##;

/// The next `message` event whose data is `want` (or, for a prefix ending
/// in a space, starts with it); fails if Chromium exits first or the
/// harness gives its verdict before.
async fn message(
    server: &mut Live,
    browser: &mut Child,
    log: &Mutex<Vec<u8>>,
    want: &str,
) -> Value {
    let wait = async {
        loop {
            let m = server.wait_for("message").await;
            let data = m["data"].as_str().unwrap_or_default();
            if data == want || (want.ends_with(' ') && data.starts_with(want)) {
                return m;
            }
            // The harness gave up: say why now, not after the test's timeout.
            assert!(
                !data.starts_with("verdict: "),
                "waiting for {want:?}: {data}"
            );
        }
    };
    tokio::select! {
        m = wait => m,
        status = browser.wait() => panic!(
            "Chromium exited ({status:?}) before the page sent {want:?}\n{}",
            String::from_utf8_lossy(&log.lock().unwrap())
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_page_sends_and_receives_in_chromium() {
    let www = TempDir::new("page-www");
    std::fs::write(www.0.join("harness.html"), HARNESS).unwrap();
    let dir = www.0.to_str().unwrap();
    let mut server = Live::start(
        &[
            "serve",
            "--broadcast",
            "--print",
            "--stdin",
            "--page",
            "--static",
            dir,
            "--events",
            "json",
            "--close-timeout",
            "1",
            "127.0.0.1:0",
        ],
        Stdio::piped(),
    );
    let mut typed = server.child.stdin.take().unwrap();
    let url = server.wait_for("listening").await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let http = url.replace("ws://", "http://");
    let profile = TempDir::new("page-profile");
    let (mut browser, log) = open_browser(&format!("{http}harness.html"), &profile);

    // The message typed into the page, shown by --print with the page's
    // connection (the one opened at `/`; the harness's is at `/report`).
    let sent = message(&mut server, &mut browser, &log, SENT).await;
    let page_conn = server
        .of("open")
        .into_iter()
        .find(|o| o["path"] == "/")
        .cloned()
        .expect("the page's connection opened at /");
    assert_eq!(sent["id"], page_conn["id"]);
    assert_eq!(sent["peer"], page_conn["peer"]);

    // The page saw its message come back; now a line typed on the server.
    message(&mut server, &mut browser, &log, "page-ready").await;
    typed
        .write_all(format!("{TYPED}\n").as_bytes())
        .await
        .unwrap();
    let verdict = message(&mut server, &mut browser, &log, "verdict: ").await;
    assert_eq!(verdict["data"], "verdict: ok", "{verdict}");

    let _ = browser.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(10), browser.wait()).await;
    kill(server.pid(), "INT");
    let (code, err) = server.finish().await;
    assert_eq!(code, 0, "{err}");
}
