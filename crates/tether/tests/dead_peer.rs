//! A peer that stops reading is declared dead whatever this end is doing:
//! idle in `recv`, blocked in `send`, blocked in `flush`, or sending through
//! the split writer (with or without a reader task); and a closing handshake
//! whose peer never reads ends at the close timeout. For the client and the
//! server side alike.
//!
//! The peer is a raw TCP socket that completes the opening handshake and
//! then never reads again, so our writes fill its receive buffer and our
//! send buffer, and our keepalive ping sits behind them, never answered.
//! Each test checks the error kind and close code, the time taken, that the
//! task using the socket ended, and that the peer then sees the connection
//! closed (EOF after what it had not read).

use futures_util::SinkExt;
use std::time::{Duration, Instant};
use tether::{
    ClientBuilder, CloseCode, Error, ErrorKind, Message, ServerBuilder, WebSocket, WebSocketConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const PING_INTERVAL: Duration = Duration::from_millis(100);
const PING_TIMEOUT: Duration = Duration::from_millis(200);
const CLOSE_TIMEOUT: Duration = Duration::from_millis(300);
/// Scheduling slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, Debug)]
enum Side {
    Client,
    Server,
}

/// Keepalive on (fast), close timeout long: the keepalive must act.
fn keepalive_config() -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.ping_interval = Some(PING_INTERVAL);
    c.ping_timeout = Some(PING_TIMEOUT);
    c.close_timeout = Some(Duration::from_secs(30));
    c
}

/// Keepalive off, close timeout short: the close timer must act.
fn close_config() -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.ping_interval = None;
    c.close_timeout = Some(CLOSE_TIMEOUT);
    c
}

/// Reads an HTTP head (up to the blank line) byte by byte, so nothing after
/// it is consumed.
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut b).await.unwrap(), 1, "EOF in the HTTP head");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A tether socket on `side`, and the raw peer on the other end, which has
/// finished the opening handshake and will never read again.
async fn open(side: Side, config: WebSocketConfig) -> (WebSocket, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match side {
        Side::Client => {
            let client = tokio::spawn(async move {
                ClientBuilder::new(format!("ws://{addr}/"))
                    .config(config)
                    .connect()
                    .await
                    .unwrap()
            });
            let (mut raw, _) = listener.accept().await.unwrap();
            let req = read_head(&mut raw).await;
            let key = req
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .trim()
                .to_string();
            let accept = tether::tether_proto::handshake::accept_key(&key);
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            raw.write_all(resp.as_bytes()).await.unwrap();
            (client.await.unwrap(), raw)
        }
        Side::Server => {
            let server = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                ServerBuilder::new()
                    .config(config)
                    .accept_tcp(tcp)
                    .await
                    .unwrap()
            });
            let mut raw = TcpStream::connect(addr).await.unwrap();
            raw.write_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
            let resp = read_head(&mut raw).await;
            assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
            (server.await.unwrap(), raw)
        }
    }
}

fn big() -> Message {
    Message::binary(vec![0x55u8; 256 << 10])
}

/// The peer, now reading again, gets what was left for it and then EOF: the
/// socket was closed.
async fn assert_closed(mut raw: TcpStream) {
    let mut buf = vec![0u8; 1 << 20];
    let read_all = async {
        loop {
            match raw.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("the socket was not closed");
}

/// Runs `task` (which uses the socket until it fails) and checks that it
/// ends with a keepalive timeout, in time.
async fn assert_keepalive_kills(task: JoinHandle<Error>, raw: TcpStream, what: &str) {
    let started = Instant::now();
    let err = tokio::time::timeout(PING_INTERVAL + PING_TIMEOUT + SLACK, task)
        .await
        .unwrap_or_else(|_| panic!("{what}: the task did not end"))
        .unwrap();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::KeepaliveTimeout, "{what}: {err}");
    assert_eq!(err.close_code(), Some(CloseCode::INTERNAL_ERROR), "{what}");
    assert!(took >= PING_TIMEOUT, "{what}: after {took:?}");
    assert_closed(raw).await;
}

async fn idle_in_recv(side: Side) {
    let (mut ws, raw) = open(side, keepalive_config()).await;
    let task = tokio::spawn(async move {
        match ws.recv().await {
            Some(Err(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    });
    assert_keepalive_kills(task, raw, "idle").await;
}

async fn blocked_in_send(side: Side) {
    let (mut ws, raw) = open(side, keepalive_config()).await;
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = ws.send(big()).await {
                // Later calls replay the same end.
                let again = ws.send(big()).await.unwrap_err();
                assert_eq!(again.kind(), e.kind());
                assert_eq!(again.close_code(), e.close_code());
                assert!(ws.recv().await.is_none());
                return e;
            }
        }
    });
    assert_keepalive_kills(task, raw, "send").await;
}

async fn blocked_in_flush(side: Side) {
    let (mut ws, raw) = open(side, keepalive_config()).await;
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = ws.feed(big()).await {
                return e;
            }
            if let Err(e) = ws.flush().await {
                return e;
            }
        }
    });
    assert_keepalive_kills(task, raw, "flush").await;
}

/// The split writer, with the reader held but never polled.
async fn split_writer_alone(side: Side) {
    let (ws, raw) = open(side, keepalive_config()).await;
    let (reader, writer) = ws.split();
    let task = tokio::spawn(async move {
        let _reader = reader;
        loop {
            if let Err(e) = writer.send(big()).await {
                return e;
            }
        }
    });
    assert_keepalive_kills(task, raw, "split writer").await;
}

/// The split writer, with a reader task waiting for messages: both end.
async fn split_writer_and_reader(side: Side) {
    let (ws, raw) = open(side, keepalive_config()).await;
    let (mut reader, writer) = ws.split();
    let reader = tokio::spawn(async move {
        let mut last = None;
        while let Some(r) = reader.recv().await {
            last = Some(r);
        }
        last
    });
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = writer.send(big()).await {
                return e;
            }
        }
    });
    assert_keepalive_kills(task, raw, "split writer with reader").await;
    let last = tokio::time::timeout(SLACK, reader)
        .await
        .expect("the reader task did not end")
        .unwrap();
    if let Some(Err(e)) = last {
        assert_eq!(e.kind(), ErrorKind::KeepaliveTimeout, "{e}");
    }
}

/// Sends until a send blocks (the peer's buffers are full).
async fn fill(ws: &mut WebSocket) {
    loop {
        match tokio::time::timeout(Duration::from_millis(200), ws.send(big())).await {
            Ok(r) => r.unwrap(),
            Err(_) => return, // blocked; the message stays queued
        }
    }
}

/// `close` while the peer never reads: the close frame cannot even be
/// written; the handshake is abandoned at the close timeout.
async fn close_with_peer_not_reading(side: Side) {
    let (mut ws, raw) = open(side, close_config()).await;
    fill(&mut ws).await;
    let started = Instant::now();
    let task = tokio::spawn(async move {
        let r = ws.close(CloseCode::NORMAL, "bye").await;
        (r, ws.state())
    });
    let (r, state) = tokio::time::timeout(CLOSE_TIMEOUT + SLACK, task)
        .await
        .expect("close did not end")
        .unwrap();
    let took = started.elapsed();
    r.unwrap();
    assert_eq!(state, tether::State::Closed);
    assert!(took >= CLOSE_TIMEOUT, "{took:?}");
    assert_closed(raw).await;
}

/// The split writer's `close` and the `Sink`'s `close`, blocked on a peer
/// that never reads: a timeout error at the close timeout.
async fn writer_close_with_peer_not_reading(side: Side, sink: bool) {
    let (mut ws, raw) = open(side, close_config()).await;
    fill(&mut ws).await;
    let started = Instant::now();
    let task = tokio::spawn(async move {
        if sink {
            SinkExt::close(&mut ws).await.unwrap_err()
        } else {
            let (_reader, writer) = ws.split();
            writer.close(CloseCode::NORMAL, "bye").await.unwrap_err()
        }
    });
    let err = tokio::time::timeout(CLOSE_TIMEOUT + SLACK, task)
        .await
        .expect("close did not end")
        .unwrap();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(took >= CLOSE_TIMEOUT, "{took:?}");
    assert_closed(raw).await;
}

macro_rules! both_sides {
    ($($name:ident => $f:ident($($arg:expr),*);)*) => {
        mod client {
            use super::*;
            $(#[tokio::test] async fn $name() { $f(Side::Client $(, $arg)*).await })*
        }
        mod server {
            use super::*;
            $(#[tokio::test] async fn $name() { $f(Side::Server $(, $arg)*).await })*
        }
    };
}

both_sides! {
    keepalive_when_idle_in_recv => idle_in_recv();
    keepalive_when_blocked_in_send => blocked_in_send();
    keepalive_when_blocked_in_flush => blocked_in_flush();
    keepalive_when_blocked_in_split_writer => split_writer_alone();
    keepalive_when_blocked_in_split_writer_with_reader_task => split_writer_and_reader();
    close_timeout_in_close_when_peer_never_reads => close_with_peer_not_reading();
    close_timeout_in_writer_close_when_peer_never_reads => writer_close_with_peer_not_reading(false);
    close_timeout_in_sink_close_when_peer_never_reads => writer_close_with_peer_not_reading(true);
}

/// The case first reported: a `serve` handler pushing data to a client that
/// stopped reading. The handler's `send` fails and the handler returns.
#[tokio::test]
async fn serve_handler_blocked_in_send_ends() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let server = ServerBuilder::new()
        .config(keepalive_config())
        .serve("127.0.0.1:0", move |mut ws: WebSocket| {
            let tx = tx.lock().unwrap().take();
            async move {
                let err = loop {
                    if let Err(e) = ws.send(big()).await {
                        break e;
                    }
                };
                if let Some(tx) = tx {
                    let _ = tx.send(err);
                }
            }
        })
        .await
        .unwrap();
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    raw.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(read_head(&mut raw).await.starts_with("HTTP/1.1 101"));
    let err = tokio::time::timeout(PING_INTERVAL + PING_TIMEOUT + SLACK, rx)
        .await
        .expect("the handler did not end")
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::KeepaliveTimeout, "{err}");
    assert_closed(raw).await;
    server.shutdown().await;
}
