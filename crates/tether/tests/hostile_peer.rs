//! A hostile peer: a raw TCP client or server (no WebSocket library) sends
//! each RFC 6455 violation to tether, which must fail the connection with the
//! close code the RFC requires (1002, 1007, 1009), report it from `recv()`,
//! end the stream, close TCP, and never panic. Also: the opening handshake
//! refusals of a tether server and the response checks of a tether client.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tether::tether_proto::{Error as ProtoError, HandshakeError};
use tether::{ClientBuilder, CloseCode, ErrorKind, Message, ServerBuilder, State};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The role tether plays against the raw peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Tether accepts; the raw peer is a client and masks its frames.
    Server,
    /// Tether connects; the raw peer is a server and does not mask.
    Client,
}

const BOTH: [Side; 2] = [Side::Server, Side::Client];

/// The message limit for the size tests.
const LIMIT: usize = 1000;

/// Opens a connection between tether in `side` (message limit `max`, or the
/// default) and a raw peer, past the handshake.
async fn open(side: Side, case: &str, max: Option<usize>) -> (RawPeer, JoinHandle<Outcome>) {
    let (mut peer, task) = match side {
        Side::Server => {
            let b = ServerBuilder::new();
            let b = if max.is_some() { b.max_message_size(max) } else { b };
            tether_server(b).await
        }
        Side::Client => {
            tether_client(move |url| {
                let b = ClientBuilder::new(url);
                if max.is_some() {
                    b.max_message_size(max)
                } else {
                    b
                }
            })
            .await
        }
    };
    peer.label = format!("tether {side:?}: {case}");
    (peer, task)
}

/// Checks that tether failed the connection: the raw peer reads a close
/// frame with `code` and then EOF (tether closed TCP while still holding the
/// socket); `recv()` returned the error last (kind `kind`, close code
/// `code`), then `None`. Returns the messages received before the error.
async fn expect_failure(mut peer: RawPeer, task: JoinHandle<Outcome>, kind: ErrorKind, code: u16) -> Vec<Message> {
    peer.expect_close(code).await;
    peer.expect_eof().await;
    let label = peer.label.clone();
    let out = join(&label, task).await;
    check_failed(&label, &out, kind, code)
}

fn check_failed(label: &str, out: &Outcome, kind: ErrorKind, code: u16) -> Vec<Message> {
    let (last, before) = out.items.split_last().unwrap_or_else(|| panic!("{label}: recv() returned None without an error"));
    let err = match last {
        Err(e) => e,
        Ok(m) => panic!("{label}: recv() ended after {m:?} without an error: {out:?}"),
    };
    assert_eq!(err.kind(), kind, "{label}: {err:?}");
    assert_eq!(err.close_code(), Some(CloseCode(code)), "{label}: {err:?}");
    assert_eq!(out.state, State::Closed, "{label}: state after the stream ended");
    before
        .iter()
        .map(|r| match r {
            Ok(m) => m.clone(),
            Err(e) => panic!("{label}: more than one error from recv(): {out:?} ({e})"),
        })
        .collect()
}

/// Opens a connection, sends `bytes` (built by `build` for the raw peer's
/// role), and checks that tether fails it with a protocol error and `code`.
async fn violation(side: Side, case: &str, code: u16, build: impl Fn(&RawPeer) -> Vec<u8>) {
    let (mut peer, task) = open(side, case, None).await;
    let bytes = build(&peer);
    peer.write(&bytes).await;
    let before = expect_failure(peer, task, ErrorKind::Protocol, code).await;
    assert!(before.is_empty(), "tether {side:?}: {case}: messages before the error: {before:?}");
}

/// Ends a healthy connection: the raw peer sends close 1000 and reads the
/// echo; then the TCP connection ends (the server closes it: tether as a
/// server, the raw peer otherwise). Returns every message tether received.
async fn close_cleanly(side: Side, mut peer: RawPeer, task: JoinHandle<Outcome>) -> Vec<Message> {
    peer.send(FIN | CLOSE, &1000u16.to_be_bytes()).await;
    peer.expect_close(1000).await;
    match side {
        Side::Server => peer.expect_eof().await,
        Side::Client => peer.shutdown_write().await,
    }
    let label = peer.label.clone();
    let out = join(&label, task).await;
    let msgs: Vec<Message> = out
        .items
        .iter()
        .map(|r| r.as_ref().unwrap_or_else(|e| panic!("{label}: unexpected error {e:?} in {out:?}")).clone())
        .collect();
    assert_eq!(msgs.last().and_then(Message::close_code), Some(CloseCode::NORMAL), "{label}: {msgs:?}");
    assert_eq!(out.state, State::Closed, "{label}");
    msgs
}

// --- Masking -----------------------------------------------------------------

#[tokio::test]
async fn server_fails_unmasked_client_frame_1002() {
    violation(Side::Server, "unmasked text frame", 1002, |_| encode_frame(FIN | TEXT, b"hello", None)).await;
}

#[tokio::test]
async fn client_fails_masked_server_frame_1002() {
    violation(Side::Client, "masked text frame", 1002, |_| encode_frame(FIN | TEXT, b"hello", Some(MASK))).await;
}

// --- Header fields -----------------------------------------------------------

#[tokio::test]
async fn reserved_bits_without_extension_fail_1002() {
    for side in BOTH {
        for (name, bit) in [("RSV1", 0x40), ("RSV2", 0x20), ("RSV3", 0x10)] {
            violation(side, &format!("{name} set"), 1002, |p| p.frame(FIN | bit | TEXT, b"hello")).await;
        }
    }
}

#[tokio::test]
async fn reserved_opcodes_fail_1002() {
    for side in BOTH {
        for op in [0x3u8, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            violation(side, &format!("reserved opcode {op:#x}"), 1002, |p| p.frame(FIN | op, b"x")).await;
        }
    }
}

#[tokio::test]
async fn length_with_top_bit_set_fails_1002() {
    for side in BOTH {
        violation(side, "64-bit length with the top bit set", 1002, |p| {
            // Only the header: the declared length is absurd.
            p.header(FIN | BINARY, (1u64 << 63) | 5)
        })
        .await;
    }
}

// --- Control frames ----------------------------------------------------------

#[tokio::test]
async fn control_frame_over_125_bytes_fails_1002() {
    for side in BOTH {
        for (name, op) in [("ping", PING), ("pong", PONG), ("close", CLOSE)] {
            violation(side, &format!("{name} of 126 bytes"), 1002, |p| {
                let mut payload = vec![b'a'; 126];
                if op == CLOSE {
                    payload[..2].copy_from_slice(&1000u16.to_be_bytes());
                }
                p.frame(FIN | op, &payload)
            })
            .await;
        }
    }
}

#[tokio::test]
async fn fragmented_control_frame_fails_1002() {
    for side in BOTH {
        for (name, op) in [("ping", PING), ("pong", PONG), ("close", CLOSE)] {
            violation(side, &format!("{name} without FIN"), 1002, |p| {
                let payload: &[u8] = if op == CLOSE { &[0x03, 0xe8] } else { b"abc" };
                p.frame(op, payload)
            })
            .await;
        }
    }
}

// --- Fragmentation -----------------------------------------------------------

#[tokio::test]
async fn continuation_without_a_message_fails_1002() {
    for side in BOTH {
        violation(side, "continuation (FIN) first", 1002, |p| p.frame(FIN | CONT, b"orphan")).await;
        violation(side, "continuation (no FIN) first", 1002, |p| p.frame(CONT, b"orphan")).await;
        // A complete message, then a continuation of nothing.
        let (mut peer, task) = open(side, "continuation after a complete message", None).await;
        let mut bytes = peer.frame(FIN | TEXT, b"done");
        bytes.extend(peer.frame(FIN | CONT, b"more"));
        peer.write(&bytes).await;
        let before = expect_failure(peer, task, ErrorKind::Protocol, 1002).await;
        assert_eq!(before, vec![Message::text("done")], "tether {side:?}");
    }
}

#[tokio::test]
async fn new_data_frame_inside_a_fragmented_message_fails_1002() {
    for side in BOTH {
        for (name, op) in [("text", TEXT), ("binary", BINARY)] {
            violation(side, &format!("{name} frame inside a fragmented text message"), 1002, |p| {
                let mut b = p.frame(TEXT, b"first ");
                b.extend(p.frame(FIN | op, b"intruder"));
                b
            })
            .await;
        }
    }
}

#[tokio::test]
async fn pings_between_fragments_are_answered_and_the_message_completes() {
    for side in BOTH {
        let (mut peer, task) = open(side, "pings between fragments", None).await;
        peer.send(TEXT, b"Hel").await;
        peer.send(FIN | PING, b"p1").await;
        let pong = peer.read_frame().await;
        assert_eq!((pong.opcode, pong.fin, &pong.payload[..]), (PONG, true, &b"p1"[..]), "tether {side:?}");
        peer.send(CONT, b"lo ").await;
        peer.send(FIN | PING, b"second ping").await;
        let pong = peer.read_frame().await;
        assert_eq!((pong.opcode, &pong.payload[..]), (PONG, &b"second ping"[..]), "tether {side:?}");
        peer.send(FIN | CONT, b"world").await;
        let msgs = close_cleanly(side, peer, task).await;
        assert_eq!(
            msgs[..3],
            [
                Message::Ping("p1".into()),
                Message::Ping("second ping".into()),
                Message::text("Hello world"),
            ],
            "tether {side:?}: {msgs:?}"
        );
        assert_eq!(msgs.len(), 4, "tether {side:?}: {msgs:?}");
    }
}

// --- UTF-8 -------------------------------------------------------------------

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_fails_1007() {
    for side in BOTH {
        violation(side, "invalid UTF-8 in a text frame", 1007, |p| p.frame(FIN | TEXT, b"caf\xc3\x28")).await;
        violation(side, "truncated code point at the end of a text frame", 1007, |p| p.frame(FIN | TEXT, b"caf\xc3"))
            .await;
        violation(side, "UTF-16 surrogate in a text frame", 1007, |p| p.frame(FIN | TEXT, b"\xed\xa0\x80")).await;
    }
}

#[tokio::test]
async fn invalid_utf8_in_the_first_fragment_fails_before_the_rest() {
    for side in BOTH {
        let (mut peer, task) = open(side, "invalid UTF-8 in the first fragment", None).await;
        // The bad first fragment, and nothing more: tether must not wait
        // for the final fragment to notice.
        peer.send(TEXT, b"ok so far \xff then").await;
        let before = expect_failure(peer, task, ErrorKind::Protocol, 1007).await;
        assert!(before.is_empty(), "tether {side:?}: {before:?}");
    }
}

#[tokio::test]
async fn code_point_split_between_fragments_is_accepted() {
    for side in BOTH {
        let (mut peer, task) = open(side, "code point split between fragments", None).await;
        peer.send(TEXT, b"caf\xc3").await;
        peer.send(FIN | CONT, b"\xa9!").await;
        let msgs = close_cleanly(side, peer, task).await;
        assert_eq!(msgs[0], Message::text("café!"), "tether {side:?}");
    }
}

// --- Close frames ------------------------------------------------------------

#[tokio::test]
async fn close_with_invalid_code_fails_1002() {
    for side in BOTH {
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
            violation(side, &format!("close code {code}"), 1002, |p| p.frame(FIN | CLOSE, &code.to_be_bytes())).await;
        }
    }
}

#[tokio::test]
async fn close_with_one_byte_payload_fails_1002() {
    for side in BOTH {
        violation(side, "close payload of 1 byte", 1002, |p| p.frame(FIN | CLOSE, &[0x03])).await;
    }
}

#[tokio::test]
async fn close_reason_invalid_utf8_fails_1007() {
    for side in BOTH {
        violation(side, "close reason with invalid UTF-8", 1007, |p| {
            p.frame(FIN | CLOSE, &[0x03, 0xe8, b'b', b'y', 0xff, b'e'])
        })
        .await;
    }
}

// --- Size limits -------------------------------------------------------------

#[tokio::test]
async fn frame_header_over_the_limit_fails_1009_without_the_payload() {
    for side in BOTH {
        for (name, op) in [("binary", BINARY), ("text", TEXT)] {
            let (mut peer, task) = open(side, &format!("{name} frame header declaring 10 MiB"), Some(LIMIT)).await;
            // Only the header; the raw peer then waits for tether's verdict.
            let header = peer.header(FIN | op, 10 << 20);
            peer.write(&header).await;
            let before = expect_failure(peer, task, ErrorKind::Protocol, 1009).await;
            assert!(before.is_empty(), "tether {side:?}: {before:?}");
        }
    }
}

#[tokio::test]
async fn fragments_adding_up_past_the_limit_fail_1009() {
    for side in BOTH {
        let (mut peer, task) = open(side, "fragments adding up past the limit", Some(LIMIT)).await;
        peer.send(BINARY, &[1u8; 600]).await;
        peer.send(CONT, &[2u8; 300]).await;
        // 900 so far; this header brings it to 1200. Its payload never comes.
        let header = peer.header(FIN | CONT, 300);
        peer.write(&header).await;
        let before = expect_failure(peer, task, ErrorKind::Protocol, 1009).await;
        assert!(before.is_empty(), "tether {side:?}: {before:?}");
    }
}

#[tokio::test]
async fn message_of_exactly_the_limit_is_accepted() {
    for side in BOTH {
        let (mut peer, task) = open(side, "fragmented message of exactly the limit", Some(LIMIT)).await;
        peer.send(BINARY, &[1u8; 600]).await;
        peer.send(FIN | CONT, &[2u8; LIMIT - 600]).await;
        peer.send(FIN | TEXT, "é".repeat(LIMIT / 2).as_bytes()).await;
        let msgs = close_cleanly(side, peer, task).await;
        assert_eq!(msgs[0].len(), LIMIT, "tether {side:?}");
        assert_eq!(msgs[1].len(), LIMIT, "tether {side:?}");
        assert!(msgs[1].is_text(), "tether {side:?}");
    }
}

// --- Abrupt end of the connection --------------------------------------------

/// The raw peer sends `bytes` and half-closes TCP: tether must report
/// `Closed` with 1006, send no close frame, and close TCP in turn.
async fn abrupt_eof(side: Side, case: &str, build: impl Fn(&RawPeer) -> Vec<u8>) {
    let (mut peer, task) = open(side, case, None).await;
    let bytes = build(&peer);
    peer.write(&bytes).await;
    peer.shutdown_write().await;
    peer.expect_eof().await;
    let label = peer.label.clone();
    let out = join(&label, task).await;
    let before = check_failed(&label, &out, ErrorKind::Closed, 1006);
    assert!(before.is_empty(), "{label}: {before:?}");
}

#[tokio::test]
async fn eof_mid_frame_is_abnormal_closure_1006() {
    for side in BOTH {
        abrupt_eof(side, "EOF mid-payload", |p| {
            let mut b = p.header(FIN | BINARY, 100);
            b.extend_from_slice(&[0u8; 10]);
            b
        })
        .await;
        abrupt_eof(side, "EOF mid-header", |p| p.header(FIN | BINARY, 70_000)[..3].to_vec()).await;
        abrupt_eof(side, "EOF mid-fragmented message", |p| p.frame(TEXT, b"first")).await;
        abrupt_eof(side, "EOF between messages", |_| Vec::new()).await;
    }
}

// --- Opening handshake: tether as a server ---------------------------------------

/// Sends `request` to a tether server; returns the raw response and the
/// error `accept()` returned.
async fn refused(request: &[u8]) -> (String, tether::Error) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let (tcp, _) = within("tether side accept", listener.accept()).await.expect("accept");
        match ServerBuilder::new().accept(tcp).await {
            Ok(ws) => panic!("accept() succeeded: {ws:?}"),
            Err(e) => e,
        }
    });
    let stream = within("raw connect", tokio::net::TcpStream::connect(addr)).await.expect("connect");
    let mut peer = RawPeer::new(stream, true);
    peer.label = format!("request {:?}", String::from_utf8_lossy(&request[..request.len().min(60)]));
    peer.write(request).await;
    let resp = String::from_utf8_lossy(&peer.read_to_end().await).into_owned();
    let err = join(&peer.label, task).await;
    (resp, err)
}

async fn assert_refused(request: &str, status: u16) -> String {
    let (resp, err) = refused(request.as_bytes()).await;
    assert!(resp.starts_with(&format!("HTTP/1.1 {status} ")), "expected {status}, got {resp:?}");
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err:?}");
    assert!(matches!(err.proto_error(), Some(ProtoError::Handshake(_))), "{err:?}");
    resp
}

#[tokio::test]
async fn server_refuses_non_get_405() {
    assert_refused(&upgrade_request("").replacen("GET", "POST", 1), 405).await;
}

#[tokio::test]
async fn server_refuses_http_1_0_505() {
    assert_refused(&upgrade_request("").replacen("HTTP/1.1", "HTTP/1.0", 1), 505).await;
}

#[tokio::test]
async fn server_refuses_missing_key_400() {
    assert_refused(&upgrade_request("").replacen(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "", 1), 400).await;
}

#[tokio::test]
async fn server_refuses_version_8_426_naming_13() {
    let resp = assert_refused(&upgrade_request("").replacen("Version: 13", "Version: 8", 1), 426).await;
    let head = resp.split("\r\n\r\n").next().unwrap_or_default();
    assert_eq!(header_value(head, "sec-websocket-version").as_deref(), Some("13"), "{resp:?}");
}

#[tokio::test]
async fn server_refuses_request_line_over_8k_414() {
    let long = format!("GET /{} HTTP/1.1", "a".repeat(9000));
    assert_refused(&upgrade_request("").replacen("GET / HTTP/1.1", &long, 1), 414).await;
}

/// A valid request with `total` header fields in all.
fn request_with_headers(total: usize) -> String {
    // upgrade_request has 5 header fields of its own.
    let extra: String = (0..total - 5).map(|i| format!("X-Filler-{i}: v\r\n")).collect();
    upgrade_request(&extra)
}

#[tokio::test]
async fn server_refuses_129_headers_431() {
    assert_refused(&request_with_headers(129), 431).await;
}

#[tokio::test]
async fn server_accepts_128_headers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let (tcp, _) = within("tether side accept", listener.accept()).await.expect("accept");
        ServerBuilder::new().accept(tcp).await.map(|ws| ws.request().map(|r| r.headers.len()))
    });
    let stream = within("raw connect", tokio::net::TcpStream::connect(addr)).await.expect("connect");
    let mut peer = RawPeer::new(stream, true);
    peer.write(request_with_headers(128).as_bytes()).await;
    let head = peer.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let n = join("128 headers", task).await.expect("accept() with 128 headers");
    assert_eq!(n, Some(128));
}

// --- Opening handshake: tether as a client ---------------------------------------

/// Runs a tether client (from `builder`) against a raw server that reads the
/// request and answers `respond(key)` (or nothing, for `None`), keeping the
/// connection open until the client is done. Returns the client's error.
async fn client_refused<B, R>(builder: B, respond: R) -> tether::Error
where
    B: FnOnce(String) -> ClientBuilder + Send + 'static,
    R: FnOnce(&str) -> Option<Vec<u8>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let task = tokio::spawn(async move {
        match builder(url).connect().await {
            Ok(ws) => panic!("connect() succeeded: {ws:?}"),
            Err(e) => e,
        }
    });
    let (mut peer, head) = RawPeer::accept_raw(&listener).await;
    let key = header_value(&head, "sec-websocket-key").expect("Sec-WebSocket-Key");
    match respond(&key) {
        // The client may stop reading once it has seen enough (a large
        // body): a failed write is fine.
        Some(resp) => {
            let _ = tokio::time::timeout(IO_TIMEOUT, tokio::io::AsyncWriteExt::write_all(&mut peer_stream(&mut peer), &resp))
                .await;
        }
        None => drop(peer),
    }
    join("client handshake", task).await
}

/// The raw peer's stream, for writes whose failure is expected.
fn peer_stream(peer: &mut RawPeer) -> RawWriter<'_> {
    RawWriter(peer)
}

/// Writes through a [`RawPeer`] without panicking on errors.
struct RawWriter<'a>(&'a mut RawPeer);

impl tokio::io::AsyncWrite for RawWriter<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(self.get_mut().0.stream_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(self.get_mut().0.stream_mut()).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(self.get_mut().0.stream_mut()).poll_shutdown(cx)
    }
}
