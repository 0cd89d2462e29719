//! The clients under test. Each connection, written the plain way with its
//! library's API, in one task: send `k` binary messages, then for each echo
//! received (checked: binary, right length) send another.

use crate::harness::{ClientFn, ConnFuture, Job, Tally};
use crate::idioms;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// How every library client here is written, for the report.
pub(crate) const STYLE: &str =
    "plain: one task per connection, send k messages, then `recv` one / `send` one \
     (tether: `WebSocket::recv` + `WebSocket::send` without `split`). *(split)*: the connection \
     split in two tasks, the reader passing one credit per echo to the writer, which awaits \
     `send` for each message (the natural idiom; fastwebsockets: `split(tokio::io::split)`, a \
     `FragmentCollectorRead`, the write half behind a mutex shared with the reader's \
     obligated-send closure). *(split+forward)*: the same, but the writer forwards a stream of \
     the messages into the library's `Sink` (`StreamExt::forward`: feed while messages are \
     ready, flush when the stream waits)";

/// The clients: label and connection function.
/// Each library in three idioms (see [`crate::idioms`]): one task, split
/// with one `send(..).await` per message, split with the messages forwarded
/// into the `Sink` (fastwebsockets has no `Sink`).
pub(crate) const CLIENTS: &[(&str, ClientFn)] = &[
    ("tether", tether),
    ("tether (split)", idioms::tether_split),
    ("tether (split+forward)", idioms::tether_forward),
    ("tokio-tungstenite", tungstenite),
    ("tokio-tungstenite (split)", idioms::tungstenite_split),
    (
        "tokio-tungstenite (split+forward)",
        idioms::tungstenite_forward,
    ),
    ("fastwebsockets", fastwebsockets),
    ("fastwebsockets (split)", idioms::fastwebsockets_split),
    ("tokio-websockets", tokio_websockets),
    ("tokio-websockets (split)", idioms::tokio_websockets_split),
    (
        "tokio-websockets (split+forward)",
        idioms::tokio_websockets_forward,
    ),
];

pub(crate) fn check(binary: bool, len: usize, job: &Job) -> Result<(), String> {
    if !binary {
        return Err("echo is not a binary message".into());
    }
    if len != job.payload.len() {
        return Err(format!("echo has {len} bytes, sent {}", job.payload.len()));
    }
    Ok(())
}

pub(crate) async fn tcp(addr: SocketAddr) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(tcp)
}

/// tether: `ClientBuilder::connect` (which sets `TCP_NODELAY` itself).
fn tether(addr: SocketAddr, job: Arc<Job>, tally: Arc<Tally>) -> ConnFuture {
    Box::pin(async move {
        let mut ws = tether::ClientBuilder::new(format!("ws://{addr}/"))
            .max_message_size(Some(16 << 20))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        tally.ready();
        let msg = tether::Message::binary(job.payload.clone());
        for _ in 0..job.inflight {
            ws.send(msg.clone()).await.map_err(|e| e.to_string())?;
        }
        while let Some(r) = ws.recv().await {
            let m = r.map_err(|e| e.to_string())?;
            check(m.is_binary(), m.len(), &job)?;
            tally.add(1);
            ws.send(msg.clone()).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// tokio-tungstenite: `client_async` on a TCP stream, `SinkExt::send`, `next`.
fn tungstenite(addr: SocketAddr, job: Arc<Job>, tally: Arc<Tally>) -> ConnFuture {
    use tokio_tungstenite::tungstenite::Message;
    Box::pin(async move {
        let (mut ws, _) =
            tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp(addr).await?)
                .await
                .map_err(|e| e.to_string())?;
        tally.ready();
        let msg = Message::binary(job.payload.clone());
        for _ in 0..job.inflight {
            ws.send(msg.clone()).await.map_err(|e| e.to_string())?;
        }
        while let Some(r) = ws.next().await {
            let m = r.map_err(|e| e.to_string())?;
            check(m.is_binary(), m.len(), &job)?;
            tally.add(1);
            ws.send(msg.clone()).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// Runs hyper's connection task on tokio, as fastwebsockets' docs show.
struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::task::spawn(fut);
    }
}

/// fastwebsockets' client handshake through hyper, as its docs show.
pub(crate) async fn fastwebsockets_connect(
    addr: SocketAddr,
) -> Result<fastwebsockets::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>, String> {
    use fastwebsockets::handshake;
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use hyper::header::{CONNECTION, UPGRADE};
    let req = hyper::Request::builder()
        .method("GET")
        .uri(format!("http://{addr}/"))
        .header("Host", addr.to_string())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header("Sec-WebSocket-Key", handshake::generate_key())
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let (ws, _) = handshake::client(&SpawnExecutor, req, tcp(addr).await?)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// fastwebsockets: `handshake::client` (hyper), a `FragmentCollector`,
/// `write_frame` / `read_frame`.
fn fastwebsockets(addr: SocketAddr, job: Arc<Job>, tally: Arc<Tally>) -> ConnFuture {
    use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
    Box::pin(async move {
        let ws = fastwebsockets_connect(addr).await?;
        let mut ws = FragmentCollector::new(ws);
        tally.ready();
        for _ in 0..job.inflight {
            ws.write_frame(Frame::binary(Payload::Borrowed(&job.payload)))
                .await
                .map_err(|e| e.to_string())?;
        }
        loop {
            let frame = ws.read_frame().await.map_err(|e| e.to_string())?;
            match frame.opcode {
                OpCode::Binary | OpCode::Text => {
                    check(frame.opcode == OpCode::Binary, frame.payload.len(), &job)?
                }
                OpCode::Close => return Err("server closed the connection".into()),
                _ => continue,
            }
            tally.add(1);
            ws.write_frame(Frame::binary(Payload::Borrowed(&job.payload)))
                .await
                .map_err(|e| e.to_string())?;
        }
    })
}

/// tokio-websockets: `ClientBuilder::connect_on` a TCP stream, `send`, `next`.
fn tokio_websockets(addr: SocketAddr, job: Arc<Job>, tally: Arc<Tally>) -> ConnFuture {
    use tokio_websockets::Message;
    Box::pin(async move {
        let (mut ws, _) = tokio_websockets::ClientBuilder::new()
            .uri(&format!("ws://{addr}/"))
            .map_err(|e| e.to_string())?
            .connect_on(tcp(addr).await?)
            .await
            .map_err(|e| e.to_string())?;
        tally.ready();
        for _ in 0..job.inflight {
            ws.send(Message::binary(job.payload.clone()))
                .await
                .map_err(|e| e.to_string())?;
        }
        while let Some(r) = ws.next().await {
            let m = r.map_err(|e| e.to_string())?;
            check(m.is_binary(), m.as_payload().len(), &job)?;
            tally.add(1);
            ws.send(Message::binary(job.payload.clone()))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
