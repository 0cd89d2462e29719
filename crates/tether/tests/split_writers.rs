//! Sending from many tasks through clones of a split socket's writer, and
//! how those sends are written out: handed to the task waiting in
//! `WsReader::recv` (many messages in one write), or written at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tether::{Message, Role, ServerBuilder, WebSocket, WebSocketConfig};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

/// A server that forwards every data message it receives to the test.
async fn collecting_server() -> (tether::Server, mpsc::UnboundedReceiver<Message>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = ServerBuilder::new()
        .serve("127.0.0.1:0", move |mut ws: WebSocket| {
            let tx = tx.clone();
            async move {
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_data() {
                        let _ = tx.send(m);
                    }
                }
            }
        })
        .await
        .unwrap();
    (server, rx)
}

/// Checks that `got` holds `tasks` x `per_task` messages `task:i:...`, each
/// task's in order.
fn assert_per_task_order(got: &[Message], tasks: usize, per_task: usize) {
    assert_eq!(got.len(), tasks * per_task);
    let mut next = vec![0usize; tasks];
    for m in got {
        let text = m.as_text().expect("text");
        let mut parts = text.splitn(3, ':');
        let (t, i) = (parts.next().unwrap(), parts.next().expect("task:i:pad"));
        let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[t], "task {t}'s messages out of order");
        next[t] += 1;
    }
    assert!(next.iter().all(|&n| n == per_task));
}

async fn send_from_tasks(reader_waits: bool) {
    let (server, mut got) = collecting_server().await;
    let ws = tether::connect(&format!("ws://{}/", server.local_addr()))
        .await
        .unwrap();
    let (mut reader, writer) = ws.split();
    // With a task waiting in recv, sends are handed to it; without, each
    // send writes for itself.
    let reading =
        reader_waits.then(|| tokio::spawn(async move { while reader.recv().await.is_some() {} }));
    let (tasks, per_task) = (8, 300);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let w = writer.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                // Some large enough to be queued by reference.
                let pad = if i % 50 == 0 {
                    "x".repeat(5000)
                } else {
                    String::new()
                };
                w.send(Message::text(format!("{t}:{i}:{pad}")))
                    .await
                    .unwrap();
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for h in handles {
        timeout(T, h).await.unwrap().unwrap();
    }
    let mut all = Vec::new();
    while all.len() < tasks * per_task {
        all.push(timeout(T, got.recv()).await.unwrap().unwrap());
    }
    assert_per_task_order(&all, tasks, per_task);
    if let Some(r) = reading {
        r.abort();
        let _ = r.await;
    }
    // Dropping both halves closes the transport; the server's shutdown
    // then has nothing to wait for.
    drop(writer);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clones_send_from_many_tasks_with_a_reader_waiting() {
    send_from_tasks(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clones_send_from_many_tasks_without_a_reader() {
    send_from_tasks(false).await;
}

/// A transport that counts the writes made to it.
struct Counting {
    io: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if r.is_ready() {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A client socket over a counting in-memory pipe, and the server end.
fn pair() -> (
    WebSocket<Counting>,
    WebSocket<DuplexStream>,
    Arc<AtomicUsize>,
) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let writes = Arc::new(AtomicUsize::new(0));
    let client = WebSocket::from_raw(
        Counting {
            io: a,
            writes: writes.clone(),
        },
        Role::Client,
        WebSocketConfig::default(),
    );
    let server = WebSocket::from_raw(b, Role::Server, WebSocketConfig::server());
    (client, server, writes)
}

/// Polls `fut` once.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

#[tokio::test(flavor = "current_thread")]
async fn sends_made_while_the_reader_waits_go_out_in_one_write() {
    let (client, mut server, writes) = pair();
    let (mut reader, writer) = client.split();
    let reading = tokio::spawn(async move { while reader.recv().await.is_some() {} });
    // Let the reader start waiting.
    tokio::task::yield_now().await;
    let before = writes.load(Ordering::SeqCst);
    // 100 sends without yielding: each is queued and handed to the reader.
    for i in 0..100 {
        writer.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    assert_eq!(writes.load(Ordering::SeqCst), before, "nothing written yet");
    for i in 0..100 {
        let m = timeout(T, server.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::text(format!("m{i}")));
    }
    assert_eq!(
        writes.load(Ordering::SeqCst),
        before + 1,
        "the reader wrote the 100 messages in one write"
    );
    // A lone message is not held back: it arrives with nothing else sent.
    writer.send(Message::text("alone")).await.unwrap();
    let m = timeout(Duration::from_secs(2), server.recv())
        .await
        .unwrap();
    assert_eq!(m.unwrap().unwrap(), Message::text("alone"));
    reading.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_waiting_reader_send_writes_before_it_returns() {
    let (client, mut server, writes) = pair();
    let (_reader, writer) = client.split();
    for i in 0..3 {
        let before = writes.load(Ordering::SeqCst);
        writer.send(Message::text(format!("m{i}"))).await.unwrap();
        assert_eq!(writes.load(Ordering::SeqCst), before + 1);
    }
    for i in 0..3 {
        let m = timeout(T, server.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::text(format!("m{i}")));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_recv_writes_what_was_handed_to_it() {
    let (client, mut server, _writes) = pair();
    let (mut reader, writer) = client.split();
    let mut waiting = Box::pin(reader.recv());
    assert!(poll_once(&mut waiting).await.is_pending());
    // Handed to the waiting reader...
    writer.send(Message::text("handed over")).await.unwrap();
    // ...which is cancelled before it runs again.
    drop(waiting);
    let m = timeout(Duration::from_secs(2), server.recv())
        .await
        .unwrap();
    assert_eq!(m.unwrap().unwrap(), Message::text("handed over"));
    // The reader no longer waits: the next send writes for itself.
    writer.send(Message::text("next")).await.unwrap();
    let m = timeout(Duration::from_secs(2), server.recv())
        .await
        .unwrap();
    assert_eq!(m.unwrap().unwrap(), Message::text("next"));
    drop(reader);
}

#[tokio::test(flavor = "current_thread")]
async fn a_reader_woken_with_input_still_writes_what_was_handed_to_it() {
    let (client, mut server, _writes) = pair();
    let (mut reader, writer) = client.split();
    let mut waiting = Box::pin(reader.recv());
    assert!(poll_once(&mut waiting).await.is_pending());
    // Input arrives and a message is handed over before the reader runs.
    server.send(Message::text("from the server")).await.unwrap();
    writer.send(Message::text("handed over")).await.unwrap();
    let got = timeout(T, waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::text("from the server"));
    // The reader returned a message without waiting again, but wrote first.
    let m = timeout(Duration::from_secs(2), server.recv())
        .await
        .unwrap();
    assert_eq!(m.unwrap().unwrap(), Message::text("handed over"));
}
