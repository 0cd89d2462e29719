//! The browser client of `docs/resume-protocol.md`, run as written in
//! headless Chromium against `tether serve --broadcast --history 8
//! --static DIR` (topics in memory).
//!
//! The test serves `harness.html`, which holds the snippet taken from the
//! docs at test time (so the docs cannot drift from what is tested), wraps
//! the page's `WebSocket` constructor to see each connection the snippet
//! opens, and talks to the test over the topic `/report`: it reports each
//! message the snippet hands to the application (`got <payload>`), each
//! gap (`gap <after> <before>`), each connection (`url <url>`), its
//! opening (`open`), the server's position notice on it (`pos`) and its
//! end (`closed`); the test's commands are `cut` (close the feed's socket and
//! hold reconnects: while held, the snippet's attempts go to a closed
//! port and fail) and `release`. The test publishes on `/feed` as a plain
//! client.
//!
//! 0. Away before any message (2 published meanwhile); release: the
//!    snippet reconnects from the position the server gave it and gets
//!    both, no gap.
//! 1. 5 messages live; cut; 5 published while away; release: the snippet
//!    reconnects with `?last_id=` and gets the 5 it missed, then live ones:
//!    1 to 11 in order, each once, no gap.
//! 2. cut; 20 published while away (the history holds 8); release: a gap
//!    notice after the last id seen, then the 8 still held, in order.
//!
//! Chromium comes from `interop/install-chromium.sh`; `TETHER_CHROMIUM`
//! overrides its path. Without it the test fails: it is never skipped.

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::browser::open_browser;
use support::TempDir;
use tether::Message;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_tether");
const T: Duration = Duration::from_secs(20);

/// The JavaScript block of the docs: the snippet under test.
fn snippet() -> String {
    let doc = include_str!("../../../docs/resume-protocol.md");
    let start = doc.find("```js\n").expect("a ```js block in the docs") + "```js\n".len();
    let len = doc[start..].find("```").expect("the end of the block");
    doc[start..start + len].to_string()
}

/// The harness around the snippet.
fn harness() -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>resume harness</title></head>
<body><script>
"use strict";
const Native = WebSocket;
const report = new Native("ws://" + location.host + "/report");
const say = (t) => report.send(t);
let held = false, feed = null;
// Sees each connection the snippet opens; while held, sends it to a port
// where nothing listens, so that the attempt fails and the snippet retries.
window.WebSocket = class extends Native {{
  constructor(url, protocols) {{
    super(held ? "ws://127.0.0.1:9/" : url, protocols);
    if (!held) {{
      feed = this;
      say("url " + url);
      this.addEventListener("open", () => say("open"));
      this.addEventListener("close", () => say("closed"));
      this.addEventListener("message", (e) => {{
        if (typeof e.data === "string" && e.data.startsWith("p ")) say("pos");
      }});
    }}
  }}
}};
report.onmessage = (e) => {{
  if (e.data === "cut") {{ held = true; feed.close(); }}
  if (e.data === "release") held = false;
}};
{snippet}
report.onopen = () => resumable(
  "ws://" + location.host + "/feed",
  (data) => say("got " + data),
  (after, before) => say("gap " + after + " " + before),
);
</script></body></html>
"#,
        snippet = snippet()
    )
}

/// What the page reports on `/report` (the test's own commands and the
/// harness's other lines skipped), with Chromium's log for failures.
struct Page {
    report: tether::WebSocket,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Page {
    /// The next report of one of the given kinds (`got`, `gap`, `url`,
    /// `closed`).
    async fn next(&mut self, kinds: &[&str]) -> String {
        loop {
            let m = match timeout(T, self.report.recv()).await {
                Ok(Some(Ok(m))) => m,
                other => panic!(
                    "no report from the page ({other:?}); Chromium said:\n{}",
                    String::from_utf8_lossy(&self.log.lock().unwrap())
                ),
            };
            let Some(t) = m.as_text() else { continue };
            let kind = t.split(' ').next().unwrap_or("");
            if kinds.contains(&kind) {
                return t.to_string();
            }
        }
    }

    async fn send(&mut self, cmd: &str) {
        self.report.send(Message::text(cmd)).await.unwrap();
    }

    /// The next `n` messages, which must all be messages (no gap).
    async fn messages(&mut self, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            let r = self.next(&["got", "gap"]).await;
            let m = r.strip_prefix("got ").unwrap_or_else(|| panic!("{r}"));
            got.push(m.to_string());
        }
        got
    }
}

fn range(a: u32, b: u32) -> Vec<String> {
    (a..=b).map(|i| i.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_browser_client_resumes_without_gap_or_duplicate_and_reports_gaps() {
    let www = TempDir::new("resume-www");
    std::fs::write(www.0.join("harness.html"), harness()).unwrap();
    let mut server = Command::new(BIN)
        .args(["serve", "--broadcast", "--history", "8", "--static"])
        .arg(&www.0)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let line = timeout(T, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = line
        .strip_prefix("listening on ")
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let report = tether::connect(format!("{base}/report")).await.unwrap();
    let (mut feed_rd, feed) = tether::connect(format!("{base}/feed"))
        .await
        .unwrap()
        .split();
    // The publisher gets its own messages back: read and drop them.
    tokio::spawn(async move { while let Some(Ok(_)) = feed_rd.recv().await {} });
    let publish = |i: u32| feed.send(Message::text(i.to_string()));

    let profile = TempDir::new("resume-profile");
    let http = base.replace("ws://", "http://");
    let (mut browser, log) = open_browser(&format!("{http}/harness.html"), &profile);
    let mut page = Page { report, log };

    // The snippet's first connection, without a resume point.
    let first = page.next(&["url"]).await;
    assert!(!first.contains("last_id"), "{first}");
    // Open: from here on it gets every message published (the server
    // replays what it delivered between the 101 and the join).
    assert_eq!(page.next(&["open"]).await, "open");

    // 0. Away before the first message: the position notice is all the
    // snippet has to resume from.
    assert_eq!(page.next(&["pos"]).await, "pos");
    page.send("cut").await;
    assert_eq!(page.next(&["closed"]).await, "closed");
    for m in ["a", "b"] {
        feed.send(Message::text(m)).await.unwrap();
    }
    page.send("release").await;
    let again = page.next(&["url"]).await;
    assert!(
        again.contains("last_id="),
        "resumes from its position: {again}"
    );
    assert_eq!(page.next(&["open"]).await, "open");
    assert_eq!(page.messages(2).await, ["a", "b"], "nothing lost, no gap");

    // 1. Live, away (5 published meanwhile), back: each once, in order.
    for i in 1..=5 {
        publish(i).await.unwrap();
    }
    assert_eq!(page.messages(5).await, range(1, 5));
    page.send("cut").await;
    assert_eq!(page.next(&["closed"]).await, "closed");
    for i in 6..=10 {
        publish(i).await.unwrap();
    }
    page.send("release").await;
    let again = page.next(&["url"]).await;
    assert_eq!(page.next(&["open"]).await, "open");
    assert!(
        again.contains("last_id="),
        "resumes with its last id: {again}"
    );
    assert_eq!(page.messages(5).await, range(6, 10), "replayed");
    publish(11).await.unwrap();
    assert_eq!(page.messages(1).await, range(11, 11), "then live");

    // 2. Away for longer than the history (8): a gap, then what is held.
    page.send("cut").await;
    assert_eq!(page.next(&["closed"]).await, "closed");
    for i in 12..=31 {
        publish(i).await.unwrap();
    }
    page.send("release").await;
    let url = page.next(&["url"]).await;
    assert_eq!(page.next(&["open"]).await, "open");
    let seen = url
        .split("last_id=")
        .nth(1)
        .unwrap_or_else(|| panic!("{url}"))
        .to_string();
    let gap = page.next(&["got", "gap"]).await;
    let parts: Vec<&str> = gap.split(' ').collect();
    assert_eq!(parts.len(), 3, "{gap}");
    assert_eq!(parts[0], "gap", "a gap first: {gap}");
    assert_eq!(parts[1], seen, "after the last id it saw");
    assert_ne!(parts[2], "null", "the first id still held is known");
    assert_eq!(page.messages(8).await, range(24, 31), "then the 8 held");
    publish(32).await.unwrap();
    assert_eq!(page.messages(1).await, range(32, 32));

    let _ = browser.start_kill();
    let _ = timeout(Duration::from_secs(10), browser.wait()).await;
    let _ = server.start_kill();
}
