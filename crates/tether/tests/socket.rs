//! The tokio layer end to end over loopback: echo, split halves, cancel
//! safety, backpressure, closing handshakes, graceful shutdown, and the
//! `process_request` hook.

mod support;

use std::time::Duration;
use support::RawPeer;
use tether::{ClientBuilder, CloseCode, ErrorKind, Message, Response, ServerBuilder, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

async fn echo(mut ws: WebSocket) {
    while let Some(Ok(msg)) = ws.recv().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

async fn echo_server() -> tether::Server {
    ServerBuilder::new()
        .serve("127.0.0.1:0", echo)
        .await
        .unwrap()
}

fn url(s: &tether::Server) -> String {
    format!("ws://{}/", s.local_addr())
}

#[tokio::test]
async fn echo_text_and_binary() {
    let server = echo_server().await;
    let mut ws = tether::connect(&url(&server)).await.unwrap();
    ws.send(Message::text("héllo")).await.unwrap();
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("héllo"));
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn ping_is_answered_with_matching_pong() {
    let server = echo_server().await;
    let mut ws = tether::connect(&url(&server)).await.unwrap();
    ws.ping(&b"are you there"[..]).await.unwrap();
    let m = timeout(T, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(
        m,
        Message::Pong(tether::Bytes::from_static(b"are you there"))
    );
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn many_pipelined_messages_arrive_in_order() {
    let server = echo_server().await;
    let mut ws = tether::connect(&url(&server)).await.unwrap();
    for i in 0..2000u32 {
        ws.send(Message::text(i.to_string())).await.unwrap();
    }
    for i in 0..2000u32 {
        let m = timeout(T, ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m.as_text(), Some(i.to_string().as_str()));
    }
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn split_halves_work_from_two_tasks() {
    let server = echo_server().await;
    let ws = tether::connect(&url(&server)).await.unwrap();
    let (mut rx, tx) = ws.split();
    let n = 5000u32;
    let writer = tokio::spawn(async move {
        for i in 0..n {
            tx.send(Message::binary(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
        }
        tx
    });
    let reader = tokio::spawn(async move {
        for i in 0..n {
            let m = rx.recv().await.unwrap().unwrap();
            assert_eq!(m, Message::binary(i.to_be_bytes().to_vec()));
        }
        rx
    });
    let (w, r) = timeout(T, async { (writer.await.unwrap(), reader.await.unwrap()) })
        .await
        .unwrap();
    drop((w, r));
    server.shutdown().await;
}

/// The writer waits on a full socket while the reader keeps answering the
/// server's pings: the reader's writes must not steal the writer's wake-up.
#[tokio::test]
async fn split_writer_is_not_starved_by_reader_pongs() {
    let server = ServerBuilder::new()
        .max_message_size(None)
        .serve("127.0.0.1:0", |mut ws: WebSocket| async move {
            // Ping often, and read slowly at first so the client's writes stall.
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let start = tokio::time::Instant::now();
            let mut received = 0usize;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if ws.ping(&b"p"[..]).await.is_err() { break; }
                    }
                    m = ws.recv(), if start.elapsed() > Duration::from_millis(300) => match m {
                        Some(Ok(Message::Binary(b))) => {
                            received += b.len();
                            if received >= 8 << 20 {
                                let _ = ws.send(Message::text("done")).await;
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            }
        })
        .await
        .unwrap();
    let ws = ClientBuilder::new(url(&server))
        .write_buffer_limit(16 * 1024)
        .connect()
        .await
        .unwrap();
    let (mut rx, tx) = ws.split();
    let writer = tokio::spawn(async move {
        let chunk = Message::binary(vec![7u8; 64 * 1024]);
        for _ in 0..128 {
            tx.send(chunk.clone()).await.unwrap();
        }
        tx
    });
    let reader = tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Some(Ok(Message::Text(t))) if t == "done" => return rx,
                Some(Ok(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    let (w, r) = timeout(T, async { (writer.await.unwrap(), reader.await.unwrap()) })
        .await
        .expect("writer and reader both finish");
    drop((w, r));
    server.shutdown().await;
}

/// `recv` in a `select!` that keeps cancelling it loses nothing.
#[tokio::test]
async fn recv_is_cancel_safe() {
    let server = ServerBuilder::new()
        .serve("127.0.0.1:0", |mut ws: WebSocket| async move {
            for i in 0..200u32 {
                ws.send(Message::text(format!(
                    "message {i} {}",
                    "x".repeat(i as usize * 50)
                )))
                .await
                .unwrap();
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            let _ = ws.close(CloseCode::NORMAL, "").await;
        })
        .await
        .unwrap();
    let mut ws = tether::connect(&url(&server)).await.unwrap();
    let mut got = 0u32;
    let mut cancelled = 0u32;
    loop {
        tokio::select! {
            m = ws.recv() => match m {
                Some(Ok(Message::Text(t))) => {
                    assert!(t.starts_with(&format!("message {got} ")), "{got}: {}", &t[..20.min(t.len())]);
                    got += 1;
                }
                Some(Ok(Message::Close(_))) => {}
                None => break,
                other => panic!("{other:?}"),
            },
            _ = tokio::task::yield_now() => cancelled += 1,
        }
    }
    assert_eq!(got, 200);
    assert!(cancelled > 0, "the select cancelled recv at least once");
    server.shutdown().await;
}

/// A peer that never reads: `send` waits instead of buffering without bound.
#[tokio::test]
async fn send_waits_when_the_peer_does_not_read() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tether::accept(tcp).await.unwrap();
        // Hold the connection open without reading.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(ws);
    });
    let limit = 64 * 1024;
    // Compression off: this repetitive payload would shrink to nothing.
    let mut ws = ClientBuilder::new(format!("ws://{addr}/"))
        .write_buffer_limit(limit)
        .compression(None)
        .connect()
        .await
        .unwrap();
    let msg = Message::binary(vec![1u8; 256 * 1024]);
    let mut sent = 0usize;
    let blocked = timeout(Duration::from_millis(500), async {
        loop {
            ws.send(msg.clone()).await.unwrap();
            sent += 1;
        }
    })
    .await;
    assert!(
        blocked.is_err(),
        "send kept completing with a peer that never reads"
    );
    assert!(
        sent < 200,
        "sent {sent} messages of 256 KiB into a peer that never reads"
    );
    assert!(
        ws.buffered_amount() <= limit + 256 * 1024 + 16,
        "buffered {} bytes, over the limit plus one message",
        ws.buffered_amount()
    );
    server.abort();
}

#[tokio::test]
async fn client_close_completes_the_handshake() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let server = ServerBuilder::new()
        .serve("127.0.0.1:0", move |mut ws: WebSocket| {
            let tx = tx.clone();
            async move {
                while let Some(Ok(m)) = ws.recv().await {
                    if let Message::Close(f) = m {
                        tx.send(f).unwrap();
                    }
                }
            }
        })
        .await
        .unwrap();
    let mut ws = tether::connect(&url(&server)).await.unwrap();
    let started = std::time::Instant::now();
    ws.close(CloseCode(4001), "bye").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the server closed TCP promptly"
    );
    assert_eq!(ws.state(), tether::State::Closed);
    let f = timeout(T, rx.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!((f.code, f.reason.as_str()), (CloseCode(4001), "bye"));
    assert!(ws.send(Message::text("late")).await.unwrap_err().kind() == ErrorKind::Closed);
    server.shutdown().await;
}

#[tokio::test]
async fn server_close_reaches_the_client_then_the_stream_ends() {
    let server = ServerBuilder::new()
        .serve("127.0.0.1:0", |mut ws: WebSocket| async move {
            ws.close(CloseCode::SERVICE_RESTART, "restarting")
                .await
                .unwrap();
        })
        .await
        .unwrap();
    let mut ws = tether::connect(&url(&server)).await.unwrap();
    let m = timeout(T, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(m.close_code(), Some(CloseCode::SERVICE_RESTART));
    assert!(timeout(T, ws.recv()).await.unwrap().is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn client_close_timeout_bounds_an_unresponsive_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        // Answer the handshake by hand, then ignore everything.
        let _peer = RawPeer::accept_server(&listener).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut ws = ClientBuilder::new(format!("ws://{addr}/"))
        .close_timeout(Some(Duration::from_millis(300)))
        .connect()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    server.abort();
}

#[tokio::test]
async fn graceful_shutdown_closes_every_client_with_1001() {
    let server = echo_server().await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(tether::connect(&url(&server)).await.unwrap());
    }
    // Make sure every connection is open server-side.
    for ws in &mut clients {
        ws.send(Message::text("hi")).await.unwrap();
        ws.recv().await.unwrap().unwrap();
    }
    let shutdown = tokio::spawn(server.shutdown());
    for ws in &mut clients {
        let m = timeout(T, ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m.close_code(), Some(CloseCode::GOING_AWAY));
        assert!(timeout(T, ws.recv()).await.unwrap().is_none());
    }
    timeout(T, shutdown).await.unwrap().unwrap();
}

#[tokio::test]
async fn process_request_refuses_with_401_and_a_body() {
    let server = ServerBuilder::new()
        .process_request(|req| match req.header("authorization") {
            Some("Bearer good") => None,
            _ => Some(
                Response::with_body(401, "token expired\n").header("www-authenticate", "Bearer"),
            ),
        })
        .serve("127.0.0.1:0", echo)
        .await
        .unwrap();
    let err = tether::connect(&url(&server)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HttpStatus);
    assert_eq!(err.status(), Some(401));
    assert!(err.is_auth_refused());
    assert_eq!(
        err.response().unwrap().header_str("www-authenticate"),
        Some("Bearer")
    );
    assert!(err.to_string().contains("token expired"), "{err}");
    let ok = ClientBuilder::new(url(&server))
        .header("authorization", "Bearer good")
        .unwrap()
        .connect()
        .await;
    assert!(ok.is_ok());
    drop(ok);
    server.shutdown().await;
}

#[tokio::test]
async fn subprotocol_is_negotiated() {
    let server = ServerBuilder::new()
        .subprotocols(["v2", "v1"])
        .serve("127.0.0.1:0", |ws: WebSocket| async move {
            assert_eq!(ws.subprotocol(), Some("v1"));
            assert_eq!(ws.request().unwrap().path(), "/chat");
        })
        .await
        .unwrap();
    let ws = ClientBuilder::new(format!("ws://{}/chat", server.local_addr()))
        .subprotocol("v1")
        .subprotocol("v3")
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.subprotocol(), Some("v1"));
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn message_over_the_servers_limit_is_refused_with_1009() {
    let server = ServerBuilder::new()
        .max_message_size(Some(1000))
        .serve("127.0.0.1:0", echo)
        .await
        .unwrap();
    let mut ws = tether::connect(&url(&server)).await.unwrap();
    ws.send(Message::binary(vec![0u8; 1001])).await.unwrap();
    let m = timeout(T, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(m.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
    server.shutdown().await;
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let e = tether::connect(&format!("ws://{addr}/")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connect);
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
}

#[tokio::test]
async fn unknown_host_is_a_dns_error() {
    let e = tether::connect("ws://no-such-host.invalid/")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Dns, "{e}");
}

/// A peer that floods pings and never reads our pongs: tether stops reading
/// once its write buffer is over the limit, so its memory stays bounded.
#[tokio::test]
async fn ping_flood_from_a_peer_that_never_reads_is_bounded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        // Masked pings of 125 bytes (mask key 0: the payload goes as is).
        let mut ping = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
        ping.extend_from_slice(&[b'p'; 125]);
        let burst: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 1000)
            .collect();
        // 40 MB of pings, or until tether stops reading and we block.
        for _ in 0..300 {
            if timeout(Duration::from_millis(500), tcp.write_all(&burst))
                .await
                .is_err()
            {
                break;
            }
        }
        tcp
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = tether::accept(tcp).await.unwrap();
    let limit = tether::WebSocketConfig::default().write_buffer_limit;
    let mut max = 0;
    let mut pings = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.recv()).await {
        assert!(matches!(m, Message::Ping(_)));
        pings += 1;
        max = max.max(ws.buffered_amount());
    }
    assert!(pings > 1000, "the flood arrived ({pings} pings)");
    assert!(
        max <= limit + 64 * 1024,
        "pongs queued without bound: {max} bytes"
    );
    drop(ws);
    let _ = peer.await;
}
