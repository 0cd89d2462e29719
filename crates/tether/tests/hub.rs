//! Fan-out with `tether::hub::Hub` over loopback: every member receives
//! every broadcast in order; a member that never reads is closed with 1013
//! once its queue would pass the limit while the others keep receiving;
//! members leave; members with and without permessage-deflate in one hub.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{decode_frame, header_value, upgrade_request, RawPeer, CLOSE};
use tether::hub::{Hub, MemberId};
use tether::{ClientBuilder, DeflateConfig, Message, ServerBuilder, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

/// A server whose connections all join `hub` and read until they close;
/// each member's id and negotiated compression is reported on `joined`.
async fn hub_server(hub: Hub) -> (tether::Server, mpsc::UnboundedReceiver<Joined>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = ServerBuilder::new()
        .serve("127.0.0.1:0", move |ws: WebSocket| {
            let (hub, tx) = (hub.clone(), tx.clone());
            async move {
                let mut member = hub.join(ws);
                let _ = tx.send(Joined {
                    id: member.id(),
                    deflate: member.compression(),
                });
                while let Some(Ok(m)) = member.recv().await {
                    // "leave": drop the handle (and the connection).
                    if m.as_text() == Some("leave") {
                        return;
                    }
                }
            }
        })
        .await
        .unwrap();
    (server, rx)
}

#[derive(Debug)]
struct Joined {
    id: MemberId,
    deflate: Option<tether::DeflateParams>,
}

fn url(s: &tether::Server) -> String {
    format!("ws://{}/", s.local_addr())
}

async fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Message `i` of a broadcast run: text, with a large binary one now and
/// then (queued by reference).
fn numbered(i: usize) -> Message {
    if i % 20 == 19 {
        let mut b = vec![(i % 251) as u8; 8 << 10];
        b[..8].copy_from_slice(&(i as u64).to_be_bytes());
        Message::binary(b)
    } else {
        Message::text(format!("message {i}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_members_receive_every_message_in_order() {
    let hub = Hub::new();
    let (server, _joined) = hub_server(hub.clone()).await;
    let (members, count) = (100, 200);
    let mut clients = Vec::new();
    for _ in 0..members {
        // Uncompressed: every member takes the frame framed once (the
        // compressed cases are below).
        let mut ws = ClientBuilder::new(url(&server))
            .compression(None)
            .connect()
            .await
            .unwrap();
        clients.push(tokio::spawn(async move {
            for i in 0..count {
                let m = ws.recv().await.unwrap().unwrap();
                assert_eq!(m, numbered(i), "message {i}");
            }
            ws
        }));
    }
    wait_for("100 members joined", || hub.len() == members).await;
    // From another task than the members', as any application would.
    let h = hub.clone();
    let reports = tokio::spawn(async move {
        let mut reports = Vec::new();
        for i in 0..count {
            reports.push(h.broadcast(numbered(i)).unwrap());
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        reports
    })
    .await
    .unwrap();
    for r in &reports {
        assert_eq!(r.delivered, members);
        assert!(r.closed_slow.is_empty() && r.gone == 0, "{r:?}");
    }
    for c in clients {
        timeout(T, c).await.unwrap().unwrap();
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_reads_is_closed_with_1013_and_the_others_keep_receiving() {
    let limit = 256 << 10;
    let hub = Hub::builder().max_queue_bytes(limit).build();
    let (server, mut joined) = hub_server(hub.clone()).await;
    // The slow member upgrades, then reads nothing until it is closed.
    let mut slow = RawPeer::connect(server.local_addr()).await;
    slow.label = "slow member".into();
    slow.upgrade().await;
    let slow_id = timeout(T, joined.recv()).await.unwrap().unwrap().id;
    // Three members that read everything.
    let received = Arc::new(AtomicUsize::new(0));
    let mut fast = Vec::new();
    for _ in 0..3 {
        let mut ws = ClientBuilder::new(url(&server))
            .compression(None)
            .max_message_size(Some(1 << 20))
            .connect()
            .await
            .unwrap();
        let received = received.clone();
        fast.push(tokio::spawn(async move {
            let mut next = 0u32;
            while let Some(Ok(m)) = ws.recv().await {
                if m.as_text() == Some("last") {
                    return next + 1;
                }
                assert_eq!(&m.as_payload()[..4], &next.to_be_bytes());
                next += 1;
                received.fetch_add(1, Ordering::SeqCst);
            }
            next
        }));
    }
    wait_for("4 members joined", || hub.len() == 4).await;
    // 64 KiB messages, each sent once the fast members have the one before:
    // only the slow member falls behind. Loopback buffers take a few MiB
    // before its queue grows at all.
    let msg = |i: u32| {
        let mut b = vec![0x5a; 64 << 10];
        b[..4].copy_from_slice(&i.to_be_bytes());
        Message::binary(b)
    };
    let mut kicked_at = None;
    let mut sent = 0u32;
    while sent < 400 {
        let r = hub.broadcast(msg(sent)).unwrap();
        sent += 1;
        if !r.closed_slow.is_empty() {
            assert_eq!(r.closed_slow, vec![slow_id]);
            assert_eq!(r.delivered, 3);
            assert!(kicked_at.is_none(), "closed twice");
            kicked_at = Some(sent - 1);
        } else if kicked_at.is_none() {
            assert_eq!(r.delivered, 4);
        } else {
            assert_eq!(r.delivered, 3, "the slow member was removed");
        }
        let want = 3 * sent as usize;
        wait_for("fast members keep up", || {
            received.load(Ordering::SeqCst) == want
        })
        .await;
        // Keep going a little after the close.
        if kicked_at.is_some_and(|k| sent > k + 20) {
            break;
        }
    }
    let kicked_at = kicked_at.expect("the slow member was never closed");
    assert_eq!(hub.len(), 3);
    // The slow member got every message before the one that would have
    // passed the limit, in order, then the close frame with 1013.
    let mut expected = 0u32;
    loop {
        let f = slow.read_frame().await;
        if f.opcode == CLOSE {
            assert_eq!(f.close().0, Some(1013), "{:?}", f.close());
            break;
        }
        assert_eq!(&f.payload[..4], &expected.to_be_bytes());
        expected += 1;
    }
    assert_eq!(expected, kicked_at, "no message skipped, none after");
    drop(slow);
    hub.broadcast(Message::text("last")).unwrap();
    drop(hub);
    server.shutdown().await;
    for f in fast {
        // Each fast member got every message (the numbered ones, then "last").
        assert_eq!(timeout(T, f).await.unwrap().unwrap(), sent + 1);
    }
}

#[tokio::test]
async fn members_leave_when_their_handle_drops_or_their_connection_closes() {
    let hub = Hub::new();
    let (server, _joined) = hub_server(hub.clone()).await;
    let mut a = tether::connect(&url(&server)).await.unwrap();
    let mut b = tether::connect(&url(&server)).await.unwrap();
    let mut c = tether::connect(&url(&server)).await.unwrap();
    wait_for("3 members", || hub.len() == 3).await;
    // The server drops a's handle: a leaves, and its connection ends.
    a.send(Message::text("leave")).await.unwrap();
    wait_for("a left", || hub.len() == 2).await;
    assert!(timeout(T, a.recv())
        .await
        .unwrap()
        .is_none_or(|r| r.is_err()));
    // b closes: its member's recv ends, and it leaves.
    b.close(tether::CloseCode::NORMAL, "bye").await.unwrap();
    wait_for("b left", || hub.len() == 1).await;
    let r = hub.broadcast(Message::text("only c")).unwrap();
    assert_eq!(r.delivered, 1);
    assert_eq!(
        timeout(T, c.recv()).await.unwrap().unwrap().unwrap(),
        Message::text("only c")
    );
    drop(c);
    server.shutdown().await;
}

/// A raw client that offers `offer` and reads the hub's frames as they
/// are on the wire.
async fn raw_deflate_client(server: &tether::Server, offer: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let req = upgrade_request(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    (tcp, String::from_utf8(head).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_with_and_without_deflate_share_one_hub() {
    let hub = Hub::new();
    let (server, mut joined) = hub_server(hub.clone()).await;
    let json = |i: usize| {
        Message::text(
            format!(r#"{{"seq":{i},"symbol":"ACME","bid":"101.25","ask":"101.27"}}"#).repeat(10),
        )
    };
    let count = 20;
    let mut no_takeover = DeflateConfig::default();
    no_takeover.server_no_context_takeover = true;
    let configs = [
        ("deflate, context takeover", Some(DeflateConfig::default())),
        ("deflate, no context takeover", Some(no_takeover)),
        ("no compression", None),
    ];
    let mut clients = Vec::new();
    for (label, compression) in configs {
        let mut ws = ClientBuilder::new(url(&server))
            .compression(compression)
            .connect()
            .await
            .unwrap();
        let j = timeout(T, joined.recv()).await.unwrap().unwrap();
        match label {
            "no compression" => assert!(j.deflate.is_none()),
            "deflate, no context takeover" => {
                assert!(j.deflate.unwrap().server_no_context_takeover)
            }
            _ => assert!(!j.deflate.unwrap().server_no_context_takeover),
        }
        clients.push(tokio::spawn(async move {
            for i in 0..count {
                let m = ws.recv().await.unwrap().unwrap();
                assert_eq!(m, json(i), "{label}: message {i}");
                let m = ws.recv().await.unwrap().unwrap();
                assert_eq!(m, Message::text("short"), "{label}");
            }
        }));
    }
    // And one that shows the wire: compressed frames (RSV1), each
    // inflating on its own (no context takeover).
    let (mut raw, head) =
        raw_deflate_client(&server, "permessage-deflate; server_no_context_takeover").await;
    assert!(
        header_value(&head, "sec-websocket-extensions")
            .is_some_and(|v| v.contains("server_no_context_takeover")),
        "{head}"
    );
    timeout(T, joined.recv()).await.unwrap().unwrap();
    for i in 0..count {
        let r = hub.broadcast(json(i)).unwrap();
        assert_eq!(r.delivered, 4);
        hub.broadcast(Message::text("short")).unwrap();
    }
    for c in clients {
        timeout(T, c).await.unwrap().unwrap();
    }
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    while frames.len() < 2 * count {
        while let Some((f, used)) = decode_frame(&buf) {
            buf.drain(..used);
            frames.push(f);
        }
        if frames.len() < 2 * count {
            let mut chunk = [0u8; 16 << 10];
            let n = timeout(T, raw.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "EOF after {} frames", frames.len());
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    for (i, pair) in frames.chunks(2).enumerate() {
        let (z, short) = (&pair[0], &pair[1]);
        assert_eq!(z.rsv, 0x40, "message {i} is compressed (RSV1)");
        assert!(z.payload.len() < json(i).len() / 3, "{}", z.payload.len());
        let mut inflater = tether::tether_proto::deflate::Inflater::new(true);
        let mut out = Vec::new();
        inflater
            .inflate(&z.payload, true, &mut out, 1 << 20)
            .unwrap();
        assert_eq!(out, json(i).as_payload());
        // Under the compression threshold: the shared, plain frame.
        assert_eq!((short.rsv, &short.payload[..]), (0, &b"short"[..]));
    }
    drop(raw);
    server.shutdown().await;
}
