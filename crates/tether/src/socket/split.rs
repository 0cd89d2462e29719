//! The two halves of a split [`WebSocket`](super::WebSocket): a reader, and
//! a writer that can be cloned for as many tasks as send, over one
//! [`Driver`] behind a mutex that is never held across an `.await`.
//!
//! Every half drives the same transport and timers, but a transport and a
//! timer keep one waker each: polled by one half, they would forget the
//! others, and a keepalive timeout or a freed write buffer could wake the
//! wrong task (or a task that has moved on). So every poll made on behalf of
//! a half uses one shared waker that wakes whichever halves are waiting.
//!
//! Writes coalesce. While a task waits in [`WsReader::recv`], senders queue
//! their messages and leave the write-out to it: it is woken, and writes
//! everything queued by then in one vectored write (one task switch later,
//! so a lone message is not held back). With no reader waiting, `send`
//! writes at once; messages queued by other tasks meanwhile go out in the
//! same write.

use super::driver::Driver;
use crate::error::{Error, Result};
use bytes::Bytes;
use futures_core::Stream as FuturesStream;
use futures_sink::Sink;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Wake, Waker};
use tether_proto::{CloseCode, CloseFrame, Message, PreparedMessage, Queued, State};
use tokio::io::{AsyncRead, AsyncWrite};

/// The wakers of the tasks waiting on the socket: the reader's, and one per
/// task waiting to send. Waking it wakes them all.
#[derive(Default)]
struct Wakers {
    reader: Mutex<Option<Waker>>,
    /// Senders waiting for write space or a flush. Each task appears once;
    /// the list is emptied by every wake, so it holds at most the tasks
    /// that polled a send since the last wake.
    writers: Mutex<Vec<Waker>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Never held across an await, and nothing panics while holding it;
    // recover from poisoning anyway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Wakers {
    fn register_reader(&self, waker: &Waker) {
        let mut slot = lock(&self.reader);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    fn register_writer(&self, waker: &Waker) {
        let mut list = lock(&self.writers);
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }

    fn wake_reader(&self) {
        if let Some(w) = lock(&self.reader).take() {
            w.wake();
        }
    }
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_reader();
        let writers = std::mem::take(&mut *lock(&self.writers));
        for w in writers {
            w.wake();
        }
    }
}

pub(super) struct Shared<S> {
    driver: Mutex<Driver<S>>,
    wakers: Arc<Wakers>,
    /// A waker over `wakers`, made once.
    waker: Waker,
    /// A task is inside [`WsReader::recv`], waiting for input: it will
    /// write out whatever is queued when woken. Changed only with the
    /// driver locked, so a sender that saw it set under the lock hands its
    /// bytes to a reader that is really waiting.
    reader_waiting: AtomicBool,
}

/// A handle on the shared driver.
struct Handle<S>(Arc<Shared<S>>);

impl<S> Clone for Handle<S> {
    fn clone(&self) -> Self {
        Handle(self.0.clone())
    }
}

impl<S> Handle<S> {
    fn lock(&self) -> MutexGuard<'_, Driver<S>> {
        lock(&self.0.driver)
    }

    /// Runs `f` on the driver for a sender, with the shared waker. The
    /// sender's own waker joins the list only when it has to wait, so that
    /// tasks that send without waiting leave nothing behind.
    fn poll_writer<R>(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&mut Driver<S>, &mut Context<'_>) -> Poll<R>,
    ) -> Poll<R> {
        let mut shared_cx = Context::from_waker(&self.0.waker);
        let r = f(&mut self.lock(), &mut shared_cx);
        if r.is_ready() {
            return r;
        }
        // Register, then look again: a wake between the first look and the
        // registration would otherwise be lost.
        self.0.wakers.register_writer(cx.waker());
        f(&mut self.lock(), &mut shared_cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Handle<S> {
    /// Polls for the next message for the reader. `waits` marks the reader
    /// as one that writes out for the senders while it waits: only
    /// [`WsReader::recv`], which learns when it is cancelled.
    fn poll_reader(&self, cx: &mut Context<'_>, waits: bool) -> Poll<Option<Result<Message>>> {
        self.0.wakers.register_reader(cx.waker());
        let mut shared_cx = Context::from_waker(&self.0.waker);
        let mut d = self.lock();
        let was_waiting = self.0.reader_waiting.load(Ordering::Relaxed);
        let r = d.poll_next_msg(&mut shared_cx);
        self.0
            .reader_waiting
            .store(waits && r.is_pending(), Ordering::Relaxed);
        if was_waiting && r.is_ready() {
            // Woken with input as well as with messages handed over: the
            // message is returned before the next wait would write them
            // out, so write them now.
            d.try_write_out(&mut shared_cx);
        }
        r
    }

    /// The reader's `recv` was cancelled while it waited: what was handed
    /// to it is written now, as far as the transport takes it without
    /// waiting; the rest goes with the next operation on the socket.
    fn reader_left(&self) {
        if self.0.reader_waiting.load(Ordering::Relaxed) {
            let mut d = self.lock();
            if self.0.reader_waiting.swap(false, Ordering::Relaxed) {
                d.try_write_out(&mut Context::from_waker(&self.0.waker));
            }
        }
    }
}

/// Splits `driver` into the two halves.
pub(super) fn split<S>(mut driver: Driver<S>) -> (WsReader<S>, WsWriter<S>) {
    driver.split = true;
    let wakers = Arc::new(Wakers::default());
    let shared = Arc::new(Shared {
        driver: Mutex::new(driver),
        waker: Waker::from(wakers.clone()),
        wakers,
        reader_waiting: AtomicBool::new(false),
    });
    (
        WsReader {
            handle: Handle(shared.clone()),
        },
        WsWriter {
            handle: Handle(shared),
        },
    )
}

/// The receiving half of a split [`WebSocket`](super::WebSocket).
///
/// Keep a task receiving: besides messages, the reader is what answers
/// pings, completes the closing handshake, and (while it waits in
/// [`WsReader::recv`]) writes out what the writers queued.
pub struct WsReader<S = crate::MaybeTlsStream> {
    handle: Handle<S>,
}

/// The sending half of a split [`WebSocket`](super::WebSocket). Clone it to
/// send from several tasks at once: the clones share the connection, and
/// each message is queued whole, so the messages of each task arrive in the
/// order that task sent them.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use tether::Message;
/// let ws = tether::connect("ws://127.0.0.1:9001/").await?;
/// let (mut reader, writer) = ws.split();
/// for task in 0..4 {
///     let writer = writer.clone();
///     tokio::spawn(async move {
///         for i in 0..10 {
///             writer.send(Message::text(format!("{task}:{i}"))).await?;
///         }
///         Ok::<(), tether::Error>(())
///     });
/// }
/// while let Some(msg) = reader.recv().await {
///     println!("{:?}", msg?);
/// }
/// # Ok(()) }
/// ```
pub struct WsWriter<S = crate::MaybeTlsStream> {
    handle: Handle<S>,
}

impl<S> Clone for WsWriter<S> {
    fn clone(&self) -> Self {
        WsWriter {
            handle: self.handle.clone(),
        }
    }
}

impl<S> std::fmt::Debug for WsReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsReader")
    }
}

impl<S> std::fmt::Debug for WsWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsWriter")
    }
}

/// Marks the end of a wait in [`WsReader::recv`], however it ends.
struct Waiting<'a, S: AsyncRead + AsyncWrite + Unpin>(&'a Handle<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> Drop for Waiting<'_, S> {
    fn drop(&mut self) {
        self.0.reader_left();
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// Receives the next message, as [`WebSocket::recv`](super::WebSocket::recv).
    ///
    /// While it waits for input, it also writes out the messages the
    /// writers queue meanwhile (many in one write). If it is cancelled
    /// first, it writes them before returning, as far as the transport
    /// takes them without waiting.
    ///
    /// # Errors
    /// As [`WebSocket::recv`](super::WebSocket::recv).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        let waiting = Waiting(&self.handle);
        poll_fn(|cx| waiting.0.poll_reader(cx, true)).await
    }

    /// The state of the connection.
    pub fn state(&self) -> State {
        self.handle.lock().state()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    /// Sends a message. It is queued at once (after waiting, like every
    /// send, while more than `write_buffer_limit` bytes are unsent). Then,
    /// if a task waits in [`WsReader::recv`], that task writes it out,
    /// together with whatever else was queued by then, and `send` returns
    /// without waiting for the write; otherwise `send` writes it out
    /// before it returns. A close frame is always written out before
    /// `send` returns.
    ///
    /// Like every wait of the socket, a wait for write space here still runs
    /// the keepalive and the close timer: a peer that stopped reading is
    /// declared dead at the keepalive timeout.
    ///
    /// # Errors
    /// As [`WebSocket::send`](super::WebSocket::send).
    ///
    /// # Cancel safety
    /// As [`WebSocket::send`](super::WebSocket::send).
    pub async fn send(&self, msg: Message) -> Result<()> {
        let close = msg.is_close();
        let mut msg = Some(msg);
        // Room, then queue, then the choice of who writes, under one lock:
        // concurrent senders do not both take the last room, and a reader
        // seen waiting here is still waiting.
        let handed_over = poll_fn(|cx| {
            self.handle.poll_writer(cx, |d, cx| {
                ready!(d.poll_ready_for(cx, close))?;
                if let Some(m) = msg.take() {
                    d.queue(m, None)?;
                }
                let waiting = self.handle.0.reader_waiting.load(Ordering::Relaxed);
                Poll::Ready(Ok::<_, Error>(!close && waiting))
            })
        })
        .await?;
        if handed_over {
            self.handle.0.wakers.wake_reader();
            return Ok(());
        }
        self.flush().await
    }

    /// Writes out everything queued, by any clone.
    ///
    /// # Errors
    /// An I/O error reported as [`ErrorKind::Closed`](crate::ErrorKind::Closed) (1006).
    ///
    /// # Cancel safety
    /// Cancel-safe: what was not written stays queued.
    pub async fn flush(&self) -> Result<()> {
        poll_fn(|cx| self.handle.poll_writer(cx, Driver::poll_flush)).await
    }

    /// Sends a ping.
    ///
    /// # Errors
    /// As [`WebSocket::send`](super::WebSocket::send).
    ///
    /// # Cancel safety
    /// As [`WebSocket::send`](super::WebSocket::send).
    pub async fn ping(&self, payload: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Ping(payload.into())).await
    }

    /// Sends a close frame and flushes it. The reader sees the peer's answer
    /// and then the end of the stream.
    ///
    /// # Errors
    /// As [`WebSocket::close`](super::WebSocket::close); [`ErrorKind::Timeout`](crate::ErrorKind::Timeout)
    /// when the peer did not take the close frame within the close timeout.
    ///
    /// # Cancel safety
    /// The close frame, once queued, is sent.
    pub async fn close(&self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        let code = code.into();
        self.send(Message::Close(Some(CloseFrame::new(code, reason))))
            .await
    }

    /// The state of the connection.
    pub fn state(&self) -> State {
        self.handle.lock().state()
    }

    /// Outgoing bytes queued and not yet written to the transport.
    pub fn buffered_amount(&self) -> usize {
        self.handle.lock().conn.buffered_amount()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> WsWriter<S> {
    /// This connection as a fan-out target.
    pub(crate) fn target(&self) -> Arc<dyn Target> {
        self.handle.0.clone()
    }
}

/// What [`Target::offer`] did with a prepared message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    /// Queued; the connection writes it out.
    Queued(Queued),
    /// It would have taken the connection's unsent bytes past the limit:
    /// nothing was queued, and the connection is closing with 1013.
    ClosedSlow,
    /// The connection is closing or closed.
    Gone,
}

/// A connection that fan-out queues prepared messages on (a split server
/// socket). Object-safe, so that one fan-out holds connections over any
/// transport.
pub(crate) trait Target: Send + Sync {
    /// Queues `msg` without waiting, unless the connection would then hold
    /// more than `limit` unsent bytes: then closes it with 1013 (RFC 6455
    /// §7.4.1, "try again later").
    fn offer(&self, msg: &PreparedMessage, limit: usize) -> Offered;
}

/// The close reason sent to a member that fell too far behind.
const SLOW_REASON: &str = "too slow: messages came faster than it read";

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Target for Shared<S> {
    fn offer(&self, msg: &PreparedMessage, limit: usize) -> Offered {
        let mut d = lock(&self.driver);
        if d.is_closing() || d.conn.state() != State::Open {
            return Offered::Gone;
        }
        let offered = match d.conn.send_prepared(msg, limit) {
            Ok(Queued::OverLimit { .. }) => {
                // Nothing is dropped silently: the peer learns from the
                // close code that it missed messages. The close timer
                // starts at the next wait of the socket, and bounds the
                // wait for a peer that does not read at all.
                let _ = d.conn.close(CloseCode::TRY_AGAIN_LATER, SLOW_REASON);
                Offered::ClosedSlow
            }
            Ok(q) => Offered::Queued(q),
            Err(_) => return Offered::Gone,
        };
        // Never waits: a waiting reader writes it out, or one attempt is
        // made here; a full socket is written when it drains, by the reader.
        if self.reader_waiting.load(Ordering::Relaxed) {
            drop(d);
            self.wakers.wake_reader();
        } else {
            d.try_write_out(&mut Context::from_waker(&self.waker));
        }
        offered
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FuturesStream for WsReader<S> {
    type Item = Result<Message>;

    /// As [`WsReader::recv`], except that while it waits it does not write
    /// out for the writers (a `Stream` cannot tell when its consumer stops
    /// polling): each `send` writes its own message.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.handle.poll_reader(cx, false)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.handle.poll_writer(cx, Driver::poll_ready)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.handle.lock().queue(item, None)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.handle.poll_writer(cx, Driver::poll_flush)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.handle.poll_writer(cx, Driver::poll_close)
    }
}
