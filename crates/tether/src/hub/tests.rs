//! The hub over in-memory pipes: exact queue limits, leaving, and members
//! read as a `Stream`.

use super::*;
use crate::{CloseCode, WebSocketConfig};
use futures_util::StreamExt;
use std::time::Duration;
use tether_proto::Role;
use tokio::io::DuplexStream;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

/// A server socket in a hub's reach and the client end, over a pipe that
/// holds `pipe` bytes.
fn pair(pipe: usize) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(pipe);
    let server = WebSocket::from_raw(a, Role::Server, WebSocketConfig::server());
    let client = WebSocket::from_raw(b, Role::Client, WebSocketConfig::default());
    (server, client)
}

/// Joins `ws` and reads it in a task until it closes.
fn join_and_read(hub: &Hub, ws: WebSocket<DuplexStream>) -> MemberId {
    let mut member = hub.join(ws);
    let id = member.id();
    tokio::spawn(async move { while member.recv().await.is_some() {} });
    id
}

#[tokio::test]
async fn control_messages_are_not_broadcast() {
    let hub = Hub::new();
    for m in [Message::Ping(Default::default()), Message::Close(None)] {
        let e = hub.broadcast(m).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }
}

#[tokio::test]
async fn a_peer_that_never_reads_gets_every_message_before_the_1013_close() {
    // Frames of 1004 bytes; the pipe takes 1024 bytes, the queue 10,000.
    let hub = Hub::builder().max_queue_bytes(10_000).build();
    let (server, mut client) = pair(1024);
    let id = join_and_read(&hub, server);
    tokio::task::yield_now().await;
    let mut delivered = 0;
    let report = loop {
        let r = hub
            .broadcast(Message::binary(vec![delivered as u8; 1000]))
            .unwrap();
        if r.delivered == 0 {
            break r;
        }
        delivered += 1;
        assert!(delivered < 100, "never closed");
        tokio::task::yield_now().await;
    };
    assert_eq!(report.closed_slow, vec![id]);
    assert!(hub.is_empty(), "closed and removed");
    // Queued: at most 10,000 bytes; the pipe holds one more frame.
    assert!((10..=11).contains(&delivered), "{delivered}");
    // The next broadcast does not reach it.
    assert_eq!(hub.broadcast(Message::text("x")).unwrap().delivered, 0);
    // The peer reads at last: each message, in order, then 1013.
    for i in 0..delivered {
        let m = timeout(T, client.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::binary(vec![i as u8; 1000]));
    }
    match timeout(T, client.recv()).await.unwrap().unwrap().unwrap() {
        Message::Close(Some(f)) => {
            assert_eq!(f.code, CloseCode::TRY_AGAIN_LATER);
            assert!(f.reason.starts_with("too slow"), "{}", f.reason);
        }
        m => panic!("expected the close frame, got {m:?}"),
    }
}

#[tokio::test]
async fn members_leave_on_drop_and_on_leave_and_outlive_the_hub() {
    let hub = Hub::new();
    let (s1, _c1) = pair(4096);
    let (s2, mut c2) = pair(4096);
    let m1 = hub.join(s1);
    let mut m2 = hub.join(s2);
    assert_eq!(hub.len(), 2);
    drop(m1);
    assert_eq!(hub.len(), 1);
    m2.leave();
    assert!(hub.is_empty());
    assert_eq!(hub.broadcast(Message::text("x")).unwrap().delivered, 0);
    // Still connected after leaving.
    m2.send(Message::text("direct")).await.unwrap();
    let got = timeout(T, c2.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::text("direct"));
    let (s3, _c3) = pair(4096);
    let m3 = hub.join(s3);
    drop(hub);
    drop(m3);
}

#[tokio::test]
async fn a_closed_connection_is_removed_by_the_next_broadcast() {
    let hub = Hub::new();
    let (server, client) = pair(4096);
    let member = hub.join(server);
    member
        .writer()
        .close(CloseCode::NORMAL, "done")
        .await
        .unwrap();
    let r = hub.broadcast(Message::text("x")).unwrap();
    assert_eq!((r.delivered, r.gone), (0, 1));
    assert!(hub.is_empty());
    drop(client);
}

#[tokio::test]
async fn members_read_as_a_stream_still_receive_every_broadcast() {
    let hub = Hub::new();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (server, client) = pair(64 << 10);
        let mut member = hub.join(server);
        // A `Stream` consumer does not write for the hub: each broadcast
        // writes for itself.
        tokio::spawn(async move { while member.next().await.is_some() {} });
        clients.push(client);
    }
    tokio::task::yield_now().await;
    for i in 0..50 {
        assert_eq!(
            hub.broadcast(Message::text(format!("{i}")))
                .unwrap()
                .delivered,
            3
        );
    }
    for c in &mut clients {
        for i in 0..50 {
            let m = timeout(T, c.recv()).await.unwrap().unwrap().unwrap();
            assert_eq!(m, Message::text(format!("{i}")));
        }
    }
}

#[tokio::test]
async fn a_message_larger_than_the_limit_reaches_members_with_nothing_unsent() {
    let hub = Hub::builder().max_queue_bytes(100).build();
    let (server, mut client) = pair(64 << 10);
    join_and_read(&hub, server);
    tokio::task::yield_now().await;
    let big = Message::binary(vec![9u8; 1000]);
    let r = hub.broadcast(big.clone()).unwrap();
    assert_eq!((r.delivered, r.closed_slow.len()), (1, 0));
    let m = timeout(T, client.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, big);
}
