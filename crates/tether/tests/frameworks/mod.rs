//! The checks that `hyper.rs` and `axum.rs` run against an HTTP server of
//! theirs serving, on one port: `GET /` (text), `GET /health` (200) and a
//! WebSocket at `/ws` (tether's [`ProtocolHandler`] with the subprotocol
//! [`SUBPROTOCOL`] and tether's default compression):
//!
//! - [`check_http_routes`]: the ordinary routes, and the refusals of `/ws`;
//! - [`check_tether_client`]: tether's client with and without
//!   permessage-deflate, through a byte-counting relay;
//! - [`check_python_client`]: Python `websockets`' scripted client.
#![allow(dead_code)]

use crate::peers::{peers, Peer, PeerProcess};
use crate::protocol::{assert_client_report, pattern, ProtocolHandler};
use crate::relay::Relay;
use std::net::SocketAddr;
use std::time::Duration;
use tether::{ClientBuilder, Message, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The subprotocol of `/ws`.
pub(crate) const SUBPROTOCOL: &str = "chat.v1";
/// The body of `GET /`.
pub(crate) const HOME: &str = "hello from an ordinary route\n";
/// The message limit of `/ws` (the peers' checks send 1 MiB messages).
pub(crate) const BIG_LIMIT: usize = 16 << 20;
/// Bound for one peer client's whole run.
const PEER_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound for one receive.
const RECV_TIMEOUT: Duration = Duration::from_secs(20);

/// An HTTP response read off the wire.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    /// The status line and the headers.
    pub(crate) head: String,
    pub(crate) body: String,
}

impl RawResponse {
    /// A header's value (the first), by case-insensitive name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` (a whole HTTP/1.1 request head, which should say
/// `Connection: close`) and reads the response until the server closes.
pub(crate) async fn http(addr: SocketAddr, request: &str) -> RawResponse {
    let io = async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .unwrap_or_else(|_| panic!("no complete answer within 10 s to {request:?}"))
        .unwrap_or_else(|e| panic!("{request:?}: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    RawResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// A request head for `path` with `extra` header lines (each ending in
/// CRLF).
fn get(method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: test.invalid\r\nConnection: close\r\n{extra}\r\n")
}

/// The headers of an upgrade request, but for `Connection`.
const UPGRADE: &str = "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// The ordinary routes answer beside the WebSocket, and `/ws` refuses what
/// it cannot upgrade with the right status.
pub(crate) async fn check_http_routes(addr: SocketAddr) {
    let r = http(addr, &get("GET", "/", "")).await;
    assert_eq!((r.status, r.body.as_str()), (200, HOME), "GET /: {r:?}");

    let r = http(addr, &get("GET", "/health", "")).await;
    assert_eq!(r.status, 200, "GET /health: {r:?}");

    // A browser opening the WebSocket's URL: 426, naming the protocol.
    let r = http(addr, &get("GET", "/ws", "")).await;
    assert_eq!(r.status, 426, "plain GET /ws: {r:?}");
    assert_eq!(r.header("upgrade"), Some("websocket"), "{r:?}");
    assert!(r.body.contains("WebSocket"), "{r:?}");

    // The head of an upgrade, with `Connection: Upgrade` instead of `close`.
    let upgrade = |method: &str, extra: &str| {
        format!(
            "{method} /ws HTTP/1.1\r\nHost: test.invalid\r\nConnection: Upgrade\r\n{UPGRADE}{extra}\r\n"
        )
    };
    let r = http(addr, &upgrade("POST", "Sec-WebSocket-Version: 13\r\n")).await;
    assert_eq!(r.status, 405, "POST upgrade: {r:?}");
    assert_eq!(r.header("allow"), Some("GET"), "{r:?}");

    // RFC 6455 §4.4: an unsupported version is answered with the one we speak.
    let r = http(addr, &upgrade("GET", "Sec-WebSocket-Version: 8\r\n")).await;
    assert_eq!(r.status, 426, "version 8: {r:?}");
    assert_eq!(r.header("sec-websocket-version"), Some("13"), "{r:?}");

    let no_key = "GET /ws HTTP/1.1\r\nHost: test.invalid\r\nConnection: Upgrade\r\n\
                  Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let r = http(addr, no_key).await;
    assert_eq!(r.status, 400, "no Sec-WebSocket-Key: {r:?}");
    assert!(r.body.contains("Sec-WebSocket-Key"), "{r:?}");
}

/// A compressible text of `len` bytes (JSON-like, non-ASCII included).
fn compressible(len: usize) -> Message {
    let unit = "{\"msg\":\"héllo wörld €\",\"seq\":12345,\"ok\":true},";
    Message::text(unit.repeat(len / unit.len() + 1)[..unit.len() * (len / unit.len())].to_string())
}

async fn echo<S>(ws: &mut WebSocket<S>, msg: Message, what: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(msg.clone())
        .await
        .unwrap_or_else(|e| panic!("{what}: send failed: {e}"));
    match tokio::time::timeout(RECV_TIMEOUT, ws.recv()).await {
        Ok(Some(Ok(got))) => assert!(
            got == msg,
            "{what}: the echo differs ({} bytes, expected {})",
            got.len(),
            msg.len()
        ),
        other => panic!("{what}: no echo: {other:?}"),
    }
}

/// tether's client at `/ws` through a byte-counting relay: with the
/// subprotocol and compression (agreed on both ends, messages compressed on
/// the wire both ways), then without either.
pub(crate) async fn check_tether_client(addr: SocketAddr, handler: &ProtocolHandler) {
    let relay = Relay::start(addr).await;
    let url = format!("ws://{}/ws", relay.addr());
    let before = handler.seen().len();

    // With compression (tether's client offers it by default).
    let mut ws = ClientBuilder::new(url.as_str())
        .subprotocol(SUBPROTOCOL)
        .max_message_size(Some(BIG_LIMIT))
        .connect()
        .await
        .expect("connect with compression");
    assert_eq!(
        ws.subprotocol(),
        Some(SUBPROTOCOL),
        "the client's subprotocol"
    );
    let agreed = ws
        .compression()
        .expect("the client agreed on no compression");
    let (up0, down0) = relay.counts();
    let text = compressible(200_000);
    let binary = pattern(true, 100_000);
    let payload = (text.len() + binary.len()) as u64;
    echo(&mut ws, text, "compressed text").await;
    echo(&mut ws, binary, "compressed binary").await;
    // A small message and an empty one go through the same inflater.
    echo(&mut ws, Message::text("hi"), "short text").await;
    echo(&mut ws, Message::binary(Vec::new()), "empty binary").await;
    let (up, down) = relay.counts();
    assert!(
        up - up0 < payload / 10 && down - down0 < payload / 10,
        "{payload} bytes of messages took {} bytes up and {} down: not compressed",
        up - up0,
        down - down0
    );
    ws.close(tether::CloseCode::NORMAL, "")
        .await
        .expect("close the compressed connection");
    let seen = &handler.seen()[before];
    assert_eq!(seen.compression, Some(agreed), "the server's parameters");
    assert_eq!(seen.subprotocol.as_deref(), Some(SUBPROTOCOL), "{seen:?}");

    // Without compression or subprotocol: neither end has any.
    let mut ws = ClientBuilder::new(url.as_str())
        .compression(None)
        .max_message_size(Some(BIG_LIMIT))
        .connect()
        .await
        .expect("connect without compression");
    assert_eq!(ws.compression(), None);
    assert_eq!(ws.subprotocol(), None);
    let (up0, _) = relay.counts();
    let text = compressible(100_000);
    let len = text.len() as u64;
    echo(&mut ws, text, "uncompressed text").await;
    assert!(
        relay.counts().0 - up0 >= len,
        "compressed without compression"
    );
    ws.close(tether::CloseCode::NORMAL, "")
        .await
        .expect("close the plain connection");
    let seen = &handler.seen()[before + 1];
    assert_eq!(seen.compression, None, "{seen:?}");
    assert_eq!(seen.subprotocol, None, "{seen:?}");
}

/// Python `websockets`' scripted client (PROTOCOL.md) at `/ws`, offering
/// the subprotocol, with or without permessage-deflate.
pub(crate) async fn check_python_client(
    addr: SocketAddr,
    handler: &ProtocolHandler,
    deflate: bool,
) {
    peers();
    let before = handler.seen().len();
    let url = format!("ws://{addr}/ws");
    let mut args = vec!["--subprotocol", SUBPROTOCOL];
    if deflate {
        args.push("--deflate");
    }
    args.push(&url);
    let (mut proc_, stdout) = PeerProcess::spawn(Peer::Python, "py_client.py", &args);
    let ctx = proc_.name.clone();
    let (status, out) = proc_.finish(stdout, PEER_TIMEOUT, &ctx).await;
    assert!(status.success(), "{ctx}: failed ({status}):\n{out}");
    let mut extra = vec!["subprotocol"];
    if deflate {
        extra.extend(["deflate-negotiated", "server-ext", "echo-context-takeover"]);
    }
    assert_client_report(&out, &extra, &ctx);
    handler.wait_for_client_closes(&ctx).await;

    // Every connection (the shared one and the closing checks') agreed on
    // the subprotocol, and on compression exactly when it was offered.
    let seen = &handler.seen()[before..];
    assert!(seen.len() >= 4, "{ctx}: only {} connections", seen.len());
    for s in seen {
        assert_eq!(s.subprotocol.as_deref(), Some(SUBPROTOCOL), "{ctx}: {s:?}");
        assert_eq!(s.compression.is_some(), deflate, "{ctx}: {s:?}");
    }
}
