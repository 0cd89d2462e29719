//! Interoperability with real third-party peers: Python `websockets` and
//! Node `ws`, pinned and installed by `interop/install.sh`, speaking the
//! command protocol of `interop/PROTOCOL.md`.
//!
//! - Direction A (`*_server_*`): a peer server (`py_server.py`,
//!   `node_server.js`, or tether's own protocol server for reference) and
//!   tether's client.
//! - Direction B (`*_client_against_tether_server`): tether's server running
//!   the command protocol in-process, and the peers' scripted clients
//!   (`py_client.py`, `node_client.js`) as child processes.
//!
//! The peers are installed by the tests themselves (once per test binary);
//! if that fails the tests fail, they are never skipped.

mod peers;
mod protocol;

use peers::{peers, start_server, Peer, PeerProcess};
use protocol::{
    assert_client_report, assert_same, expect_too_big, fragment_size, kind, next_within, pattern,
    send, ProtocolServer, SIZES,
};
use std::future::Future;
use std::time::Duration;

use tether::{
    Bytes, ClientBuilder, CloseCode, CloseFrame, ErrorKind, Message, ServerBuilder, State,
    WebSocket,
};

/// Upper bound for one whole test (not counting the one-time install).
const TEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for any single receive.
const RECV_TIMEOUT: Duration = Duration::from_secs(10);
/// The message limit used where the default is not under test.
const BIG_LIMIT: usize = 16 << 20;

// ---------------------------------------------------------------------------
// Servers for tether's client
// ---------------------------------------------------------------------------

/// What a Direction A check runs against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    /// A peer's server process.
    Peer(Peer),
    /// tether's own command-protocol server, in-process: the reference that
    /// the Direction B server is checked against.
    Tether,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Server::Peer(peer) => peer.fmt(f),
            Server::Tether => f.write_str("Tether"),
        }
    }
}

/// A server to test tether's client against: a peer process, or tether's
/// protocol server in-process.
enum PeerServer {
    Process(PeerProcess),
    InProcess(ProtocolServer),
}

impl PeerServer {
    /// Starts the server and returns it with its `ws://` URL.
    async fn start(server: Server) -> (PeerServer, String) {
        match server {
            Server::Tether => {
                let server = protocol_server().await;
                let url = format!("ws://{}/", server.local_addr());
                (PeerServer::InProcess(server), url)
            }
            Server::Peer(peer) => {
                let (proc_, addr) = start_server(peer, &[]).await;
                (PeerServer::Process(proc_), format!("ws://{addr}/"))
            }
        }
    }

    async fn stop(self) {
        match self {
            PeerServer::Process(mut p) => {
                p.assert_running();
                drop(p);
            }
            PeerServer::InProcess(s) => s.shutdown().await,
        }
    }
}

/// Runs one client check against a fresh `server`, within the test timeout.
async fn with_peer_server<F, Fut>(server: Server, check: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    if server != Server::Tether {
        peers();
    }
    let (running, url) = PeerServer::start(server).await;
    if tokio::time::timeout(TEST_TIMEOUT, check(url))
        .await
        .is_err()
    {
        panic!("{server:?} server: check timed out after {TEST_TIMEOUT:?}");
    }
    running.stop().await;
}

// ---------------------------------------------------------------------------
// Helpers for tether's side
// ---------------------------------------------------------------------------

/// The next message, which must arrive within the receive timeout.
async fn next(ws: &mut WebSocket, what: &str) -> Message {
    next_within(ws, RECV_TIMEOUT, what).await
}

/// Asserts that the stream has ended.
async fn expect_end(ws: &mut WebSocket, what: &str) {
    match tokio::time::timeout(RECV_TIMEOUT, ws.recv()).await {
        Ok(None) => {}
        Ok(Some(r)) => panic!("{what}: expected the end of the stream, got {r:?}"),
        Err(_) => panic!("{what}: the stream did not end within {RECV_TIMEOUT:?}"),
    }
    assert_eq!(ws.state(), State::Closed, "{what}: state after the end");
}

async fn client(url: &str) -> WebSocket {
    ClientBuilder::new(url)
        .max_message_size(Some(BIG_LIMIT))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Checks a close message: its code, and its reason unless `reason` is
/// `None` (an echo of the client's close must carry the same code; Python
/// and Node echo the reason too, tether's server echoes an empty reason).
#[track_caller]
fn assert_close(msg: &Message, code: u16, reason: Option<&str>, what: &str) {
    match msg {
        Message::Close(Some(f)) => {
            assert_eq!(f.code.0, code, "{what}: close code (frame {f:?})");
            if let Some(reason) = reason {
                assert_eq!(f.reason.as_str(), reason, "{what}: close reason");
            }
        }
        other => panic!("{what}: expected Close({code} {reason:?}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Direction A: tether's client against a peer server
// ---------------------------------------------------------------------------

/// Text and binary messages of every size come back exactly.
async fn echo_sizes(url: String) {
    let mut ws = client(&url).await;
    for binary in [false, true] {
        for size in SIZES {
            let msg = pattern(binary, size);
            let what = format!("echo of {} {size}", kind(&msg));
            send(&mut ws, msg.clone(), &what).await;
            assert_same(&next(&mut ws, &what).await, &msg, &what);
        }
    }
    ws.close(CloseCode::NORMAL, "").await.expect("close");
}

/// The default 1 MiB limit accepts a message of exactly 1 MiB, and refuses
/// one byte more with 1009.
async fn default_limit(url: String) {
    let mut ws = tether::connect(&url)
        .await
        .expect("connect with the defaults");
    for binary in [false, true] {
        let msg = pattern(binary, 1 << 20);
        let what = format!("default limit: echo of 1 MiB {}", kind(&msg));
        send(&mut ws, msg.clone(), &what).await;
        assert_same(&next(&mut ws, &what).await, &msg, &what);
    }
    let what = "default limit: echo of 1 MiB + 1";
    send(&mut ws, pattern(true, (1 << 20) + 1), what).await;
    expect_too_big(&mut ws, RECV_TIMEOUT, what).await;
    match tokio::time::timeout(RECV_TIMEOUT, ws.recv()).await {
        Ok(None) => {}
        other => panic!("{what}: expected the end of the stream after the error, got {other:?}"),
    }
}

/// The text of PROTOCOL.md's `echo-fragmented-text`: 70006 bytes of UTF-8.
fn multibyte_text() -> String {
    "héllo wörld €".repeat(4118)
}

/// A fragment size for `data` under which most fragment boundaries fall
/// inside a multibyte UTF-8 sequence.
fn splitting_fragment_size(data: &[u8]) -> (usize, usize) {
    let inside = |f: usize| {
        (f..data.len())
            .step_by(f)
            .filter(|&i| data[i] & 0xC0 == 0x80)
            .count()
    };
    let best = (9000..11000).max_by_key(|&f| (inside(f), f)).unwrap();
    (best, inside(best))
}

/// Fragmented messages sent with `send_fragmented` come back whole.
async fn echo_fragmented(url: String) {
    let mut ws = client(&url).await;

    let text = multibyte_text();
    let (size, split) = splitting_fragment_size(text.as_bytes());
    assert!(split >= 3, "only {split} boundaries inside characters");
    let msg = Message::text(text.clone());
    let what = format!("fragmented text, {} bytes in frames of {size}", text.len());
    ws.send_fragmented(msg.clone(), size)
        .await
        .expect("send_fragmented");
    assert_same(&next(&mut ws, &what).await, &msg, &what);

    // One byte per frame: every character is split.
    let msg = Message::text("héllo wörld €");
    ws.send_fragmented(msg.clone(), 1)
        .await
        .expect("send_fragmented");
    assert_same(
        &next(&mut ws, "text in 1-byte frames").await,
        &msg,
        "text in 1-byte frames",
    );

    let blob: Vec<u8> = (0..100_000usize)
        .map(|i| ((i * 7 + 3) % 256) as u8)
        .collect();
    let msg = Message::binary(blob);
    ws.send_fragmented(msg.clone(), 16_384)
        .await
        .expect("send_fragmented");
    assert_same(
        &next(&mut ws, "fragmented binary").await,
        &msg,
        "fragmented binary",
    );

    let msg = Message::binary(vec![1u8, 2, 3, 4, 5, 6, 7]);
    ws.send_fragmented(msg.clone(), 1)
        .await
        .expect("send_fragmented");
    assert_same(
        &next(&mut ws, "binary in 1-byte frames").await,
        &msg,
        "binary in 1-byte frames",
    );

    // A data message still echoes normally afterwards.
    let msg = Message::text("after");
    send(&mut ws, msg.clone(), "after").await;
    assert_same(&next(&mut ws, "after").await, &msg, "after");
    ws.close(CloseCode::NORMAL, "").await.expect("close");
}

/// Client pings are answered with the same payload; server pings (`!ping`)
/// are answered automatically by tether.
async fn pings(url: String) {
    let mut ws = client(&url).await;
    for payload in [&b"tether-ping"[..], &[], &[0xabu8; 125]] {
        let what = format!("pong for a ping of {} bytes", payload.len());
        ws.ping(Bytes::copy_from_slice(payload))
            .await
            .expect("ping");
        assert_same(
            &next(&mut ws, &what).await,
            &Message::Pong(Bytes::copy_from_slice(payload)),
            &what,
        );
    }

    send(&mut ws, Message::text("!ping 0102ff"), "!ping").await;
    let ping = next(&mut ws, "server's ping").await;
    assert_same(
        &ping,
        &Message::Ping(Bytes::from_static(&[1, 2, 0xff])),
        "server's ping",
    );
    assert_same(
        &next(&mut ws, "!pong").await,
        &Message::text("!pong 0102ff"),
        "!pong",
    );

    send(&mut ws, Message::text("!ping"), "!ping (empty)").await;
    assert_same(
        &next(&mut ws, "empty ping").await,
        &Message::Ping(Bytes::new()),
        "empty ping",
    );
    assert_same(
        &next(&mut ws, "!pong (empty)").await,
        &Message::text("!pong"),
        "!pong (empty)",
    );

    // The largest control payload, from the server.
    let payload: Vec<u8> = (0..125u8).map(|i| i.wrapping_mul(37)).collect();
    let hexed: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    send(
        &mut ws,
        Message::text(format!("!ping {hexed}")),
        "!ping (125)",
    )
    .await;
    assert_same(
        &next(&mut ws, "125-byte ping").await,
        &Message::Ping(payload.into()),
        "125-byte ping",
    );
    assert_same(
        &next(&mut ws, "!pong (125)").await,
        &Message::text(format!("!pong {hexed}")),
        "!pong (125)",
    );

    let msg = Message::text("still open");
    send(&mut ws, msg.clone(), "echo after pings").await;
    assert_same(
        &next(&mut ws, "echo after pings").await,
        &msg,
        "echo after pings",
    );
    ws.close(CloseCode::NORMAL, "").await.expect("close");
}

/// `!frag` messages arrive as one complete message with the right pattern.
async fn server_frag(url: String) {
    let mut ws = client(&url).await;
    for (binary, size, parts) in [
        (false, 70000, 5),
        (true, 65536, 4),
        (false, 26, 1),
        (true, 1000, 2),
    ] {
        let k = if binary { "binary" } else { "text" };
        let what = format!("!frag {k} {size} {parts}");
        send(&mut ws, Message::text(what.clone()), &what).await;
        assert_same(&next(&mut ws, &what).await, &pattern(binary, size), &what);
    }
    ws.close(CloseCode::NORMAL, "").await.expect("close");
}

/// Closing handshakes started by either side carry the right codes.
async fn close_codes(url: String) {
    // tether closes with a close message, then reads the peer's echo.
    let mut ws = client(&url).await;
    let what = "client close 4001 (send)";
    send(
        &mut ws,
        Message::Close(Some(CloseFrame::new(4001, "bye"))),
        what,
    )
    .await;
    let echo = next(&mut ws, what).await;
    assert_close(&echo, 4001, None, what);
    expect_end(&mut ws, what).await;
    let err = ws
        .send(Message::text("late"))
        .await
        .expect_err("send after close");
    assert_eq!(
        err.kind(),
        ErrorKind::Closed,
        "{what}: send after close: {err}"
    );

    // tether closes with WebSocket::close, which waits for the echo.
    let mut ws = client(&url).await;
    let what = "client close 4001 (close)";
    ws.close(4001, "bye")
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(ws.state(), State::Closed, "{what}: state");
    let echo = ws.close_received().flatten().cloned();
    assert_close(&Message::Close(echo), 4001, None, what);

    // Normal closure with an empty reason.
    let mut ws = client(&url).await;
    let what = "client close 1000";
    ws.close(CloseCode::NORMAL, "")
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let echo = ws.close_received().flatten().cloned();
    assert_close(&Message::Close(echo), 1000, None, what);

    // The server closes; tether answers and the stream ends.
    let mut ws = client(&url).await;
    let what = "server close 4002";
    send(&mut ws, Message::text("!close 4002 server-bye"), what).await;
    let close = next(&mut ws, what).await;
    assert_close(&close, 4002, Some("server-bye"), what);
    expect_end(&mut ws, what).await;
    let err = ws
        .send(Message::text("late"))
        .await
        .expect_err("send after the server closed");
    assert_eq!(
        err.kind(),
        ErrorKind::Closed,
        "{what}: send after close: {err}"
    );

    // A close frame without a status code is echoed without one (1005).
    let mut ws = client(&url).await;
    let what = "client close without a code";
    send(&mut ws, Message::Close(None), what).await;
    match next(&mut ws, what).await {
        Message::Close(None) => {}
        other => panic!("{what}: expected Close(None), got {other:?}"),
    }
    expect_end(&mut ws, what).await;

    // The longest reason (123 bytes), multibyte, from the server.
    let mut ws = client(&url).await;
    let reason = "€".repeat(41);
    let what = "server close with a 123-byte reason";
    send(
        &mut ws,
        Message::text(format!("!close 3000 {reason}")),
        what,
    )
    .await;
    let close = next(&mut ws, what).await;
    assert_close(&close, 3000, Some(&reason), what);
    expect_end(&mut ws, what).await;
}

/// Many messages sent before reading any, with a `!ping` near the end, come
/// back in order (the peer holds later messages until its pong arrives).
///
/// At most 3 messages follow the `!ping`: Python `websockets` stops reading
/// the socket while more than `max_queue / 4` (= 4) received frames wait
/// unread, so with more queued behind the `!ping` its handler, blocked
/// waiting for the pong, never reads the pong (its own client deadlocks the
/// same way).
async fn pipelined(url: String) {
    let mut ws = client(&url).await;
    let mut expected = Vec::new();
    for i in 0..100usize {
        let msg = if i % 3 == 0 {
            Message::binary(vec![i as u8; i * 13])
        } else {
            Message::text(format!("msg {i} {}", "é".repeat(i * 5)))
        };
        send(&mut ws, msg.clone(), "pipelined send").await;
        expected.push(msg);
        if i == 96 {
            send(&mut ws, Message::text("!ping 3132"), "pipelined !ping").await;
            expected.push(Message::Ping(Bytes::from_static(b"12")));
            expected.push(Message::text("!pong 3132"));
        }
    }
    for (i, want) in expected.iter().enumerate() {
        let what = format!("pipelined message {i}");
        assert_same(&next(&mut ws, &what).await, want, &what);
    }
    ws.close(CloseCode::NORMAL, "").await.expect("close");
}

/// Split halves: a writer task streams 1 MiB messages while the reader
/// takes their echoes concurrently (neither side could finish alone), pings
/// are answered while split, and the writer's close ends the reader.
async fn split_halves(url: String) {
    let (mut reader, writer) = client(&url).await.split();
    let msgs: Vec<Message> = (0..8).map(|i| pattern(i % 2 == 1, (1 << 20) + i)).collect();
    let to_send = msgs.clone();
    let sender = tokio::spawn(async move {
        for m in to_send {
            writer.send(m).await.expect("split send");
        }
        writer
            .send(Message::text("!ping 0a0b"))
            .await
            .expect("split send !ping");
        writer
            .send(Message::text("last"))
            .await
            .expect("split send last");
        writer
    });
    let mut expected = msgs;
    expected.push(Message::Ping(Bytes::from_static(&[0x0a, 0x0b])));
    expected.push(Message::text("!pong 0a0b"));
    expected.push(Message::text("last"));
    for (i, want) in expected.iter().enumerate() {
        let what = format!("split: message {i}");
        let got = match tokio::time::timeout(RECV_TIMEOUT, reader.recv()).await {
            Ok(Some(Ok(m))) => m,
            other => panic!("{what}: expected {}, got {other:?}", kind(want)),
        };
        assert_same(&got, want, &what);
    }
    let writer = sender.await.expect("writer task");
    writer.close(4003, "split").await.expect("split close");
    let what = "split: close echo";
    match tokio::time::timeout(RECV_TIMEOUT, reader.recv()).await {
        Ok(Some(Ok(m))) => assert_close(&m, 4003, None, what),
        other => panic!("{what}: expected Close(4003), got {other:?}"),
    }
    match tokio::time::timeout(RECV_TIMEOUT, reader.recv()).await {
        Ok(None) => {}
        other => panic!("split: expected the end of the stream, got {other:?}"),
    }
}

/// Malformed commands get `!error ...` and the connection stays open.
async fn malformed_commands(url: String) {
    let mut ws = client(&url).await;
    for cmd in [
        "!nope",
        "!ping zz",
        "!ping 010",
        "!frag bogus 1 1",
        "!frag text x 1",
        "!frag text 10 0",
        "!close abc",
    ] {
        send(&mut ws, Message::text(cmd), cmd).await;
        match next(&mut ws, cmd).await {
            Message::Text(t) if t.starts_with("!error") => {}
            other => panic!("{cmd}: expected `!error ...`, got {other:?}"),
        }
    }
    let msg = Message::text("still open");
    send(&mut ws, msg.clone(), "echo after errors").await;
    assert_same(
        &next(&mut ws, "echo after errors").await,
        &msg,
        "echo after errors",
    );
    ws.close(CloseCode::NORMAL, "").await.expect("close");
}

/// One test per (server, check): `python_server_echo_sizes`, ...
macro_rules! against_servers {
    ($($check:ident => $py:ident, $node:ident, $tether:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $py() {
            with_peer_server(Server::Peer(Peer::Python), $check).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $node() {
            with_peer_server(Server::Peer(Peer::Node), $check).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $tether() {
            with_peer_server(Server::Tether, $check).await;
        }
    )*};
}

against_servers! {
    echo_sizes => python_server_echo_sizes, node_server_echo_sizes, tether_server_echo_sizes;
    default_limit => python_server_default_limit, node_server_default_limit, tether_server_default_limit;
    echo_fragmented => python_server_echo_fragmented, node_server_echo_fragmented, tether_server_echo_fragmented;
    pings => python_server_pings, node_server_pings, tether_server_pings;
    server_frag => python_server_frag, node_server_frag, tether_server_frag;
    close_codes => python_server_close_codes, node_server_close_codes, tether_server_close_codes;
    malformed_commands => python_server_malformed_commands, node_server_malformed_commands,
        tether_server_malformed_commands;
    pipelined => python_server_pipelined, node_server_pipelined, tether_server_pipelined;
    split_halves => python_server_split, node_server_split, tether_server_split;
}

// ---------------------------------------------------------------------------
// Direction B: peer clients against tether's server
// ---------------------------------------------------------------------------

/// Starts tether's command-protocol server on an ephemeral port.
async fn protocol_server() -> ProtocolServer {
    ProtocolServer::start(ServerBuilder::new().max_message_size(Some(BIG_LIMIT))).await
}

#[test]
fn fragment_size_gives_exactly_parts_frames() {
    assert_eq!(fragment_size(70000, 5), Some(14000));
    assert_eq!(fragment_size(65536, 4), Some(16384));
    assert_eq!(fragment_size(10, 4), Some(3)); // 3 + 3 + 3 + 1
    assert_eq!(fragment_size(10, 6), None); // 2 gives 5 frames, 1 gives 10
    assert_eq!(fragment_size(3, 5), None);
    assert_eq!(fragment_size(0, 1), Some(1));
    assert_eq!(fragment_size(1, 1), Some(1));
    for size in 1..200 {
        for parts in 1..=size {
            if let Some(f) = fragment_size(size, parts) {
                assert_eq!(size.div_ceil(f), parts, "{size} bytes in frames of {f}");
            }
        }
    }
}

/// Runs a peer client script against a fresh tether protocol server and
/// checks its report and the close codes the server saw.
async fn peer_client_against_tether_server(peer: Peer, script: &str) {
    peers();
    let server = protocol_server().await;
    let url = format!("ws://{}/", server.local_addr());

    let (mut proc_, stdout) = PeerProcess::spawn(peer, script, &[&url]);
    let (status, out) = proc_.finish(stdout, TEST_TIMEOUT, script).await;
    assert!(
        status.success(),
        "{script} against tether's server failed ({status}):\n{out}"
    );
    assert_client_report(&out, &[], script);
    server.wait_for_client_closes(script).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_against_tether_server() {
    peer_client_against_tether_server(Peer::Python, "py_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_against_tether_server() {
    peer_client_against_tether_server(Peer::Node, "node_client.js").await;
}
