//! `tether::axum` (feature `axum`): a real axum `Router` served by
//! `axum::serve`, with an ordinary route (`GET /`), a health route
//! (`GET /health`) and a WebSocket (`/ws`, tether's `WebSocketUpgrade`
//! extractor) on one port. tether's client, Python `websockets` and headless
//! Chromium talk to the WebSocket, with and without permessage-deflate, with
//! a subprotocol.

mod browser;
mod frameworks;
mod peers;
mod protocol;
mod relay;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use browser::Browser;
use frameworks::{
    check_http_routes, check_python_client, check_tether_client, http, BIG_LIMIT, HOME, SUBPROTOCOL,
};
use protocol::ProtocolHandler;
use relay::Relay;
use std::net::SocketAddr;
use std::time::Duration;
use tether::axum::WebSocketUpgrade;
use tether::tether_proto::deflate::DeflateParams;
use tether::{ErrorKind, Message, ServerBuilder};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The router's state.
#[derive(Clone)]
struct App {
    /// The WebSocket's settings, shared by every connection.
    settings: ServerBuilder,
    handler: ProtocolHandler,
    /// Where `on_failed_upgrade` reports.
    failures: mpsc::UnboundedSender<tether::Error>,
}

async fn ws(State(app): State<App>, upgrade: WebSocketUpgrade) -> Response {
    let failures = app.failures.clone();
    upgrade
        .builder(app.settings)
        .protocols([SUBPROTOCOL])
        .max_message_size(Some(BIG_LIMIT))
        .on_failed_upgrade(move |e| {
            let _ = failures.send(e);
        })
        .on_upgrade(move |ws| async move { app.handler.run(ws).await })
}

/// A page and a WebSocket on one URL.
async fn both(State(app): State<App>, upgrade: Option<WebSocketUpgrade>) -> Response {
    match upgrade {
        Some(u) => u.on_upgrade(move |ws| async move { app.handler.run(ws).await }),
        None => "the page\n".into_response(),
    }
}

/// The router, and where its failed upgrades are reported.
fn router(handler: ProtocolHandler) -> (Router, mpsc::UnboundedReceiver<tether::Error>) {
    let (failures, failed) = mpsc::unbounded_channel();
    let app = App {
        // PROTOCOL.md: servers send no keepalive pings of their own.
        settings: ServerBuilder::new().ping_interval(None),
        handler,
        failures,
    };
    let router = Router::new()
        .route("/", get(|| async { HOME }))
        .route("/health", get(|| async { (StatusCode::OK, "ok\n") }))
        // `any`: the extractor, not the router, answers other methods.
        .route("/ws", any(ws))
        .route("/both", get(both))
        .route("/page", get(|| async { Html(page()) }))
        .with_state(app);
    (router, failed)
}

/// Serves `router(handler)` with `axum::serve` on a loopback port.
async fn serve(handler: ProtocolHandler) -> SocketAddr {
    let (router, _) = router(handler);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ordinary_routes_answer_beside_the_websocket() {
    let addr = serve(ProtocolHandler::default()).await;
    check_http_routes(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_client_with_and_without_compression() {
    let handler = ProtocolHandler::default();
    let addr = serve(handler.clone()).await;
    check_tether_client(addr, &handler).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_with_compression_and_subprotocol() {
    let handler = ProtocolHandler::default();
    let addr = serve(handler.clone()).await;
    check_python_client(addr, &handler, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_without_compression() {
    let handler = ProtocolHandler::default();
    let addr = serve(handler.clone()).await;
    check_python_client(addr, &handler, false).await;
}

/// `Option<WebSocketUpgrade>`: a plain GET gets the page, an upgrade the
/// WebSocket, a broken upgrade its refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_url_serves_a_page_and_a_websocket() {
    let handler = ProtocolHandler::default();
    let addr = serve(handler.clone()).await;
    let r = http(
        addr,
        "GET /both HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "the page\n"), "{r:?}");

    let mut ws = tether::connect(&format!("ws://{addr}/both"))
        .await
        .expect("connect to /both");
    ws.send(Message::text("hello")).await.expect("send");
    let echo = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await;
    assert!(
        matches!(&echo, Ok(Some(Ok(m))) if m.as_text() == Some("hello")),
        "{echo:?}"
    );
    // Default settings here: compression on, no subprotocol.
    assert!(ws.compression().is_some());
    assert_eq!(handler.seen()[0].subprotocol, None);

    let broken = "GET /both HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n";
    let r = http(addr, broken).await;
    assert_eq!(r.status, 400, "an upgrade without a key: {r:?}");
}

/// Served by hyper without `.with_upgrades()`, the router's 101 goes out
/// but the connection is never handed over: `on_failed_upgrade` gets the
/// error, on the upgrade's task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failed_upgrade_gets_the_error() {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt;

    let (router, mut failed) = router(ProtocolHandler::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let router = router.clone();
            let service = hyper::service::service_fn(move |req| router.clone().oneshot(req));
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), service));
        }
    });
    let client = tokio::spawn(
        tether::ClientBuilder::new(format!("ws://{addr}/ws"))
            .open_timeout(Some(Duration::from_secs(5)))
            .connect(),
    );
    let err = tokio::time::timeout(Duration::from_secs(10), failed.recv())
        .await
        .expect("on_failed_upgrade was not called")
        .expect("a failure");
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    client.abort();
}

// ---------------------------------------------------------------------------
// Chromium
// ---------------------------------------------------------------------------

/// How long Chromium has to load the page and finish its script.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(30);
/// Sizes of the compressible text messages the page sends.
const TEXT_SIZES: [usize; 4] = [100, 2000, 8000, 200_000];
/// Size of the binary message the page sends.
const BINARY_SIZE: usize = 65536;

/// The page at `/page`: checks `/health`, opens the WebSocket at `/ws` on
/// the same host offering the subprotocol, checks what was agreed, sends
/// compressible text and a binary message, compares the echoes, and closes
/// with 1000 "done" (or 4000 and what went wrong).
fn page() -> String {
    let sizes = TEXT_SIZES.map(|s| s.to_string()).join(",");
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>tether in axum</title></head>
<body>
<script>
const sizes = [{sizes}];
const text = (n) => ('{{"msg":"héllo from chromium €","pad":"' + 'abcdefghij'.repeat(n / 10)).slice(0, n);
const binary = new Uint8Array({BINARY_SIZE});
for (let i = 0; i < binary.length; i++) binary[i] = i % 251;
const expected = sizes.map(text);
expected.push(binary);

(async () => {{
  let health = 'unreachable';
  try {{ health = (await fetch('/health')).status; }} catch (e) {{}}
  const ws = new WebSocket('ws://' + location.host + '/ws', ['{SUBPROTOCOL}']);
  ws.binaryType = 'arraybuffer';
  let got = 0;
  const fail = (why) => ws.close(4000, ('fail: ' + why).slice(0, 120));
  ws.onopen = () => {{
    if (health !== 200) return fail('GET /health: ' + health);
    if (ws.protocol !== '{SUBPROTOCOL}') return fail('protocol ' + ws.protocol);
    if (!ws.extensions.startsWith('permessage-deflate')) return fail('extensions ' + ws.extensions);
    for (const m of expected) ws.send(m);
  }};
  ws.onmessage = (ev) => {{
    const want = expected[got];
    if (typeof want === 'string') {{
      if (ev.data !== want) return fail('text echo ' + got + ' differs');
    }} else {{
      const a = new Uint8Array(ev.data);
      if (a.length !== want.length || a.some((x, i) => x !== want[i])) return fail('binary echo differs');
    }}
    got++;
    if (got === expected.length) ws.close(1000, 'done');
  }};
}})();
</script>
</body></html>
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_through_the_router() {
    let handler = ProtocolHandler::default();
    let addr = serve(handler.clone()).await;
    // The page, its fetch and its WebSocket all go through the relay.
    let relay = Relay::start(addr).await;
    let mut browser = Browser::open(&format!("http://{}/page", relay.addr()));
    let closed = async {
        loop {
            if let Some(close) = handler.closes().pop() {
                return close;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let close = browser
        .wait_for(closed, BROWSER_TIMEOUT, "close its WebSocket")
        .await;
    let output = browser.output();
    browser.close().await;

    assert_eq!(
        close,
        Some((1000, "done".to_string())),
        "the page's close frame (4000: the page found a fault)\n{output}"
    );
    let seen = handler.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].subprotocol.as_deref(), Some(SUBPROTOCOL));
    // Chromium offers `permessage-deflate; client_max_window_bits`; tether
    // answers with its 12-bit server window.
    let agreed = DeflateParams {
        server_max_window_bits: Some(12),
        ..DeflateParams::default()
    };
    assert_eq!(
        seen[0].compression,
        Some(agreed),
        "offer {:?}",
        seen[0].offer
    );

    // Compressed on the wire both ways: ~275 KB of messages (and the page,
    // ~2 KB) took far less.
    let payload = (TEXT_SIZES.iter().sum::<usize>() + BINARY_SIZE) as u64;
    let (up, down) = relay.counts();
    assert!(
        up < payload / 10 && down < payload / 10,
        "{payload} bytes of messages took {up} bytes from Chromium and {down} back"
    );
}
