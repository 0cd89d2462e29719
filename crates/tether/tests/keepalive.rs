//! Keepalive: a peer that stops answering pings is declared dead quickly,
//! with close code 1011, and the latency is measured from pongs.

mod support;

use std::time::{Duration, Instant};
use support::RawPeer;
use tether::{ClientBuilder, CloseCode, ErrorKind, Message, ServerBuilder, WebSocket};

/// A server that completes the handshake, then reads but never answers (a
/// half-open peer). Returns its address and its task, which ends with the
/// bytes it received once the client closes the connection.
async fn half_open_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut peer = RawPeer::accept_server(&listener).await;
        // Read (to see the pings and the close frame) but never answer.
        peer.read_to_end().await
    });
    (addr, task)
}

#[tokio::test]
async fn unresponsive_peer_fails_with_1011_after_ping_timeout() {
    let (addr, server) = half_open_server().await;
    let mut ws = ClientBuilder::new(format!("ws://{addr}/"))
        .ping_interval(Some(Duration::from_millis(100)))
        .ping_timeout(Some(Duration::from_millis(150)))
        .close_timeout(Some(Duration::from_secs(10)))
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::KeepaliveTimeout, "{err}");
    assert_eq!(err.close_code(), Some(CloseCode::INTERNAL_ERROR));
    assert!(err.to_string().contains("keepalive"), "{err}");
    // Ping after 100 ms, dead 150 ms later; no close timeout (10 s) waited.
    assert!(
        took >= Duration::from_millis(240) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(tokio::time::timeout(Duration::from_secs(1), ws.recv())
        .await
        .unwrap()
        .is_none());
    // The peer saw a masked ping, then a masked close frame carrying 1011.
    drop(ws);
    let got = server.await.unwrap();
    let frames = parse_client_frames(&got);
    assert_eq!(
        frames.first().map(|f| f.0),
        Some(0x9),
        "a ping came first: {frames:?}"
    );
    let close = frames.iter().find(|f| f.0 == 0x8).expect("a close frame");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 1011);
}

/// (opcode, unmasked payload) of each complete client frame in `b`.
fn parse_client_frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 6 {
        let op = b[0] & 0x0F;
        let len = (b[1] & 0x7F) as usize; // keepalive frames are short
        if b.len() < 6 + len {
            break;
        }
        let key = [b[2], b[3], b[4], b[5]];
        let p: Vec<u8> = b[6..6 + len]
            .iter()
            .enumerate()
            .map(|(i, x)| x ^ key[i % 4])
            .collect();
        out.push((op, p));
        b = &b[6 + len..];
    }
    out
}

#[tokio::test]
async fn latency_is_measured_from_pongs() {
    let server = ServerBuilder::new()
        .serve("127.0.0.1:0", |mut ws: WebSocket| async move {
            while let Some(Ok(m)) = ws.recv().await {
                if m.is_data() {
                    let _ = ws.send(m).await;
                }
            }
        })
        .await
        .unwrap();
    let mut ws = ClientBuilder::new(format!("ws://{}/", server.local_addr()))
        .ping_interval(Some(Duration::from_millis(50)))
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.latency(), None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while ws.latency().is_none() && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(100), ws.recv()).await;
    }
    let l = ws
        .latency()
        .expect("a latency after a keepalive round trip");
    assert!(l < Duration::from_secs(1), "{l:?}");
    ws.send(Message::text("still works")).await.unwrap();
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn keepalive_can_be_disabled() {
    let (addr, server) = half_open_server().await;
    let mut ws = ClientBuilder::new(format!("ws://{addr}/"))
        .ping_interval(None)
        .connect()
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_millis(400), ws.recv()).await;
    assert!(r.is_err(), "no keepalive, so recv just waits");
    drop(ws);
    let got = server.await.unwrap();
    assert!(got.is_empty(), "no ping was sent");
}
