//! The two-task client idioms, for tether and each peer, as their docs
//! write them: a reader task receives each echo (`recv`/`next`/`read_frame`)
//! and passes a credit to a writer task, which sends one message per credit.
//!
//! - *split*: the writer awaits `send` for each message (the natural idiom:
//!   nothing in it says "batch").
//! - *split+forward*: the writer forwards a stream of messages into the
//!   library's `Sink` (`StreamExt::forward`), which feeds while messages are
//!   ready and flushes when the stream waits: the idiom that batches.
//!
//! fastwebsockets has no `Sink`; its split (the `unstable-split` feature)
//! hands the reader a closure for the frames it must answer (pong, close),
//! which shares the write half with the writer behind a mutex, as its docs say.

use crate::clients::{check, tcp};
use crate::harness::{ConnFuture, Job, Tally};
use futures_util::{stream, SinkExt, Stream, StreamExt};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

/// Credits from the reader to the writer: one per echo received.
type Credits = (UnboundedSender<()>, UnboundedReceiver<()>);

/// The writer's messages for the Sink idiom: `k` at once, then one per credit.
fn messages<T: Clone>(
    msg: T,
    inflight: usize,
    mut credits: UnboundedReceiver<()>,
) -> impl Stream<Item = T> {
    let more = stream::poll_fn(move |cx| credits.poll_recv(cx));
    stream::iter(0..inflight)
        .map(|_| ())
        .chain(more)
        .map(move |()| msg.clone())
}

/// Runs the reader here and the writer task until either fails; the writer
/// task is stopped with the reader.
async fn drive(
    read: impl Future<Output = Result<(), String>>,
    mut write: JoinHandle<Result<(), String>>,
) -> Result<(), String> {
    tokio::select! {
        r = read => {
            write.abort();
            r.and(Err("the server closed the connection".into()))
        }
        w = &mut write => match w {
            Ok(Err(e)) => Err(e),
            _ => Err("the writer task ended".into()),
        },
    }
}

async fn tether_connect(addr: SocketAddr) -> Result<tether::WebSocket, String> {
    tether::ClientBuilder::new(format!("ws://{addr}/"))
        .max_message_size(Some(16 << 20))
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// tether, split: `WsReader::recv` in one task, `WsWriter::send(..).await`
/// per message in the other.
pub(crate) fn tether_split(addr: SocketAddr, job: Arc<Job>, tally: Arc<Tally>) -> ConnFuture {
    Box::pin(async move {
        let (mut reader, writer) = tether_connect(addr).await?.split();
        tally.ready();
        let (credit_tx, mut credit_rx): Credits = unbounded_channel();
        let msg = tether::Message::binary(job.payload.clone());
        let inflight = job.inflight;
        let write = tokio::spawn(async move {
            for _ in 0..inflight {
                writer.send(msg.clone()).await.map_err(|e| e.to_string())?;
            }
            while credit_rx.recv().await.is_some() {
                writer.send(msg.clone()).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let read = async {
            while let Some(r) = reader.recv().await {
                let m = r.map_err(|e| e.to_string())?;
                check(m.is_binary(), m.len(), &job)?;
                tally.add(1);
                let _ = credit_tx.send(());
            }
            Ok(())
        };
        drive(read, write).await
    })
}

/// tether, split+forward: the messages forwarded into `WsWriter` as a `Sink`.
pub(crate) fn tether_forward(addr: SocketAddr, job: Arc<Job>, tally: Arc<Tally>) -> ConnFuture {
    Box::pin(async move {
        let (mut reader, writer) = tether_connect(addr).await?.split();
        tally.ready();
        let (credit_tx, credit_rx): Credits = unbounded_channel();
        let msg = tether::Message::binary(job.payload.clone());
        let msgs = messages(msg, job.inflight, credit_rx);
        let write = tokio::spawn(async move {
            msgs.map(Ok)
                .forward(writer)
                .await
                .map_err(|e| e.to_string())
        });
        let read = async {
            while let Some(r) = reader.recv().await {
                let m = r.map_err(|e| e.to_string())?;
                check(m.is_binary(), m.len(), &job)?;
                tally.add(1);
                let _ = credit_tx.send(());
            }
            Ok(())
        };
        drive(read, write).await
    })
}

async fn tungstenite_connect(
    addr: SocketAddr,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, String> {
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp(addr).await?)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// tokio-tungstenite, split: `StreamExt::split`, `next` in one task,
/// `SinkExt::send(..).await` per message in the other.
pub(crate) fn tungstenite_split(addr: SocketAddr, job: Arc<Job>, tally: Arc<Tally>) -> ConnFuture {
    use tokio_tungstenite::tungstenite::Message;
    Box::pin(async move {
        let (mut sink, mut read) = tungstenite_connect(addr).await?.split();
        tally.ready();
        let (credit_tx, mut credit_rx): Credits = unbounded_channel();
        let msg = Message::binary(job.payload.clone());
        let inflight = job.inflight;
        let write = tokio::spawn(async move {
            for _ in 0..inflight {
                sink.send(msg.clone()).await.map_err(|e| e.to_string())?;
            }
            while credit_rx.recv().await.is_some() {
                sink.send(msg.clone()).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let read = async {
            while let Some(r) = read.next().await {
                let m = r.map_err(|e| e.to_string())?;
                check(m.is_binary(), m.len(), &job)?;
                tally.add(1);
                let _ = credit_tx.send(());
            }
            Ok(())
        };
        drive(read, write).await
    })
}

/// tokio-tungstenite, split+forward: the messages forwarded into the sink half.
pub(crate) fn tungstenite_forward(
    addr: SocketAddr,
    job: Arc<Job>,
    tally: Arc<Tally>,
) -> ConnFuture {
    use tokio_tungstenite::tungstenite::Message;
    Box::pin(async move {
        let (sink, mut read) = tungstenite_connect(addr).await?.split();
        tally.ready();
        let (credit_tx, credit_rx): Credits = unbounded_channel();
        let msgs = messages(
            Message::binary(job.payload.clone()),
            job.inflight,
            credit_rx,
        );
        let write =
            tokio::spawn(
                async move { msgs.map(Ok).forward(sink).await.map_err(|e| e.to_string()) },
            );
        let read = async {
            while let Some(r) = read.next().await {
                let m = r.map_err(|e| e.to_string())?;
                check(m.is_binary(), m.len(), &job)?;
                tally.add(1);
                let _ = credit_tx.send(());
            }
            Ok(())
        };
        drive(read, write).await
    })
}

async fn tokio_websockets_connect(
    addr: SocketAddr,
) -> Result<tokio_websockets::WebSocketStream<tokio::net::TcpStream>, String> {
    let (ws, _) = tokio_websockets::ClientBuilder::new()
        .uri(&format!("ws://{addr}/"))
        .map_err(|e| e.to_string())?
        .connect_on(tcp(addr).await?)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// tokio-websockets, split: `StreamExt::split`, `next` in one task,
/// `SinkExt::send(..).await` per message in the other.
pub(crate) fn tokio_websockets_split(
    addr: SocketAddr,
    job: Arc<Job>,
    tally: Arc<Tally>,
) -> ConnFuture {
    use tokio_websockets::Message;
    Box::pin(async move {
        let (mut sink, mut read) = tokio_websockets_connect(addr).await?.split();
        tally.ready();
        let (credit_tx, mut credit_rx): Credits = unbounded_channel();
        let payload = job.payload.clone();
        let inflight = job.inflight;
        let write = tokio::spawn(async move {
            for _ in 0..inflight {
                sink.send(Message::binary(payload.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            while credit_rx.recv().await.is_some() {
                sink.send(Message::binary(payload.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let read = async {
            while let Some(r) = read.next().await {
                let m = r.map_err(|e| e.to_string())?;
                check(m.is_binary(), m.as_payload().len(), &job)?;
                tally.add(1);
                let _ = credit_tx.send(());
            }
            Ok(())
        };
        drive(read, write).await
    })
}

/// tokio-websockets, split+forward: the messages forwarded into the sink half.
pub(crate) fn tokio_websockets_forward(
    addr: SocketAddr,
    job: Arc<Job>,
    tally: Arc<Tally>,
) -> ConnFuture {
    use tokio_websockets::Message;
    Box::pin(async move {
        let (sink, mut read) = tokio_websockets_connect(addr).await?.split();
        tally.ready();
        let (credit_tx, credit_rx): Credits = unbounded_channel();
        let payload = job.payload.clone();
        let msgs =
            messages((), job.inflight, credit_rx).map(move |()| Message::binary(payload.clone()));
        let write =
            tokio::spawn(
                async move { msgs.map(Ok).forward(sink).await.map_err(|e| e.to_string()) },
            );
        let read = async {
            while let Some(r) = read.next().await {
                let m = r.map_err(|e| e.to_string())?;
                check(m.is_binary(), m.as_payload().len(), &job)?;
                tally.add(1);
                let _ = credit_tx.send(());
            }
            Ok(())
        };
        drive(read, write).await
    })
}

/// fastwebsockets, split: `WebSocket::split(tokio::io::split)`, a
/// `FragmentCollectorRead` in one task, `write_frame` per message in the
/// other; the write half behind a `tokio::sync::Mutex`, shared with the
/// reader's closure for the frames it must answer.
pub(crate) fn fastwebsockets_split(
    addr: SocketAddr,
    job: Arc<Job>,
    tally: Arc<Tally>,
) -> ConnFuture {
    use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError};
    Box::pin(async move {
        let ws = crate::clients::fastwebsockets_connect(addr).await?;
        let (read, write) = ws.split(tokio::io::split);
        let mut read = FragmentCollectorRead::new(read);
        let write = Arc::new(tokio::sync::Mutex::new(write));
        tally.ready();
        let (credit_tx, mut credit_rx): Credits = unbounded_channel();
        let inflight = job.inflight;
        let writer = write.clone();
        let payload = job.payload.clone();
        let write_task = tokio::spawn(async move {
            for _ in 0..inflight {
                writer
                    .lock()
                    .await
                    .write_frame(Frame::binary(Payload::Borrowed(&payload)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            while credit_rx.recv().await.is_some() {
                writer
                    .lock()
                    .await
                    .write_frame(Frame::binary(Payload::Borrowed(&payload)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let reader = async {
            loop {
                let frame = read
                    .read_frame(&mut |f| {
                        let write = write.clone();
                        async move { write.lock().await.write_frame(f).await }
                    })
                    .await
                    .map_err(|e: WebSocketError| e.to_string())?;
                match frame.opcode {
                    OpCode::Binary | OpCode::Text => {
                        check(frame.opcode == OpCode::Binary, frame.payload.len(), &job)?
                    }
                    OpCode::Close => return Ok(()),
                    _ => continue,
                }
                tally.add(1);
                let _ = credit_tx.send(());
            }
        };
        drive(reader, write_task).await
    })
}
