//! A hostile peer: a raw TCP client or server (no WebSocket library) sends
//! each RFC 6455 violation to tether, which must fail the connection with the
//! close code the RFC requires (1002, 1007, 1009), report it from `recv()`,
//! end the stream, close TCP, and never panic. Also: the opening handshake
//! refusals of a tether server and the response checks of a tether client.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tether::tether_proto::handshake::accept_key;
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
/// default) and a raw peer, past the handshake; tether calls `recv()` until
/// `None`.
async fn open(side: Side, case: &str, max: Option<usize>) -> (RawPeer, JoinHandle<Outcome>) {
    open_with(side, case, max, Drive::ToEnd).await
}

async fn open_with(
    side: Side,
    case: &str,
    max: Option<usize>,
    how: Drive,
) -> (RawPeer, JoinHandle<Outcome>) {
    let (mut peer, task) = match side {
        Side::Server => {
            let b = ServerBuilder::new();
            let b = match max {
                Some(n) => b.max_message_size(Some(n)),
                None => b,
            };
            tether_server(b, how).await
        }
        Side::Client => {
            let builder = move |url: String| {
                let b = ClientBuilder::new(url);
                match max {
                    Some(n) => b.max_message_size(Some(n)),
                    None => b,
                }
            };
            tether_client(builder, how).await
        }
    };
    peer.label = format!("tether {side:?}: {case}");
    (peer, task)
}

/// Checks that tether failed the connection: the raw peer reads a close
/// frame with `code` and then EOF (tether closed TCP while still holding the
/// socket); `recv()` returned the error last (kind `kind`, close code
/// `code`), then `None`. Returns the messages received before the error.
async fn expect_failure(
    mut peer: RawPeer,
    task: JoinHandle<Outcome>,
    kind: ErrorKind,
    code: u16,
) -> Vec<Message> {
    peer.expect_close(code).await;
    peer.expect_eof().await;
    let label = peer.label.clone();
    let out = join(&label, task).await;
    check_failed(&label, &out, kind, code)
}

fn check_failed(label: &str, out: &Outcome, kind: ErrorKind, code: u16) -> Vec<Message> {
    let (last, before) = out
        .items
        .split_last()
        .unwrap_or_else(|| panic!("{label}: recv() returned None without an error"));
    let err = match last {
        Err(e) => e,
        Ok(m) => panic!("{label}: recv() ended after {m:?} without an error: {out:?}"),
    };
    assert_eq!(err.kind(), kind, "{label}: {err:?}");
    assert_eq!(err.close_code(), Some(CloseCode(code)), "{label}: {err:?}");
    assert_eq!(
        out.state,
        State::Closed,
        "{label}: state after the stream ended"
    );
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
    assert!(
        before.is_empty(),
        "tether {side:?}: {case}: messages before the error: {before:?}"
    );
}

/// Ends a healthy connection: the raw peer sends close 1000 and reads the
/// echo; then the TCP connection ends (the server closes it: tether as a
/// server, the raw peer otherwise). Returns every message tether received.
async fn close_cleanly(side: Side, peer: RawPeer, task: JoinHandle<Outcome>) -> Vec<Message> {
    close_with(side, peer, task, Some(1000)).await
}

/// As [`close_cleanly`], with a close frame carrying `code` (`None`: an
/// empty close frame), which tether must echo.
async fn close_with(
    side: Side,
    mut peer: RawPeer,
    task: JoinHandle<Outcome>,
    code: Option<u16>,
) -> Vec<Message> {
    let payload = code.map(u16::to_be_bytes);
    peer.send(FIN | CLOSE, payload.as_ref().map_or(&[][..], |p| &p[..]))
        .await;
    let echo = peer.read_frame().await;
    assert_eq!(
        echo.opcode, CLOSE,
        "{}: expected the close echo, got {echo:?}",
        peer.label
    );
    assert_eq!(echo.close().0, code, "{}: close echo {echo:?}", peer.label);
    match side {
        Side::Server => peer.expect_eof().await,
        Side::Client => peer.shutdown_write().await,
    }
    let label = peer.label.clone();
    let out = join(&label, task).await;
    let msgs: Vec<Message> = out
        .items
        .iter()
        .map(|r| {
            r.as_ref()
                .unwrap_or_else(|e| panic!("{label}: unexpected error {e:?} in {out:?}"))
                .clone()
        })
        .collect();
    let expected = Message::Close(code.map(|c| tether::CloseFrame::new(c, "")));
    assert_eq!(msgs.last(), Some(&expected), "{label}: {msgs:?}");
    assert_eq!(out.state, State::Closed, "{label}");
    msgs
}

// --- Masking -----------------------------------------------------------------

#[tokio::test]
async fn server_fails_unmasked_client_frame_1002() {
    violation(Side::Server, "unmasked text frame", 1002, |_| {
        encode_frame(FIN | TEXT, b"hello", None)
    })
    .await;
}

#[tokio::test]
async fn client_fails_masked_server_frame_1002() {
    violation(Side::Client, "masked text frame", 1002, |_| {
        encode_frame(FIN | TEXT, b"hello", Some(MASK))
    })
    .await;
}

#[tokio::test]
async fn violation_pipelined_with_the_handshake_fails_1002() {
    // The server reads the upgrade request and an unmasked frame in one go.
    let (mut peer, task) = raw_client_of(|tcp| async move {
        drain(ServerBuilder::new().accept(tcp).await.expect("accept()")).await
    })
    .await;
    peer.label = "tether Server: unmasked frame in the request's segment".into();
    let mut bytes = upgrade_request("").into_bytes();
    bytes.extend(encode_frame(FIN | TEXT, b"early", None));
    peer.write(&bytes).await;
    let head = peer.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    expect_failure(peer, task, ErrorKind::Protocol, 1002).await;

    // The client reads the 101 and a masked frame in one go.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let task = tokio::spawn(async move {
        drain(ClientBuilder::new(url).connect().await.expect("connect()")).await
    });
    let (mut peer, head) = RawPeer::accept_raw(&listener).await;
    peer.label = "tether Client: masked frame in the 101's segment".into();
    let key = header_value(&head, "sec-websocket-key").expect("key");
    let mut bytes = switching(&key, "");
    bytes.extend(encode_frame(FIN | TEXT, b"early", Some(MASK)));
    peer.write(&bytes).await;
    expect_failure(peer, task, ErrorKind::Protocol, 1002).await;
}

/// The close frame and the end of TCP must not depend on the application
/// calling `recv()` again after the error (a `while let Some(Ok(msg))` loop
/// stops at the first error): they are written when the error is returned.
#[tokio::test]
async fn failure_is_sent_and_tcp_closed_before_the_error_is_returned() {
    for side in BOTH {
        for (case, max, code) in [
            ("reserved opcode", None, 1002),
            ("invalid UTF-8", None, 1007),
            ("message too big", Some(LIMIT), 1009),
        ] {
            let (release, released) = tokio::sync::oneshot::channel();
            let (mut peer, task) = open_with(side, case, max, Drive::UntilError(released)).await;
            let bytes = match code {
                1002 => peer.frame(FIN | 0x3, b"x"),
                1007 => peer.frame(FIN | TEXT, b"\xff"),
                _ => peer.header(FIN | BINARY, 10 << 20),
            };
            peer.write(&bytes).await;
            peer.expect_close(code).await;
            peer.expect_eof().await;
            let _ = release.send(());
            let label = peer.label.clone();
            let out = join(&label, task).await;
            let (last, before) = out.items.split_last().expect("an item");
            assert!(before.is_empty(), "{label}: {out:?}");
            let err = last.as_ref().expect_err("an error");
            assert_eq!(err.kind(), ErrorKind::Protocol, "{label}: {err:?}");
            assert_eq!(err.close_code(), Some(CloseCode(code)), "{label}: {err:?}");
        }
    }
}

// --- Header fields -----------------------------------------------------------

#[tokio::test]
async fn reserved_bits_without_extension_fail_1002() {
    for side in BOTH {
        for (name, bit) in [("RSV1", 0x40), ("RSV2", 0x20), ("RSV3", 0x10)] {
            violation(side, &format!("{name} set"), 1002, |p| {
                p.frame(FIN | bit | TEXT, b"hello")
            })
            .await;
        }
    }
}

#[tokio::test]
async fn reserved_opcodes_fail_1002() {
    for side in BOTH {
        for op in [0x3u8, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            violation(side, &format!("reserved opcode {op:#x}"), 1002, |p| {
                p.frame(FIN | op, b"x")
            })
            .await;
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
async fn control_frames_of_125_bytes_are_accepted() {
    for side in BOTH {
        let (mut peer, task) = open(side, "ping and pong of 125 bytes", None).await;
        let payload = [b'p'; 125];
        peer.send(FIN | PING, &payload).await;
        let pong = peer.read_frame().await;
        assert_eq!(
            (pong.opcode, &pong.payload[..]),
            (PONG, &payload[..]),
            "tether {side:?}"
        );
        peer.send(FIN | PONG, &payload).await;
        let msgs = close_cleanly(side, peer, task).await;
        assert_eq!(
            msgs[..2],
            [
                Message::Ping(payload.to_vec().into()),
                Message::Pong(payload.to_vec().into())
            ],
            "tether {side:?}"
        );
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
        violation(side, "continuation (FIN) first", 1002, |p| {
            p.frame(FIN | CONT, b"orphan")
        })
        .await;
        violation(side, "continuation (no FIN) first", 1002, |p| {
            p.frame(CONT, b"orphan")
        })
        .await;
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
            violation(
                side,
                &format!("{name} frame inside a fragmented text message"),
                1002,
                |p| {
                    let mut b = p.frame(TEXT, b"first ");
                    b.extend(p.frame(FIN | op, b"intruder"));
                    b
                },
            )
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
        assert_eq!(
            (pong.opcode, pong.fin, &pong.payload[..]),
            (PONG, true, &b"p1"[..]),
            "tether {side:?}"
        );
        peer.send(CONT, b"lo ").await;
        peer.send(FIN | PING, b"second ping").await;
        let pong = peer.read_frame().await;
        assert_eq!(
            (pong.opcode, &pong.payload[..]),
            (PONG, &b"second ping"[..]),
            "tether {side:?}"
        );
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
        violation(side, "invalid UTF-8 in a text frame", 1007, |p| {
            p.frame(FIN | TEXT, b"caf\xc3\x28")
        })
        .await;
        violation(
            side,
            "truncated code point at the end of a text frame",
            1007,
            |p| p.frame(FIN | TEXT, b"caf\xc3"),
        )
        .await;
        violation(side, "UTF-16 surrogate in a text frame", 1007, |p| {
            p.frame(FIN | TEXT, b"\xed\xa0\x80")
        })
        .await;
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

        // Invalid UTF-8 in the first bytes of a frame whose rest never comes.
        let (mut peer, task) =
            open(side, "invalid UTF-8 at the start of a partial frame", None).await;
        let mut bytes = peer.header(FIN | TEXT, 100);
        let mut start = *b"bad \xc0\xaf byte";
        if peer.is_client {
            for (i, b) in start.iter_mut().enumerate() {
                *b ^= MASK[i % 4];
            }
        }
        bytes.extend_from_slice(&start);
        peer.write(&bytes).await;
        expect_failure(peer, task, ErrorKind::Protocol, 1007).await;

        // Invalid UTF-8 in a later fragment, the message still unfinished.
        let (mut peer, task) = open(side, "invalid UTF-8 in the second fragment", None).await;
        peer.send(TEXT, b"fine ").await;
        peer.send(CONT, b"\xed\xbf\xbf").await;
        expect_failure(peer, task, ErrorKind::Protocol, 1007).await;
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
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            violation(side, &format!("close code {code}"), 1002, |p| {
                p.frame(FIN | CLOSE, &code.to_be_bytes())
            })
            .await;
        }
    }
}

#[tokio::test]
async fn close_with_valid_code_or_no_code_is_echoed() {
    for side in BOTH {
        for code in [
            Some(1000u16),
            Some(1001),
            Some(1003),
            Some(1007),
            Some(1014),
            Some(3000),
            Some(4999),
            None,
        ] {
            let (peer, task) = open(side, &format!("close with {code:?}"), None).await;
            let msgs = close_with(side, peer, task, code).await;
            assert_eq!(msgs.len(), 1, "tether {side:?}: {msgs:?}");
        }
    }
}

#[tokio::test]
async fn close_with_one_byte_payload_fails_1002() {
    for side in BOTH {
        violation(side, "close payload of 1 byte", 1002, |p| {
            p.frame(FIN | CLOSE, &[0x03])
        })
        .await;
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
            let (mut peer, task) = open(
                side,
                &format!("{name} frame header declaring 10 MiB"),
                Some(LIMIT),
            )
            .await;
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
        let (mut peer, task) =
            open(side, "fragmented message of exactly the limit", Some(LIMIT)).await;
        peer.send(BINARY, &[1u8; 600]).await;
        peer.send(FIN | CONT, &[2u8; LIMIT - 600]).await;
        peer.send(FIN | TEXT, "é".repeat(LIMIT / 2).as_bytes())
            .await;
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
        abrupt_eof(side, "EOF mid-header", |p| {
            p.header(FIN | BINARY, 70_000)[..3].to_vec()
        })
        .await;
        abrupt_eof(side, "EOF mid-fragmented message", |p| {
            p.frame(TEXT, b"first")
        })
        .await;
        abrupt_eof(side, "EOF between messages", |_| Vec::new()).await;
    }
}

// --- Opening handshake: tether as a server ---------------------------------------

/// Sends `request` to a tether server; returns the raw response and the
/// error `accept()` returned.
async fn refused(request: &[u8]) -> (String, tether::Error) {
    let (mut peer, task) = raw_client_of(|tcp| async move {
        match ServerBuilder::new().accept(tcp).await {
            Ok(ws) => panic!("accept() succeeded: {ws:?}"),
            Err(e) => e,
        }
    })
    .await;
    peer.label = format!(
        "request {:?}",
        String::from_utf8_lossy(&request[..request.len().min(60)])
    );
    peer.write(request).await;
    let resp = String::from_utf8_lossy(&peer.read_to_end().await).into_owned();
    let err = join(&peer.label, task).await;
    (resp, err)
}

async fn assert_refused(request: &str, status: u16) -> String {
    let (resp, err) = refused(request.as_bytes()).await;
    assert!(
        resp.starts_with(&format!("HTTP/1.1 {status} ")),
        "expected {status}, got {resp:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err:?}");
    assert!(
        matches!(err.proto_error(), Some(ProtoError::Handshake(_))),
        "{err:?}"
    );
    resp
}

#[tokio::test]
async fn server_refuses_non_get_405() {
    assert_refused(&upgrade_request("").replacen("GET", "POST", 1), 405).await;
}

#[tokio::test]
async fn server_refuses_http_1_0_505() {
    assert_refused(
        &upgrade_request("").replacen("HTTP/1.1", "HTTP/1.0", 1),
        505,
    )
    .await;
}

#[tokio::test]
async fn server_refuses_missing_key_400() {
    assert_refused(
        &upgrade_request("").replacen(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "", 1),
        400,
    )
    .await;
}

#[tokio::test]
async fn server_refuses_version_8_426_naming_13() {
    let resp = assert_refused(
        &upgrade_request("").replacen("Version: 13", "Version: 8", 1),
        426,
    )
    .await;
    let head = resp.split("\r\n\r\n").next().unwrap_or_default();
    assert_eq!(
        header_value(head, "sec-websocket-version").as_deref(),
        Some("13"),
        "{resp:?}"
    );
}

#[tokio::test]
async fn server_refuses_request_line_over_8k_414() {
    let long = format!("GET /{} HTTP/1.1", "a".repeat(9000));
    assert_refused(
        &upgrade_request("").replacen("GET / HTTP/1.1", &long, 1),
        414,
    )
    .await;
}

/// A valid request with `total` header fields in all.
fn request_with_headers(total: usize) -> String {
    // upgrade_request has 5 header fields of its own.
    let extra: String = (0..total - 5)
        .map(|i| format!("X-Filler-{i}: v\r\n"))
        .collect();
    upgrade_request(&extra)
}

#[tokio::test]
async fn server_refuses_129_headers_431() {
    assert_refused(&request_with_headers(129), 431).await;
}

#[tokio::test]
async fn server_accepts_128_headers() {
    let (mut peer, task) = raw_client_of(|tcp| async move {
        ServerBuilder::new()
            .accept(tcp)
            .await
            .map(|ws| ws.request().map(|r| r.headers.len()))
    })
    .await;
    peer.write(request_with_headers(128).as_bytes()).await;
    let head = peer.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let n = join("128 headers", task)
        .await
        .expect("accept() with 128 headers");
    assert_eq!(n, Some(128));
}

// --- Opening handshake: tether as a client ---------------------------------------

/// What the raw server does after reading the upgrade request.
enum Reply {
    /// Writes these bytes (a failed write is fine: the client may stop
    /// reading once it has seen enough), then keeps the connection open
    /// until the client is done.
    Send(Vec<u8>),
    /// Closes the connection.
    Hangup,
    /// Keeps the connection open and says nothing.
    Silent,
}

/// Runs a tether client (from `builder`) against a raw server that reads the
/// request and answers with `reply(key)`. Returns the client's error.
async fn client_refused<B, R>(builder: B, reply: R) -> tether::Error
where
    B: FnOnce(String) -> ClientBuilder + Send + 'static,
    R: FnOnce(&str) -> Reply,
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
    let _keep = match reply(&key) {
        Reply::Send(bytes) => {
            let _ = peer.try_write(&bytes).await;
            Some(peer)
        }
        Reply::Hangup => {
            drop(peer);
            None
        }
        Reply::Silent => Some(peer),
    };
    join("client handshake", task).await
}

/// A 101 response with a correct accept for `key` and `extra` header lines.
fn switching(key: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
        accept_key(key)
    )
    .into_bytes()
}

fn assert_handshake_error(err: &tether::Error, expected: impl Fn(&HandshakeError) -> bool) {
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err:?}");
    match err.proto_error() {
        Some(ProtoError::Handshake(h)) if expected(h) => {}
        other => panic!("unexpected handshake error {other:?} in {err:?}"),
    }
}

#[tokio::test]
async fn client_rejects_bad_accept() {
    let err = client_refused(ClientBuilder::new, |_| {
        // The accept of another key.
        Reply::Send(switching("x3JJHMbDL1EzLkh9GBhXDw==", ""))
    })
    .await;
    assert_handshake_error(&err, |h| matches!(h, HandshakeError::BadAccept));
}

#[tokio::test]
async fn client_rejects_missing_upgrade() {
    let err = client_refused(ClientBuilder::new, |key| {
        let resp = String::from_utf8(switching(key, "")).unwrap().replacen(
            "Upgrade: websocket\r\n",
            "",
            1,
        );
        Reply::Send(resp.into_bytes())
    })
    .await;
    assert_handshake_error(&err, |h| matches!(h, HandshakeError::MissingHeader(_)));
}

#[tokio::test]
async fn client_rejects_subprotocol_not_offered() {
    let err = client_refused(
        |url| ClientBuilder::new(url).subprotocol("chat.v1"),
        |key| Reply::Send(switching(key, "Sec-WebSocket-Protocol: chat.v2\r\n")),
    )
    .await;
    assert_handshake_error(&err, |h| matches!(h, HandshakeError::UnofferedSubprotocol));
    // Nothing offered at all.
    let err = client_refused(ClientBuilder::new, |key| {
        Reply::Send(switching(key, "Sec-WebSocket-Protocol: chat.v1\r\n"))
    })
    .await;
    assert_handshake_error(&err, |h| matches!(h, HandshakeError::UnofferedSubprotocol));
}

#[tokio::test]
async fn client_rejects_extension_not_offered() {
    // Compression off: permessage-deflate in the answer was not offered.
    let err = client_refused(
        |url| ClientBuilder::new(url).compression(None),
        |key| {
            Reply::Send(switching(
                key,
                "Sec-WebSocket-Extensions: permessage-deflate\r\n",
            ))
        },
    )
    .await;
    assert_handshake_error(&err, |h| matches!(h, HandshakeError::UnofferedExtension));
    // Compression on (the default): an unknown extension was not offered.
    let err = client_refused(ClientBuilder::new, |key| {
        Reply::Send(switching(key, "Sec-WebSocket-Extensions: x-custom\r\n"))
    })
    .await;
    assert_handshake_error(&err, |h| matches!(h, HandshakeError::UnofferedExtension));
    // Deflate with a parameter we cannot accept: invalid.
    let err = client_refused(ClientBuilder::new, |key| {
        Reply::Send(switching(
            key,
            "Sec-WebSocket-Extensions: permessage-deflate; bogus=1\r\n",
        ))
    })
    .await;
    assert_handshake_error(&err, |h| matches!(h, HandshakeError::InvalidHeader(_)));
}

#[tokio::test]
async fn client_reports_503_with_retry_after_and_body() {
    let err = client_refused(ClientBuilder::new, |_| {
        Reply::Send(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Type: text/plain\r\n\
              Content-Length: 4\r\n\r\nbusy"
                .to_vec(),
        )
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::HttpStatus, "{err:?}");
    assert_eq!(err.status(), Some(503), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)), "{err:?}");
    let resp = err.response().expect("the response is kept");
    assert!(
        String::from_utf8_lossy(&resp.body).contains("busy"),
        "{resp:?}"
    );
    assert!(err.to_string().contains("busy"), "{err}");
}

#[tokio::test]
async fn client_keeps_at_most_4k_of_a_401_body() {
    let body = vec![b'z'; 10 * 1024];
    let err = client_refused(ClientBuilder::new, move |_| {
        let mut resp = format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        resp.extend_from_slice(&body);
        Reply::Send(resp)
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::HttpStatus, "{err:?}");
    assert_eq!(err.status(), Some(401), "{err:?}");
    assert!(err.is_auth_refused());
    let kept = &err.response().expect("the response is kept").body;
    assert!(
        !kept.is_empty() && kept.len() <= 4096,
        "kept {} bytes of body",
        kept.len()
    );
    assert!(kept.iter().all(|&b| b == b'z'));
}

#[tokio::test]
async fn client_reports_connect_when_the_server_hangs_up() {
    let err = client_refused(ClientBuilder::new, |_| Reply::Hangup).await;
    assert_eq!(err.kind(), ErrorKind::Connect, "{err:?}");
}

#[tokio::test]
async fn client_times_out_when_the_server_never_answers() {
    let start = Instant::now();
    let err = client_refused(
        |url| ClientBuilder::new(url).open_timeout(Some(Duration::from_millis(200))),
        |_| Reply::Silent,
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(4),
        "took {took:?}"
    );
}
