//! [`WebSocket`]: a message stream and sink over any async byte stream,
//! driving the sans-I/O [`Connection`] of `tether-proto`.
//!
//! This is the only place that moves bytes between a transport and the core.
//! Writes are coalesced: a message sent while more input is already buffered
//! is written together with the following ones, at the latest when `recv`
//! next waits for input or the buffer passes `write_buffer_limit`.

use crate::error::{Error, ErrorKind, Initiator, Result};
use bytes::{Buf, Bytes};
use futures_core::Stream as FuturesStream;
use futures_sink::Sink;
use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;
use tether_proto::handshake::Request;
use tether_proto::{CloseCode, CloseFrame, Connection, Message, State};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Settings of an open WebSocket, with the defaults of Python `websockets`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The largest message accepted (default 1 MiB). Over it, the connection
    /// fails with close code 1009 before the excess is buffered. `None`: no limit.
    pub max_message_size: Option<usize>,
    /// The largest frame accepted (default: `max_message_size`).
    pub max_frame_size: Option<usize>,
    /// Outgoing bytes buffered before `send` waits for the transport to drain
    /// them (default 64 KiB): backpressure instead of unbounded memory.
    pub write_buffer_limit: usize,
    /// How long the closing handshake may take (default 10 s). `None`: wait forever.
    pub close_timeout: Option<Duration>,
    /// How often to send a keepalive ping (default 20 s, as websockets).
    /// `None` disables keepalive.
    pub ping_interval: Option<Duration>,
    /// How long to wait for the pong (default 20 s). Without it in time the
    /// peer is declared dead: the connection fails with close code 1011 and
    /// [`ErrorKind::KeepaliveTimeout`], without waiting for a closing
    /// handshake. `None`: pings are sent but never time out.
    pub ping_timeout: Option<Duration>,
    /// permessage-deflate (RFC 7692): offered by clients and accepted by
    /// servers by default, as browsers and websockets do. `None` turns it
    /// off. [`ServerBuilder`](crate::ServerBuilder) uses a 12-bit window.
    pub compression: Option<tether_proto::deflate::DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: Some(1 << 20),
            max_frame_size: None,
            write_buffer_limit: 64 * 1024,
            close_timeout: Some(Duration::from_secs(10)),
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Some(Duration::from_secs(20)),
            compression: Some(tether_proto::deflate::DeflateConfig::default()),
        }
    }
}

impl Config {
    pub(crate) fn proto(&self) -> tether_proto::ConnectionConfig {
        let msg = self.max_message_size.unwrap_or(usize::MAX);
        let mut c = tether_proto::ConnectionConfig::default()
            .with_max_message_size(msg)
            .with_max_frame_size(self.max_frame_size.unwrap_or(msg));
        c.compression = self.compression;
        c
    }
}

/// Which half is polling, so that a write stalled by one half is resumed
/// when the other makes progress (see [`Core::poll_write_out`]).
#[derive(Clone, Copy)]
enum Who {
    Reader = 0,
    Writer = 1,
}

/// How far the end of the connection has progressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// Not finishing.
    No,
    /// Flushing the last frames.
    Flush,
    /// Shutting down the write side.
    Shutdown,
    /// A client waiting for the server to close TCP (RFC 6455 §7.1.1).
    AwaitEof,
    /// Done: the stream yields `None`.
    Done,
}

pub(crate) struct Core<S> {
    io: S,
    conn: Connection,
    config: Arc<Config>,
    finish: Finish,
    close_timer: Option<Pin<Box<Sleep>>>,
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Set by the server when it shuts down: a lock-free check for the send
    /// path (polling `shutdown` takes a lock shared by every connection).
    shutting_down: Option<Arc<AtomicBool>>,
    split: bool,
    write_waiters: [Option<Waker>; 2],
    /// The error that ended the connection, replayed to later sends.
    ended: Option<(ErrorKind, String)>,
    keepalive: Option<Keepalive>,
    latency: Option<Duration>,
    /// Bytes written to the transport since the connection opened.
    written: u64,
    /// The transport took every byte but its flush is pending: a buffering
    /// transport (TLS) still holds some of them.
    unflushed: bool,
    opened_at: Instant,
    ended_at: Option<Instant>,
    /// The user asked to close (a close frame sent by `close` or `send`).
    user_closed: bool,
    report: Option<Arc<Mutex<EndInfo>>>,
}

/// Keepalive pings (websockets' `ping_interval` / `ping_timeout`).
struct Keepalive {
    next_ping: Pin<Box<Sleep>>,
    /// The payload counter and send time of the ping awaiting its pong.
    awaiting: Option<(u32, Instant)>,
    deadline: Option<Pin<Box<Sleep>>>,
    counter: u32,
}

/// How a connection ended, reported to the reconnect logic when the socket
/// is dropped.
#[derive(Debug, Clone)]
pub(crate) struct EndInfo {
    pub(crate) opened_at: Instant,
    pub(crate) ended_at: Option<Instant>,
    pub(crate) close_received: Option<Option<CloseFrame>>,
    pub(crate) close_sent: Option<Option<CloseFrame>>,
    pub(crate) user_closed: bool,
    pub(crate) error: Option<(ErrorKind, String)>,
    pub(crate) dropped: bool,
}

impl EndInfo {
    pub(crate) fn new(opened_at: Instant) -> Self {
        EndInfo {
            opened_at,
            ended_at: None,
            close_received: None,
            close_sent: None,
            user_closed: false,
            error: None,
            dropped: false,
        }
    }
}

impl<S> Drop for Core<S> {
    fn drop(&mut self) {
        if let Some(r) = &self.report {
            let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
            r.ended_at = Some(self.ended_at.unwrap_or_else(Instant::now));
            r.close_received = self.conn.close_received().map(|f| f.cloned());
            r.close_sent = self.conn.close_sent().map(|f| f.cloned());
            r.user_closed = self.user_closed;
            r.error = self.ended.clone();
            r.dropped = true;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Core<S> {
    fn wake_other(&mut self, who: Who) {
        if self.split {
            if let Some(w) = self.write_waiters[1 - who as usize].take() {
                w.wake();
            }
        }
    }

    /// Writes out everything queued in the core, with vectored writes.
    ///
    /// A transport keeps one write waker, so when both halves of a split
    /// socket wait to write, the one that registered last steals the wake-up.
    /// Each half therefore records its waker, and any progress wakes the
    /// other one.
    fn poll_write_out(&mut self, cx: &mut Context<'_>, who: Who) -> Poll<std::io::Result<()>> {
        loop {
            let out = self.conn.transmit();
            if out.is_empty() {
                break;
            }
            let mut slices = [IoSlice::new(&[]); 64];
            let n = out.chunks_vectored(&mut slices);
            match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(k)) => {
                    self.conn.transmit().advance(k);
                    self.written += k as u64;
                    self.wake_other(who);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if self.split {
                        self.write_waiters[who as usize] = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        }
        // A buffering transport (TLS) may hold bytes that it took: flush,
        // and remember a pending flush so that `recv` resumes it before it
        // waits for input, and so that the other half is woken when it ends.
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => {
                self.unflushed = true;
                if self.split {
                    self.write_waiters[who as usize] = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Poll::Ready(r) => {
                if std::mem::take(&mut self.unflushed) {
                    self.wake_other(who);
                }
                Poll::Ready(r)
            }
        }
    }

    /// Starts a going-away close when the server shuts down.
    fn poll_shutdown_signal(&mut self, cx: &mut Context<'_>) {
        if let Some(sig) = &mut self.shutdown {
            if sig.as_mut().poll(cx).is_ready() {
                self.shutdown = None;
                if self.conn.state() == State::Open {
                    let _ = self
                        .conn
                        .close(CloseCode::GOING_AWAY, "server shutting down");
                }
            }
        }
    }

    /// Sends keepalive pings and fails the connection when a pong is late.
    /// Returns the error to report when the peer was declared dead.
    fn poll_keepalive(&mut self, cx: &mut Context<'_>, who: Who) -> Option<Error> {
        let interval = self.config.ping_interval?;
        if self.conn.state() != State::Open || self.finish != Finish::No {
            return None;
        }
        let ka = self.keepalive.get_or_insert_with(|| Keepalive {
            next_ping: Box::pin(tokio::time::sleep(interval)),
            awaiting: None,
            deadline: None,
            counter: 0,
        });
        if let Some(d) = &mut ka.deadline {
            if d.as_mut().poll(cx).is_ready() {
                let t = self.config.ping_timeout.unwrap_or_default();
                tracing::warn!(timeout = ?t, "no pong to the keepalive ping: the peer is unresponsive");
                self.conn
                    .fail(CloseCode::INTERNAL_ERROR, "keepalive ping timeout");
                // The peer is known to be dead: one attempt to send the close
                // frame, then give up at once instead of waiting a close timeout.
                let _ = self.poll_write_out(cx, who);
                let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                self.finish = Finish::Done;
                let e = Error::msg(
                    ErrorKind::KeepaliveTimeout,
                    format!(
                        "keepalive ping timeout: no pong within {t:?}; the peer is unresponsive"
                    ),
                )
                .with_close(
                    Some(CloseFrame::new(
                        CloseCode::INTERNAL_ERROR,
                        "keepalive ping timeout",
                    )),
                    Initiator::Local,
                );
                return Some(self.end_error(e));
            }
        }
        let mut sent = false;
        while ka.next_ping.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            ka.next_ping.as_mut().reset(now + interval);
            if ka.awaiting.is_none() {
                ka.counter = ka.counter.wrapping_add(1);
                let payload = Bytes::copy_from_slice(&ka.counter.to_be_bytes());
                if self.conn.send(Message::Ping(payload)).is_ok() {
                    ka.awaiting = Some((ka.counter, now));
                    if let Some(t) = self.config.ping_timeout {
                        let mut d = Box::pin(tokio::time::sleep(t));
                        let _ = d.as_mut().poll(cx);
                        ka.deadline = Some(d);
                    }
                    sent = true;
                }
            }
        }
        if sent {
            let _ = self.poll_write_out(cx, who);
        }
        None
    }

    /// Notes a pong: when it answers the keepalive ping, measure the latency.
    fn on_pong(&mut self, payload: &[u8]) {
        if let Some(ka) = &mut self.keepalive {
            if let Some((n, at)) = ka.awaiting {
                if payload == n.to_be_bytes() {
                    self.latency = Some(at.elapsed());
                    ka.awaiting = None;
                    ka.deadline = None;
                }
            }
        }
    }

    fn start_close_timer(&mut self) {
        if self.close_timer.is_none() {
            if let Some(t) = self.config.close_timeout {
                self.close_timer = Some(Box::pin(tokio::time::sleep(t)));
            }
        }
    }

    /// Drives the end of the connection: flush the last frames, close TCP
    /// when this side should, otherwise wait for the peer to close it, all
    /// within the close timeout.
    fn poll_finish(&mut self, cx: &mut Context<'_>, who: Who) -> Poll<()> {
        if self.finish == Finish::No {
            self.finish = Finish::Flush;
        }
        self.start_close_timer();
        if let Some(t) = &mut self.close_timer {
            if t.as_mut().poll(cx).is_ready() {
                tracing::debug!("close timeout expired; dropping the connection");
                self.finish = Finish::Done;
                return Poll::Ready(());
            }
        }
        loop {
            match self.finish {
                Finish::No | Finish::Flush => match self.poll_write_out(cx, who) {
                    Poll::Ready(Ok(())) => {
                        self.finish = if self.conn.should_close_transport() {
                            Finish::Shutdown
                        } else {
                            Finish::AwaitEof
                        };
                    }
                    Poll::Ready(Err(_)) => self.finish = Finish::Done,
                    Poll::Pending => return Poll::Pending,
                },
                Finish::Shutdown => {
                    let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                    self.finish = Finish::Done;
                }
                Finish::AwaitEof => {
                    // Discard anything after the close frame until EOF.
                    let buf = self.conn.read_buf();
                    buf.clear();
                    match ready!(tokio_util::io::poll_read_buf(
                        Pin::new(&mut self.io),
                        cx,
                        buf
                    )) {
                        Ok(0) | Err(_) => self.finish = Finish::Done,
                        Ok(_) => {}
                    }
                }
                Finish::Done => {
                    self.close_timer = None;
                    return Poll::Ready(());
                }
            }
        }
    }

    fn end_error(&mut self, e: Error) -> Error {
        self.ended = Some((e.kind(), e.to_string()));
        self.ended_at.get_or_insert_with(Instant::now);
        e
    }

    fn poll_next_msg(&mut self, cx: &mut Context<'_>, who: Who) -> Poll<Option<Result<Message>>> {
        loop {
            if self.finish == Finish::Done {
                return Poll::Ready(None);
            }
            if self.finish != Finish::No {
                ready!(self.poll_finish(cx, who));
                return Poll::Ready(None);
            }
            // A close was sent and the peer is slow to answer: give up at
            // the close timeout (RFC 6455 §7.1.1 lets us drop TCP then).
            if let Some(t) = &mut self.close_timer {
                if t.as_mut().poll(cx).is_ready() {
                    tracing::debug!("close timeout expired before the peer's close frame");
                    self.finish = Finish::Done;
                    self.close_timer = None;
                    let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                    return Poll::Ready(None);
                }
            }
            match self.conn.next_event() {
                Ok(Some(msg)) => {
                    match &msg {
                        Message::Close(_) => {
                            self.start_close_timer();
                            self.ended_at.get_or_insert_with(Instant::now);
                        }
                        Message::Pong(p) => self.on_pong(p),
                        _ => {}
                    }
                    return Poll::Ready(Some(Ok(msg)));
                }
                Ok(None) if self.conn.read_closed() => {
                    // The peer's close frame was delivered; finish closing.
                    ready!(self.poll_finish(cx, who));
                    return Poll::Ready(None);
                }
                Ok(None) => {}
                Err(e) => {
                    let err = self.end_error(Error::from(e));
                    // Send the close frame and drop the transport before
                    // reporting, so the peer sees the right code.
                    self.finish = Finish::Flush;
                    // If the transport is not ready, the rest of the
                    // closing happens on the next poll; report now.
                    let _ = self.poll_finish(cx, who);
                    return Poll::Ready(Some(Err(err)));
                }
            }
            // More input is needed. Don't read while the write buffer is
            // over its limit and cannot drain: a peer that sends pings (or
            // anything else we answer) without reading would otherwise grow
            // our queue of pongs without bound.
            if self.conn.buffered_amount() >= self.config.write_buffer_limit {
                match self.poll_write_out(cx, who) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(self.io_error(e)))),
                    Poll::Pending => return self.poll_idle(cx, who),
                }
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, self.conn.read_buf()) {
                Poll::Ready(Ok(0)) => self.conn.receive_eof(),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.finish = Finish::Done;
                    return Poll::Ready(Some(Err(self.io_error(e))));
                }
                Poll::Pending => {
                    // About to wait for input: write what was coalesced.
                    if !self.conn.transmit().is_empty() || self.unflushed {
                        if let Poll::Ready(Err(e)) = self.poll_write_out(cx, who) {
                            self.finish = Finish::Done;
                            return Poll::Ready(Some(Err(self.io_error(e))));
                        }
                    }
                    return self.poll_idle(cx, who);
                }
            }
        }
    }

    /// Before waiting: the timers and signals that can end the wait. They
    /// are polled here, not once per message, so a busy connection pays
    /// nothing for them (the shutdown signal takes a lock shared by every
    /// connection of a server). A wake-up from any of them re-runs
    /// `poll_next_msg`, which comes back here.
    fn poll_idle(&mut self, cx: &mut Context<'_>, who: Who) -> Poll<Option<Result<Message>>> {
        self.poll_shutdown_signal(cx);
        if let Some(e) = self.poll_keepalive(cx, who) {
            self.ended_at.get_or_insert_with(Instant::now);
            return Poll::Ready(Some(Err(e)));
        }
        // The shutdown signal or a keepalive ping may have queued a frame.
        if !self.conn.transmit().is_empty() {
            if let Poll::Ready(Err(e)) = self.poll_write_out(cx, who) {
                self.finish = Finish::Done;
                return Poll::Ready(Some(Err(self.io_error(e))));
            }
        }
        Poll::Pending
    }

    fn io_error(&mut self, e: std::io::Error) -> Error {
        // A transport error on an open connection means it ended without a
        // close frame: report it as closed abnormally (1006), with the cause.
        let err = Error::new(ErrorKind::Closed)
            .with_message(format!("connection lost without a close frame (1006): {e}"))
            .with_close(
                Some(CloseFrame::new(CloseCode::ABNORMAL, "")),
                Initiator::Remote,
            )
            .with_source(e);
        self.end_error(err)
    }

    fn send_error(&self) -> Error {
        match &self.ended {
            Some((kind, msg)) => Error::msg(*kind, msg.clone()),
            None => match self.conn.close_received() {
                Some(frame) => Error::msg(ErrorKind::Closed, "connection is closed")
                    .with_close(frame.cloned(), Initiator::Remote),
                None => Error::msg(ErrorKind::Closed, "connection is closed"),
            },
        }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>, who: Who) -> Poll<Result<()>> {
        if self
            .shutting_down
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
        {
            self.poll_shutdown_signal(cx);
        }
        if let Some(e) = self.poll_keepalive(cx, who) {
            return Poll::Ready(Err(e));
        }
        if self.finish != Finish::No
            || self.conn.close_sent().is_some()
            || self.conn.error().is_some()
        {
            return Poll::Ready(Err(self.send_error()));
        }
        if self.conn.buffered_amount() >= self.config.write_buffer_limit {
            if let Err(e) = ready!(self.poll_write_out(cx, who)) {
                return Poll::Ready(Err(self.io_error(e)));
            }
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(&mut self, msg: Message) -> Result<()> {
        if msg.is_close() && self.conn.close_sent().is_none() {
            self.start_close_timer();
            self.user_closed = true;
        }
        self.conn.send(msg).map_err(|e| match e {
            tether_proto::Error::Closed => self.send_error(),
            e => Error::from(e),
        })
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>, who: Who) -> Poll<Result<()>> {
        match ready!(self.poll_write_out(cx, who)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(self.io_error(e))),
        }
    }

    /// Whether `send` may leave its message in the buffer: more input is
    /// already waiting, so the caller's next `recv` will come straight back
    /// and flush everything together before it waits.
    fn may_defer_flush(&self) -> bool {
        !self.split
            && self.conn.has_buffered_input()
            && self.conn.buffered_amount() < self.config.write_buffer_limit
    }
}

/// A WebSocket connection: a [`Stream`](futures_core::Stream) of received
/// messages and a [`Sink`] of messages to send.
///
/// Pings are answered automatically; received pings and pongs are still
/// returned, so they can be observed. After the peer's close frame (returned
/// as [`Message::Close`]), the closing handshake completes by itself and the
/// stream ends.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use tether::Message;
/// let mut ws = tether::connect("ws://127.0.0.1:9001/").await?;
/// ws.send(Message::text("hello")).await?;
/// while let Some(msg) = ws.recv().await {
///     match msg? {
///         Message::Text(t) => println!("got {t}"),
///         Message::Close(_) => break,
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
pub struct WebSocket<S = crate::Stream> {
    core: Core<S>,
    subprotocol: Option<String>,
    request: Option<Box<Request>>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.core.conn)
            .field("subprotocol", &self.subprotocol)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport on which the opening handshake already completed.
    /// `conn` is the core in its open state; `leftover` holds bytes that
    /// arrived after the handshake.
    pub(crate) fn from_parts(
        io: S,
        mut conn: Connection,
        leftover: Bytes,
        config: Arc<Config>,
    ) -> Self {
        conn.receive(&leftover);
        WebSocket {
            core: Core {
                io,
                conn,
                config,
                finish: Finish::No,
                close_timer: None,
                shutdown: None,
                shutting_down: None,
                split: false,
                write_waiters: [None, None],
                ended: None,
                keepalive: None,
                latency: None,
                written: 0,
                unflushed: false,
                opened_at: Instant::now(),
                ended_at: None,
                user_closed: false,
                report: None,
            },
            subprotocol: None,
            request: None,
        }
    }

    /// Wraps a transport on which a WebSocket handshake was already done by
    /// other means (for example by an HTTP server framework), in `role`.
    pub fn from_raw(io: S, role: tether_proto::Role, config: Config) -> Self {
        let proto = config.proto();
        let conn = match role {
            tether_proto::Role::Client => Connection::client(proto, crate::client::mask_source()),
            tether_proto::Role::Server => Connection::server(proto),
        };
        Self::from_parts(io, conn, Bytes::new(), Arc::new(config))
    }

    pub(crate) fn set_subprotocol(&mut self, p: Option<String>) {
        self.subprotocol = p;
    }

    pub(crate) fn set_request(&mut self, r: Request) {
        self.request = Some(Box::new(r));
    }

    pub(crate) fn set_shutdown(&mut self, token: CancellationToken, flag: Arc<AtomicBool>) {
        self.core.shutdown = Some(Box::pin(token.cancelled_owned()));
        self.core.shutting_down = Some(flag);
    }

    /// The permessage-deflate parameters agreed in the handshake, if any.
    pub fn compression(&self) -> Option<tether_proto::deflate::DeflateParams> {
        self.core.conn.deflate()
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// On a server, the client's upgrade request (path, headers).
    pub fn request(&self) -> Option<&Request> {
        self.request.as_deref()
    }

    /// The state of the connection.
    pub fn state(&self) -> State {
        if self.core.finish == Finish::Done {
            State::Closed
        } else {
            self.core.conn.state()
        }
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.core.io
    }

    /// The round-trip time measured by the last keepalive ping, if any.
    pub fn latency(&self) -> Option<Duration> {
        self.core.latency
    }

    /// How long the connection has been open.
    pub fn open_for(&self) -> Duration {
        self.core.opened_at.elapsed()
    }

    /// Bytes written to the transport so far, and bytes queued after them.
    pub(crate) fn write_progress(&self) -> (u64, u64) {
        (
            self.core.written,
            self.core.written + self.core.conn.buffered_amount() as u64,
        )
    }

    pub(crate) fn set_report(&mut self, r: Arc<Mutex<EndInfo>>) {
        self.core.report = Some(r);
    }

    /// Outgoing bytes queued and not yet written to the transport.
    pub fn buffered_amount(&self) -> usize {
        self.core.conn.buffered_amount()
    }

    /// The close frame received from the peer, once it arrived.
    pub fn close_received(&self) -> Option<Option<&CloseFrame>> {
        self.core.conn.close_received()
    }

    /// Receives the next message; `None` once the connection has closed
    /// (after the peer's [`Message::Close`], or after an error).
    ///
    /// # Errors
    /// [`ErrorKind::Protocol`] when the peer broke the protocol (the close
    /// frame with the matching code was sent), [`ErrorKind::Closed`] when the
    /// connection dropped without a close frame.
    ///
    /// # Cancel safety
    /// Cancel-safe: if it is cancelled (in `select!`), no message is lost;
    /// the bytes read so far stay buffered for the next call.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.core.poll_next_msg(cx, Who::Reader)).await
    }

    /// Sends a message. Waits while the write buffer is over
    /// `write_buffer_limit`.
    ///
    /// Writes are coalesced: when more received input is already buffered,
    /// the message may stay queued until the next [`WebSocket::recv`] waits
    /// for input (which flushes it), so an echo loop writes many frames per
    /// system call. Otherwise the message is written before `send` returns.
    /// Call [`WebSocket::flush`] to force it.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] once the connection is closing or closed;
    /// [`ErrorKind::Config`] for an invalid control frame or close code.
    ///
    /// # Cancel safety
    /// If cancelled before the message was queued, nothing is sent. Once
    /// queued, it is sent by later calls even if this one is cancelled.
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        poll_fn(|cx| self.core.poll_ready(cx, Who::Writer)).await?;
        self.core.start_send(msg)?;
        if self.core.may_defer_flush() {
            return Ok(());
        }
        poll_fn(|cx| self.core.poll_flush(cx, Who::Writer)).await
    }

    /// Sends a text or binary message split into frames of at most
    /// `fragment_size` bytes.
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    ///
    /// # Cancel safety
    /// As [`WebSocket::send`].
    pub async fn send_fragmented(&mut self, msg: Message, fragment_size: usize) -> Result<()> {
        poll_fn(|cx| self.core.poll_ready(cx, Who::Writer)).await?;
        self.core
            .conn
            .send_fragmented(msg, fragment_size)
            .map_err(|e| match e {
                tether_proto::Error::Closed => self.core.send_error(),
                e => Error::from(e),
            })?;
        poll_fn(|cx| self.core.poll_flush(cx, Who::Writer)).await
    }

    /// Sends a ping (at most 125 bytes of payload). The pong comes back as
    /// [`Message::Pong`] from [`WebSocket::recv`].
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    ///
    /// # Cancel safety
    /// As [`WebSocket::send`].
    pub async fn ping(&mut self, payload: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Ping(payload.into())).await
    }

    /// Writes out everything queued.
    ///
    /// # Errors
    /// An I/O error reported as [`ErrorKind::Closed`] (1006).
    ///
    /// # Cancel safety
    /// Cancel-safe: what was not written stays queued.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.core.poll_flush(cx, Who::Writer)).await
    }

    /// Closes the connection with `code` and `reason`: sends the close frame,
    /// waits for the peer's (discarding messages that arrive meanwhile) and
    /// for the transport to close, all within the close timeout.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a code that may not be sent (1005, 1006,
    /// 1015, unassigned) or a reason over 123 bytes; [`ErrorKind::Closed`]
    /// when the connection was already closed.
    ///
    /// # Cancel safety
    /// Not cancel-safe in the sense that the close frame, once queued, is not
    /// withdrawn; the handshake continues on the next `recv`.
    pub async fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        if self.core.conn.close_sent().is_none() && self.core.finish == Finish::No {
            let code = code.into();
            self.core
                .start_send(Message::Close(Some(CloseFrame::new(code, reason))))?;
        }
        while let Some(r) = self.recv().await {
            if let Err(e) = r {
                if e.kind() == ErrorKind::Closed {
                    break;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Splits the socket into a reader and a writer that two tasks can use
    /// at once. Pings keep being answered by whichever half runs.
    pub fn split(mut self) -> (WsReader<S>, WsWriter<S>) {
        self.core.split = true;
        let shared = Arc::new(Mutex::new(self.core));
        (
            WsReader {
                shared: shared.clone(),
            },
            WsWriter { shared },
        )
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FuturesStream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().core.poll_next_msg(cx, Who::Reader)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().core.poll_ready(cx, Who::Writer)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().core.start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().core.poll_flush(cx, Who::Writer)
    }

    /// Sends a normal close frame (1000) if none was sent, and flushes. It
    /// does not wait for the peer's close: keep reading the stream for that.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let core = &mut self.get_mut().core;
        if core.conn.close_sent().is_none() && core.finish == Finish::No {
            let _ = core.conn.close(CloseCode::NORMAL, "");
        }
        core.poll_flush(cx, Who::Writer)
    }
}

type Shared<S> = Arc<Mutex<Core<S>>>;

fn lock<S>(shared: &Shared<S>) -> std::sync::MutexGuard<'_, Core<S>> {
    // The lock is never held across an await, and nothing in the core
    // panics while holding it; recover from poisoning anyway.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The receiving half of a split [`WebSocket`].
pub struct WsReader<S = crate::Stream> {
    shared: Shared<S>,
}

/// The sending half of a split [`WebSocket`].
pub struct WsWriter<S = crate::Stream> {
    shared: Shared<S>,
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

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// Receives the next message, as [`WebSocket::recv`].
    ///
    /// # Errors
    /// As [`WebSocket::recv`].
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| lock(&self.shared).poll_next_msg(cx, Who::Reader)).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    /// Sends a message and writes it out.
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    ///
    /// # Cancel safety
    /// As [`WebSocket::send`].
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        poll_fn(|cx| lock(&self.shared).poll_ready(cx, Who::Writer)).await?;
        lock(&self.shared).start_send(msg)?;
        poll_fn(|cx| lock(&self.shared).poll_flush(cx, Who::Writer)).await
    }

    /// Sends a ping.
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    ///
    /// # Cancel safety
    /// As [`WebSocket::send`].
    pub async fn ping(&mut self, payload: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Ping(payload.into())).await
    }

    /// Sends a close frame and flushes it. The reader sees the peer's answer
    /// and then the end of the stream.
    ///
    /// # Errors
    /// As [`WebSocket::close`].
    ///
    /// # Cancel safety
    /// The close frame, once queued, is sent.
    pub async fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        let code = code.into();
        self.send(Message::Close(Some(CloseFrame::new(code, reason))))
            .await
    }
}

impl<S> Drop for WsReader<S> {
    fn drop(&mut self) {
        // The writer may be waiting on a wake-up the reader had taken.
        if let Ok(mut core) = self.shared.lock() {
            if let Some(w) = core.write_waiters[Who::Writer as usize].take() {
                w.wake();
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FuturesStream for WsReader<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        lock(&self.shared).poll_next_msg(cx, Who::Reader)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock(&self.shared).poll_ready(cx, Who::Writer)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        lock(&self.shared).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock(&self.shared).poll_flush(cx, Who::Writer)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut core = lock(&self.shared);
        if core.conn.close_sent().is_none() && core.finish == Finish::No {
            let _ = core.conn.close(CloseCode::NORMAL, "");
        }
        core.poll_flush(cx, Who::Writer)
    }
}
