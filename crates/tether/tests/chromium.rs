//! A real browser against tether's server: headless Chromium loads a tiny
//! page (served over plain HTTP by this test) whose script opens a
//! WebSocket to tether's server with its default settings, sends
//! compressible text messages and one binary message, checks the echoes and
//! closes with 1000 "done".
//!
//! The server checks that Chromium offered permessage-deflate and that it
//! was agreed, that every message arrived intact, that the close was clean,
//! and (through a byte-counting relay) that the messages were compressed on
//! the wire both ways.
//!
//! Chromium comes from `interop/install-chromium.sh` (see `browser/mod.rs`);
//! without it the test fails: it is never skipped.

mod browser;
mod peers;
mod relay;

use browser::Browser;
use relay::Relay;
use std::sync::Arc;
use std::time::Duration;
use tether::tether_proto::deflate::DeflateParams;
use tether::{CloseCode, Message, ServerBuilder, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How long Chromium has to load the page and finish its script.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(30);

/// Sizes of the `data` field of the text messages the page sends.
const TEXT_SIZES: [usize; 6] = [500, 1000, 2000, 4000, 8000, 200_000];
/// Size of the binary message the page sends.
const BINARY_SIZE: usize = 65536;

/// Text message `k` (the page builds the same string in JavaScript): JSON
/// with non-ASCII characters and a compressible `data` field.
fn text_message(k: usize) -> String {
    format!(
        "{{\"seq\":{k},\"msg\":\"héllo from chromium €\",\"data\":\"{}\"}}",
        "abcdefghij".repeat(TEXT_SIZES[k] / 10)
    )
}

/// The binary message: byte `i` is `i % 251`.
fn binary_message() -> Vec<u8> {
    (0..BINARY_SIZE).map(|i| (i % 251) as u8).collect()
}

/// The page: sends every message, compares each echo, reports
/// `ws.extensions`, then closes with 1000 "done" (or 4000 and what went
/// wrong).
fn page(ws_port: u16) -> String {
    let sizes = TEXT_SIZES.map(|s| s.to_string()).join(",");
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>tether deflate</title></head>
<body>
<script>
const sizes = [{sizes}];
const textMessage = (k) => '{{"seq":' + k + ',"msg":"héllo from chromium €","data":"' +
  'abcdefghij'.repeat(sizes[k] / 10) + '"}}';
const binary = new Uint8Array({BINARY_SIZE});
for (let i = 0; i < binary.length; i++) binary[i] = i % 251;
const expected = sizes.map((_, k) => textMessage(k));
expected.push(binary);

const ws = new WebSocket('ws://127.0.0.1:{ws_port}/');
ws.binaryType = 'arraybuffer';
let got = 0;
const fail = (why) => ws.close(4000, ('fail: ' + why).slice(0, 120));
ws.onopen = () => {{ for (const m of expected) ws.send(m); }};
ws.onmessage = (ev) => {{
  const want = expected[got];
  if (typeof want === 'string') {{
    if (typeof ev.data !== 'string') return fail('echo ' + got + ' is not text');
    if (ev.data !== want) return fail('text echo ' + got + ' differs (' + ev.data.length + ' chars)');
  }} else {{
    if (!(ev.data instanceof ArrayBuffer)) return fail('echo ' + got + ' is not binary');
    const a = new Uint8Array(ev.data);
    if (a.length !== want.length || a.some((x, i) => x !== want[i])) {{
      return fail('binary echo differs (' + a.length + ' bytes)');
    }}
  }}
  got++;
  if (got === expected.length) {{
    ws.send('extensions: ' + ws.extensions);
    ws.close(1000, 'done');
  }}
}};
ws.onerror = () => {{ document.title = 'websocket error'; }};
</script>
</body></html>
"#
    )
}

/// What tether's server saw on the browser's connection.
#[derive(Debug, Default)]
struct Report {
    offer: Option<String>,
    compression: Option<DeflateParams>,
    messages: Vec<Message>,
    close: Option<Option<(u16, String)>>,
    error: Option<String>,
}

/// Echoes data messages until the connection ends, then sends its report.
async fn handle(mut ws: WebSocket, reports: mpsc::UnboundedSender<Report>) {
    let mut report = Report {
        offer: ws
            .request()
            .and_then(|r| r.header("sec-websocket-extensions"))
            .map(String::from),
        compression: ws.compression(),
        ..Report::default()
    };
    while let Some(msg) = ws.recv().await {
        match msg {
            Ok(Message::Close(frame)) => {
                report.close = Some(frame.map(|f| (f.code.0, f.reason.to_string())));
            }
            Ok(m) if m.is_data() => {
                report.messages.push(m.clone());
                // The last message (the extensions report) is not echoed:
                // the page closes right after sending it.
                if !m.as_text().is_some_and(|t| t.starts_with("extensions: ")) {
                    if let Err(e) = ws.send(m).await {
                        report.error = Some(format!("echo failed: {e}"));
                        break;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                report.error = Some(format!("recv failed: {e} ({:?})", e.kind()));
                break;
            }
        }
    }
    let _ = reports.send(report);
}

/// Serves `page` at `/` (404 elsewhere) over HTTP/1.1 on a loopback port.
async fn serve_page(page: String) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the HTTP server");
    let port = listener.local_addr().expect("HTTP address").port();
    let page = Arc::new(page);
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 2048];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req);
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let (status, kind, body) = if path == "/" {
                    ("200 OK", "text/html; charset=utf-8", page.as_bytes())
                } else {
                    ("404 Not Found", "text/plain", &b"not found\n"[..])
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                     Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(body).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_round_trip_with_permessage_deflate() {
    // tether's server with its default settings (compression on, 12-bit
    // server window), behind a relay that counts the bytes on the wire.
    let (tx, mut reports) = mpsc::unbounded_channel();
    let server = ServerBuilder::new()
        .serve("127.0.0.1:0", move |ws| handle(ws, tx.clone()))
        .await
        .expect("start tether's server");
    let relay = Relay::start(server.local_addr()).await;
    let (http_port, http) = serve_page(page(relay.addr().port())).await;
    let url = format!("http://127.0.0.1:{http_port}/");

    let mut browser = Browser::open(&url);

    // Wait for the server's report on the browser's connection, which comes
    // once the connection has ended.
    let report = browser
        .wait_for(
            reports.recv(),
            BROWSER_TIMEOUT,
            "complete the WebSocket session",
        )
        .await
        .expect("the server holds a sender");
    let output = browser.output();
    browser.close().await;
    http.abort();

    let summary: Vec<(&str, usize)> = report
        .messages
        .iter()
        .map(|m| (if m.is_text() { "text" } else { "binary" }, m.len()))
        .collect();
    let ctx = format!(
        "the server saw: offer {:?}, agreed {:?}, messages (kind, bytes) {summary:?}, \
         close {:?}, error {:?}\n{}",
        report.offer, report.compression, report.close, report.error, output
    );
    assert!(
        report.error.is_none(),
        "the server's connection failed: {ctx}"
    );

    // A clean close: 1000 "done" (a failing page closes with 4000 and why).
    assert_eq!(
        report.close,
        Some(Some((CloseCode::NORMAL.0, "done".to_string()))),
        "the page's close frame: {ctx}"
    );

    // Chromium offers `permessage-deflate; client_max_window_bits`; tether's
    // server accepts with its 12-bit window and leaves the client's alone.
    let offer = report.offer.as_deref().unwrap_or("");
    assert!(
        offer
            .split(',')
            .any(|o| o.trim().starts_with("permessage-deflate")),
        "Chromium offered no permessage-deflate: {offer:?}"
    );
    let agreed = DeflateParams {
        server_max_window_bits: Some(12),
        ..DeflateParams::default()
    };
    assert_eq!(
        report.compression,
        Some(agreed),
        "agreed parameters (offer {offer:?})"
    );

    // Every message arrived intact, in order; then the page's report.
    let mut want: Vec<Message> = (0..TEXT_SIZES.len())
        .map(|k| Message::text(text_message(k)))
        .collect();
    want.push(Message::binary(binary_message()));
    let n = want.len();
    assert!(
        report.messages.len() == n + 1,
        "expected {} messages, got {}: {ctx}",
        n + 1,
        report.messages.len(),
    );
    for (k, (got, want)) in report.messages.iter().zip(&want).enumerate() {
        assert!(
            got == want,
            "message {k}: got {} bytes (text: {}), expected {}",
            got.len(),
            got.is_text(),
            want.len()
        );
    }
    // What the browser saw as `ws.extensions` (the server's answer).
    assert_eq!(
        report.messages[n].as_text(),
        Some("extensions: permessage-deflate; server_max_window_bits=12"),
        "the page's report"
    );

    // Compressed on the wire both ways: ~280 KB of payload took a few KB.
    let payload: usize = want.iter().map(Message::len).sum();
    let (up, down) = relay.counts();
    eprintln!(
        "Chromium offered {offer:?}, agreed {:?}; {payload} bytes of messages took {up} \
         bytes on the wire from Chromium and {down} bytes back",
        report.compression
    );
    assert!(
        up < payload as u64 / 10,
        "{up} bytes from Chromium for {payload} bytes of messages: not compressed"
    );
    assert!(
        down < payload as u64 / 10,
        "{down} bytes from tether for {payload} bytes of echoes: not compressed"
    );

    server.shutdown().await;
}
