//! permessage-deflate (RFC 7692) interoperability with Python `websockets`
//! and Node `ws` (pinned, installed by `interop/install.sh`), for every
//! combination of `server_no_context_takeover` / `client_no_context_takeover`
//! and for limited windows, each requested by the client or imposed by the
//! server.
//!
//! - Direction A (`*_server_*`): tether's client against a peer server
//!   started with deflate options (`py_server.py --deflate ...`,
//!   `node_server.js --deflate ...`).
//! - Direction B (`*_client_*`): the peers' scripted clients, run with deflate
//!   options, against tether's server running the command protocol of
//!   `interop/PROTOCOL.md` (plus `!ext` / `!offer`) with compression settings
//!   per case.
//!
//! Every connection goes through a byte-counting relay, so the tests check
//! that messages really were compressed on the wire (both ways), and that
//! `*_no_context_takeover` really makes each end restart its compressor:
//! the same message sent twice takes the same number of bytes with it, and
//! far fewer the second time without it.
//!
//! The peers are installed by the tests themselves; if that fails, the tests
//! fail, they are never skipped.

mod peers;
mod protocol;
mod relay;

use peers::{peers, start_server, Peer, PeerProcess};
use protocol::{
    assert_client_report, assert_same, expect_too_big, next_within, pattern, send, ProtocolServer,
};
use relay::Relay;
use std::time::Duration;
use tether::tether_proto::deflate::{DeflateConfig, DeflateParams};
use tether::{Bytes, ClientBuilder, CloseCode, Message, ServerBuilder, WebSocket};

/// Upper bound for one whole test (not counting the one-time install). The
/// peers' clients exchange megabytes through debug-built zlib-rs.
const TEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Upper bound for any single receive.
const RECV_TIMEOUT: Duration = Duration::from_secs(20);
/// The message limit where the limit is not under test.
const BIG_LIMIT: usize = 16 << 20;

// ---------------------------------------------------------------------------
// Settings and payloads
// ---------------------------------------------------------------------------

/// A client configuration: tether's defaults plus what it requests.
fn offer(
    snct: bool,
    cnct: bool,
    server_bits: Option<u8>,
    client_bits: Option<u8>,
) -> DeflateConfig {
    let mut c = DeflateConfig::default();
    c.server_no_context_takeover = snct;
    c.client_no_context_takeover = cnct;
    c.server_max_window_bits = server_bits;
    c.client_max_window_bits = client_bits;
    c
}

/// A server configuration: tether's server defaults (12-bit server window)
/// plus what it imposes.
fn impose(
    snct: bool,
    cnct: bool,
    server_bits: Option<u8>,
    client_bits: Option<u8>,
) -> DeflateConfig {
    let mut c = DeflateConfig::server_default();
    c.server_no_context_takeover = snct;
    c.client_no_context_takeover = cnct;
    if server_bits.is_some() {
        c.server_max_window_bits = server_bits;
    }
    c.client_max_window_bits = client_bits;
    c
}

/// The parameters both ends must agree on.
fn agreed(
    snct: bool,
    cnct: bool,
    server_bits: Option<u8>,
    client_bits: Option<u8>,
) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }
}

/// JSON-like text of exactly `len` bytes (ASCII): records that differ in a
/// few fields, as real JSON traffic does.
fn json_text(len: usize) -> String {
    let mut s = String::with_capacity(len + 128);
    s.push('[');
    let mut k = 0u64;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{k},\"name\":\"item-{}\",\"price\":{}.{:02},\"tags\":[\"red\",\"large\"],\"ok\":{}}},",
            k * 7919 % 1000,
            k * 31 % 500,
            k * 17 % 100,
            k % 3 == 0
        ));
        k += 1;
    }
    s.truncate(len);
    s
}

/// Pseudo-random bytes (xorshift): incompressible.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The message sent twice to see context takeover at work: ~300 bytes,
/// compressible within itself, and much more so with the previous copy in
/// the window (it fits in the smallest, 512-byte window).
fn context_message() -> Message {
    Message::text(
        "{\"type\":\"quote\",\"symbol\":\"TETHER\",\"venue\":\"XWBS\",\"bid\":101.25,\
         \"ask\":101.5,\"sizes\":[100,250,500,1000],\"flags\":{\"halted\":false,\
         \"auction\":false},\"trader\":\"héllo wörld €\",\"seq\":1,\"note\":\"the same \
         message, again and again, so that the second copy compresses to a few bytes\"}",
    )
}

/// The next message, which must arrive within the receive timeout.
async fn next(ws: &mut WebSocket, what: &str) -> Message {
    next_within(ws, RECV_TIMEOUT, what).await
}

async fn echo(ws: &mut WebSocket, msg: Message, what: &str) {
    send(ws, msg.clone(), what).await;
    assert_same(&next(ws, what).await, &msg, what);
}

/// Echoes `msg` through the relay and returns the bytes it took on the wire
/// each way (frame header included).
async fn echo_measured(ws: &mut WebSocket, relay: &Relay, msg: Message, what: &str) -> (u64, u64) {
    let (u0, d0) = relay.counts();
    echo(ws, msg, what).await;
    let (u1, d1) = relay.counts();
    (u1 - u0, d1 - d0)
}

// ---------------------------------------------------------------------------
// Direction A: tether's client against a peer server
// ---------------------------------------------------------------------------

/// Starts the peer server with `peer_args`, then runs the client checks with
/// tether offering `cfg`; `want` is what both must agree on.
async fn tether_client_case(
    peer: Peer,
    peer_args: &[&str],
    cfg: DeflateConfig,
    want: DeflateParams,
) {
    peers();
    let (mut server, addr) = start_server(peer, peer_args).await;
    let relay = Relay::start(addr).await;
    let url = format!("ws://{}/", relay.addr());
    let ctx = format!(
        "{} with tether offering {:?}",
        server.name,
        cfg.client_offer()
    );
    let checks = async {
        client_checks(&url, &relay, cfg, want, &ctx).await;
        limit_checks(&url, &relay, cfg, &ctx).await;
    };
    if tokio::time::timeout(TEST_TIMEOUT, checks).await.is_err() {
        panic!("{ctx}: timed out after {TEST_TIMEOUT:?}");
    }
    server.assert_running();
}

fn client(url: &str, cfg: DeflateConfig, limit: usize) -> ClientBuilder {
    ClientBuilder::new(url)
        .compression(Some(cfg))
        .max_message_size(Some(limit))
        .ping_interval(None) // no keepalive bytes in the counts
        .no_proxy()
}

async fn client_checks(
    url: &str,
    relay: &Relay,
    cfg: DeflateConfig,
    want: DeflateParams,
    ctx: &str,
) {
    let (mut ws, response) = client(url, cfg, BIG_LIMIT)
        .connect_with_response()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: connect: {e}"));
    let answered = response
        .header_str("sec-websocket-extensions")
        .unwrap_or("")
        .to_string();

    // First what the peer received: tether's offer, as configured.
    let what = format!("{ctx}: the offer the peer received (!offer)");
    echo_command(
        &mut ws,
        "!offer",
        &format!("!offer {}", cfg.client_offer()),
        &what,
    )
    .await;
    // Then what it answered, and what tether made of it.
    assert!(
        answered.starts_with("permessage-deflate"),
        "{ctx}: the server answered {answered:?}"
    );
    let what = format!("{ctx}: the answer the peer sent (!ext)");
    echo_command(&mut ws, "!ext", &format!("!ext {answered}"), &what).await;
    assert_eq!(
        ws.compression(),
        Some(want),
        "{ctx}: agreed parameters (the server answered {answered:?})"
    );

    context_takeover(&mut ws, relay, want, ctx).await;

    // Around tether's 128-byte threshold: below it tether sends the message
    // uncompressed, the peers compress everything (empty messages too).
    for binary in [false, true] {
        for size in [0, 1, 127, 128, 129, 1024] {
            let msg = pattern(binary, size);
            echo(
                &mut ws,
                msg,
                &format!(
                    "{ctx}: echo of {} {size}",
                    if binary { "binary" } else { "text" }
                ),
            )
            .await;
        }
    }

    // JSON-like text of 1 KiB and 64 KiB: compressed both ways.
    for len in [1024, 64 * 1024] {
        let msg = Message::text(json_text(len));
        let what = format!("{ctx}: echo of {len} bytes of JSON");
        let (up, down) = echo_measured(&mut ws, relay, msg, &what).await;
        let bound = len as u64 / 3;
        assert!(
            up < bound,
            "{what}: {up} bytes on the wire to the peer: not compressed"
        );
        assert!(
            down < bound,
            "{what}: {down} bytes on the wire from the peer: not compressed"
        );
    }
    // Binary, 100 KB: compressible (JSON bytes; and `i % 251`, which no
    // 9-bit window can compress: zlib matches at most 512 - 262 = 250 bytes
    // back), and incompressible (stored blocks).
    let what = format!("{ctx}: echo of 100 KB of binary JSON");
    let msg = Message::binary(json_text(100_000).into_bytes());
    let (up, down) = echo_measured(&mut ws, relay, msg, &what).await;
    assert!(
        up < 100_000 / 3 && down < 100_000 / 3,
        "{what}: {up}/{down} bytes on the wire"
    );
    echo(
        &mut ws,
        pattern(true, 100_000),
        &format!("{ctx}: echo of 100 KB of i % 251"),
    )
    .await;
    echo(
        &mut ws,
        Message::binary(noise(100_000)),
        &format!("{ctx}: echo of 100 KB of noise"),
    )
    .await;

    // Compressed messages that tether fragments: the compressed bytes are
    // split, RSV1 only on the first frame.
    let msg = Message::text(json_text(64 * 1024));
    let what = format!("{ctx}: 64 KiB of JSON, compressed, in frames of 100 bytes");
    ws.send_fragmented(msg.clone(), 100)
        .await
        .expect("send_fragmented");
    assert_same(&next(&mut ws, &what).await, &msg, &what);
    let msg = Message::binary(noise(100_000));
    let what = format!("{ctx}: 100 KB of noise, compressed, in frames of 16 KiB");
    ws.send_fragmented(msg.clone(), 16 * 1024)
        .await
        .expect("send_fragmented");
    assert_same(&next(&mut ws, &what).await, &msg, &what);
    let msg = Message::text("héllo wörld €".repeat(4118));
    let what = format!("{ctx}: 70006 bytes of UTF-8, compressed, in frames of 1000 bytes");
    ws.send_fragmented(msg.clone(), 1000)
        .await
        .expect("send_fragmented");
    assert_same(&next(&mut ws, &what).await, &msg, &what);
    // Below the threshold: an uncompressed fragmented message in between.
    let msg = Message::text("héllo");
    let what = format!("{ctx}: short text in 1-byte frames (uncompressed)");
    ws.send_fragmented(msg.clone(), 1)
        .await
        .expect("send_fragmented");
    assert_same(&next(&mut ws, &what).await, &msg, &what);

    // Compressed messages that the peer fragments (it compresses each frame
    // as a part of one message).
    for (cmd, want_msg) in [
        ("!frag text 70000 5", pattern(false, 70000)),
        ("!frag binary 65536 4", pattern(true, 65536)),
    ] {
        let what = format!("{ctx}: {cmd}");
        send(&mut ws, Message::text(cmd), &what).await;
        assert_same(&next(&mut ws, &what).await, &want_msg, &what);
    }

    // Several messages in a row, sent before any echo is read.
    let msgs: Vec<Message> = (0..20)
        .map(|k| Message::text(json_text(2000 + 37 * k)))
        .collect();
    for m in &msgs {
        send(&mut ws, m.clone(), "pipelined").await;
    }
    for (k, m) in msgs.iter().enumerate() {
        let what = format!("{ctx}: pipelined message {k}");
        assert_same(&next(&mut ws, &what).await, m, &what);
    }

    // Control frames are never compressed and still work.
    ws.ping(Bytes::from_static(b"deflate-ping"))
        .await
        .expect("ping");
    assert_same(
        &next(&mut ws, "pong").await,
        &Message::Pong(Bytes::from_static(b"deflate-ping")),
        &format!("{ctx}: pong"),
    );

    let what = format!("{ctx}: close");
    tokio::time::timeout(RECV_TIMEOUT, ws.close(CloseCode::NORMAL, "bye"))
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    match ws.close_received() {
        Some(Some(f)) => assert_eq!(f.code, CloseCode::NORMAL, "{what}: {f:?}"),
        other => panic!("{what}: the server's close frame: {other:?}"),
    }
}

/// Sends a command and expects one text answer.
async fn echo_command(ws: &mut WebSocket, cmd: &str, want: &str, what: &str) {
    send(ws, Message::text(cmd), what).await;
    assert_same(&next(ws, what).await, &Message::text(want), what);
}

/// The same message twice: with context takeover, the second copy takes a
/// fraction of the bytes of the first; with no_context_takeover, exactly as
/// many (the compressor restarts, so it produces the same bytes).
async fn context_takeover(ws: &mut WebSocket, relay: &Relay, want: DeflateParams, ctx: &str) {
    let msg = context_message();
    let len = msg.len() as u64;
    let (up1, down1) =
        echo_measured(ws, relay, msg.clone(), &format!("{ctx}: context message")).await;
    let (up2, down2) = echo_measured(
        ws,
        relay,
        msg.clone(),
        &format!("{ctx}: context message again"),
    )
    .await;
    let what = format!(
        "{ctx}: the {len}-byte message twice took {up1} then {up2} bytes to the peer, \
         {down1} then {down2} bytes back"
    );
    eprintln!("{what}");
    assert!(up1 < len && down1 < len, "{what}: not compressed");
    if want.client_no_context_takeover {
        assert_eq!(
            up2, up1,
            "{what}: with client_no_context_takeover tether must compress afresh"
        );
    } else {
        assert!(
            up2 * 3 < up1,
            "{what}: tether's compressor did not keep its context"
        );
    }
    if want.server_no_context_takeover {
        assert_eq!(
            down2, down1,
            "{what}: with server_no_context_takeover the peer compresses afresh"
        );
    } else {
        assert!(
            down2 * 3 < down1,
            "{what}: the peer's compressor did not keep its context"
        );
    }
}

/// tether's max_message_size applies to the inflated size: a message that
/// is small on the wire but over the limit once inflated fails with 1009;
/// one of exactly the limit passes.
async fn limit_checks(url: &str, relay: &Relay, cfg: DeflateConfig, ctx: &str) {
    let limit = 64 * 1024;
    let mut ws = client(url, cfg, limit)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: connect with a {limit}-byte limit: {e}"));
    let what = format!("{ctx}: echo of exactly the {limit}-byte limit");
    echo(&mut ws, Message::text(json_text(limit)), &what).await;

    let what = format!("{ctx}: echo of 100 KB with a {limit}-byte limit");
    let (_, d0) = relay.counts();
    send(&mut ws, Message::text(json_text(100_000)), &what).await;
    expect_too_big(&mut ws, RECV_TIMEOUT, &what).await;
    let (_, d1) = relay.counts();
    assert!(
        d1 - d0 < limit as u64 / 4,
        "{what}: the echo took {} bytes on the wire, so it was not compressed",
        d1 - d0
    );
    match tokio::time::timeout(RECV_TIMEOUT, ws.recv()).await {
        Ok(None) => {}
        other => panic!("{what}: expected the end of the stream after the error, got {other:?}"),
    }
}

/// One test per peer server for each case: `$py` / `$node`, the peer server's
/// options, tether's offer, and the agreed parameters with each peer.
macro_rules! server_cases {
    ($($py:ident, $node:ident: [$($arg:expr),*], $cfg:expr, py $pyw:expr, node $nodew:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $py() {
            tether_client_case(Peer::Python, &[$($arg),*], $cfg, $pyw).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $node() {
            tether_client_case(Peer::Node, &[$($arg),*], $cfg, $nodew).await;
        }
    )*};
}

server_cases! {
    // Library defaults on both sides: websockets limits both windows to 12
    // bits; ws accepts the offer as it is.
    python_server_defaults, node_server_defaults:
        ["--deflate"], offer(false, false, None, None),
        py agreed(false, false, Some(12), Some(12)), node agreed(false, false, None, None);
    // no_context_takeover requested by tether's client.
    python_server_tether_requests_server_nct, node_server_tether_requests_server_nct:
        ["--deflate"], offer(true, false, None, None),
        py agreed(true, false, Some(12), Some(12)), node agreed(true, false, None, None);
    python_server_tether_requests_client_nct, node_server_tether_requests_client_nct:
        ["--deflate"], offer(false, true, None, None),
        py agreed(false, true, Some(12), Some(12)), node agreed(false, true, None, None);
    python_server_tether_requests_both_nct, node_server_tether_requests_both_nct:
        ["--deflate"], offer(true, true, None, None),
        py agreed(true, true, Some(12), Some(12)), node agreed(true, true, None, None);
    // no_context_takeover imposed by the peer server.
    python_server_imposes_server_nct, node_server_imposes_server_nct:
        ["--server-no-context-takeover"], offer(false, false, None, None),
        py agreed(true, false, None, None), node agreed(true, false, None, None);
    python_server_imposes_client_nct, node_server_imposes_client_nct:
        ["--client-no-context-takeover"], offer(false, false, None, None),
        py agreed(false, true, None, None), node agreed(false, true, None, None);
    python_server_imposes_both_nct, node_server_imposes_both_nct:
        ["--server-no-context-takeover", "--client-no-context-takeover"], offer(false, false, None, None),
        py agreed(true, true, None, None), node agreed(true, true, None, None);
    // 10-bit windows, requested by tether's client, or imposed by the peer.
    python_server_tether_requests_window_bits, node_server_tether_requests_window_bits:
        ["--deflate"], offer(false, false, Some(10), Some(10)),
        py agreed(false, false, Some(10), Some(10)), node agreed(false, false, Some(10), Some(10));
    python_server_imposes_window_bits, node_server_imposes_window_bits:
        ["--server-max-window-bits", "10", "--client-max-window-bits", "10"], offer(false, false, None, None),
        py agreed(false, false, Some(10), Some(10)), node agreed(false, false, Some(10), Some(10));
    // Everything at once, with the smallest windows zlib supports.
    python_server_tether_requests_everything, node_server_tether_requests_everything:
        ["--deflate"], offer(true, true, Some(9), Some(9)),
        py agreed(true, true, Some(9), Some(9)), node agreed(true, true, Some(9), Some(9));
}

// ---------------------------------------------------------------------------
// Direction B: peer clients against tether's server
// ---------------------------------------------------------------------------

/// Runs the peer's client with `peer_args` against tether's server
/// configured with `server_cfg`; `want` is what they must agree on.
async fn peer_client_case(
    peer: Peer,
    peer_args: &[&str],
    server_cfg: DeflateConfig,
    want: DeflateParams,
) {
    peers();
    let server = ProtocolServer::start(
        ServerBuilder::new()
            .compression(Some(server_cfg))
            .max_message_size(Some(BIG_LIMIT))
            .ping_interval(None),
    )
    .await;
    let relay = Relay::start(server.local_addr()).await;
    let url = format!("ws://{}/", relay.addr());
    let script = peer.client_script();
    let mut args = peer_args.to_vec();
    args.push(&url);
    let (mut proc_, stdout) = PeerProcess::spawn(peer, script, &args);
    let ctx = format!("{} against tether's server with {server_cfg:?}", proc_.name);
    let (status, out) = proc_.finish(stdout, TEST_TIMEOUT, &ctx).await;
    assert!(status.success(), "{ctx}: failed ({status}):\n{out}");
    assert_client_report(
        &out,
        &["deflate-negotiated", "server-ext", "echo-context-takeover"],
        &ctx,
    );
    let header = want.to_header();
    assert!(
        out.lines().any(|l| l == format!("extensions {header}")),
        "{ctx}: the client did not report receiving {header:?}:\n{out}"
    );

    // Every connection (the shared one and the three closing checks)
    // negotiated the expected parameters.
    let seen = server.seen();
    assert!(
        seen.len() >= 4,
        "{ctx}: only {} connections: {seen:?}",
        seen.len()
    );
    for s in &seen {
        assert_eq!(
            s.compression,
            Some(want),
            "{ctx}: agreed parameters (offer {:?})",
            s.offer
        );
        assert!(
            s.offer
                .as_deref()
                .is_some_and(|o| o.starts_with("permessage-deflate")),
            "{ctx}: offer {:?}",
            s.offer
        );
    }

    // Over 2.5 MB of compressible payload went each way (echoes of 1 MiB
    // text and binary, among others): compressed, far less. Except with a
    // 9-bit window: zlib then matches at most 512 - 262 = 250 bytes back and
    // the binary pattern (i % 251) repeats every 251 bytes, so only the text
    // (about half) compresses.
    let nine = want.server_max_window_bits == Some(9) || want.client_max_window_bits == Some(9);
    let bound = if nine { 1_600_000 } else { 512 * 1024 };
    let (up, down) = relay.counts();
    assert!(
        up < bound,
        "{ctx}: {up} bytes from the client on the wire: not compressed"
    );
    assert!(
        down < bound,
        "{ctx}: {down} bytes from tether on the wire: not compressed"
    );

    server.wait_for_client_closes(&ctx).await;
    server.shutdown().await;
}

/// One test per peer client for each case: `$py` / `$node`, the client's
/// options, tether's server settings, and the agreed parameters.
macro_rules! client_cases {
    ($($py:ident, $node:ident: [$($arg:expr),*], $cfg:expr, $want:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $py() {
            peer_client_case(Peer::Python, &[$($arg),*], $cfg, $want).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $node() {
            peer_client_case(Peer::Node, &[$($arg),*], $cfg, $want).await;
        }
    )*};
}

client_cases! {
    // Library defaults: both clients offer `client_max_window_bits`; tether's
    // server limits its own window to 12 bits.
    python_client_defaults, node_client_defaults:
        ["--deflate"], impose(false, false, None, None), agreed(false, false, Some(12), None);
    // no_context_takeover imposed by tether's server.
    python_client_tether_imposes_server_nct, node_client_tether_imposes_server_nct:
        ["--deflate"], impose(true, false, None, None), agreed(true, false, Some(12), None);
    python_client_tether_imposes_client_nct, node_client_tether_imposes_client_nct:
        ["--deflate"], impose(false, true, None, None), agreed(false, true, Some(12), None);
    python_client_tether_imposes_both_nct, node_client_tether_imposes_both_nct:
        ["--deflate"], impose(true, true, None, None), agreed(true, true, Some(12), None);
    // no_context_takeover requested by the peer client.
    python_client_requests_server_nct, node_client_requests_server_nct:
        ["--server-no-context-takeover"], impose(false, false, None, None), agreed(true, false, Some(12), None);
    python_client_requests_client_nct, node_client_requests_client_nct:
        ["--client-no-context-takeover"], impose(false, false, None, None), agreed(false, true, Some(12), None);
    python_client_requests_both_nct, node_client_requests_both_nct:
        ["--server-no-context-takeover", "--client-no-context-takeover"], impose(false, false, None, None),
        agreed(true, true, Some(12), None);
    // 10-bit windows, requested by the peer client, or imposed by tether.
    python_client_requests_window_bits, node_client_requests_window_bits:
        ["--server-max-window-bits", "10", "--client-max-window-bits", "10"], impose(false, false, None, None),
        agreed(false, false, Some(10), Some(10));
    python_client_tether_imposes_window_bits, node_client_tether_imposes_window_bits:
        ["--deflate"], impose(false, false, Some(10), Some(10)), agreed(false, false, Some(10), Some(10));
    // Everything at once, with the smallest windows zlib supports.
    python_client_requests_everything, node_client_requests_everything:
        ["--server-no-context-takeover", "--client-no-context-takeover",
         "--server-max-window-bits", "9", "--client-max-window-bits", "9"],
        impose(false, false, None, None), agreed(true, true, Some(9), Some(9));
}
