//! The driver: moves bytes between a transport and the sans-I/O
//! [`Connection`], and owns every timer of an open connection.
//!
//! Every path that is about to wait (for input, for write space, for a
//! flush, for the end of the closing handshake) goes through one function,
//! [`Driver::poll_wait`]. It writes out what is queued, starts a going-away
//! close when the server shuts down, and polls the keepalive and the close
//! timer, so a dead peer is detected whatever the caller is blocked on:
//! `recv`, `send`, `flush`, `close`, or either half of a split socket.
//!
//! Busy connections pay nothing for the timers: they are polled only when
//! the socket is about to wait, never once per message.

use super::config::WebSocketConfig;
use super::keepalive::{Keepalive, Tick};
use crate::error::{Error, ErrorKind, Initiator, Result};
use bytes::Buf;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tether_proto::{CloseCode, CloseFrame, Connection, Message, State};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

/// How far the end of the connection has progressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finish {
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

/// Why a wait ended the connection.
enum Stop {
    /// The connection failed (keepalive timeout, transport error).
    Failed(Error),
    /// The closing handshake did not finish within the close timeout.
    CloseTimeout,
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

/// One connection: the transport, the protocol core, the timers.
pub(crate) struct Driver<S> {
    pub(super) io: S,
    pub(super) conn: Connection,
    config: Arc<WebSocketConfig>,
    pub(super) finish: Finish,
    close_timer: Option<Pin<Box<Sleep>>>,
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Set by the server when it shuts down: a lock-free check for the send
    /// path (polling `shutdown` takes a lock shared by every connection).
    shutting_down: Option<Arc<AtomicBool>>,
    /// Split into two halves: `send` always flushes (the reader half may be
    /// parked in another task and would not flush for it).
    pub(super) split: bool,
    /// The error that ended the connection, replayed to later calls (a
    /// copy: the same kind, message, close frame and source).
    ended: Option<Error>,
    /// Boxed: most of a connection's life it is not looked at.
    keepalive: Option<Box<Keepalive>>,
    /// Bytes written to the transport since the connection opened.
    pub(super) written: u64,
    /// The transport took every byte but its flush is pending: a buffering
    /// transport (TLS) still holds some of them.
    unflushed: bool,
    pub(super) opened_at: Instant,
    ended_at: Option<Instant>,
    /// The user asked to close (a close frame queued through the API).
    user_closed: bool,
    pub(super) report: Option<Arc<Mutex<EndInfo>>>,
}

impl<S> Drop for Driver<S> {
    fn drop(&mut self) {
        if let Some(r) = &self.report {
            let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
            r.ended_at = Some(self.ended_at.unwrap_or_else(Instant::now));
            r.close_received = self.conn.close_received().map(|f| f.cloned());
            r.close_sent = self.conn.close_sent().map(|f| f.cloned());
            r.user_closed = self.user_closed;
            r.error = self
                .ended
                .as_ref()
                .map(|e| (e.kind(), crate::error::chain(e)));
            r.dropped = true;
        }
    }
}

impl<S> Driver<S> {
    pub(super) fn new(io: S, conn: Connection, config: Arc<WebSocketConfig>) -> Self {
        Driver {
            io,
            conn,
            config,
            finish: Finish::No,
            close_timer: None,
            shutdown: None,
            shutting_down: None,
            split: false,
            ended: None,
            keepalive: None,
            written: 0,
            unflushed: false,
            opened_at: Instant::now(),
            ended_at: None,
            user_closed: false,
            report: None,
        }
    }

    pub(super) fn set_shutdown(
        &mut self,
        signal: WaitForCancellationFutureOwned,
        flag: Arc<AtomicBool>,
    ) {
        self.shutdown = Some(Box::pin(signal));
        self.shutting_down = Some(flag);
    }

    /// The round trip of the last answered keepalive ping.
    pub(super) fn latency(&self) -> Option<Duration> {
        self.keepalive.as_ref().and_then(|k| k.latency())
    }

    /// The state of the connection, as the API reports it.
    pub(super) fn state(&self) -> State {
        if self.finish == Finish::Done {
            State::Closed
        } else {
            self.conn.state()
        }
    }

    /// Closing or closed, as far as the API is concerned.
    pub(super) fn is_closing(&self) -> bool {
        self.finish != Finish::No || self.conn.close_sent().is_some()
    }

    /// Records `e` as the error that ended the connection, and returns it.
    fn end_with(&mut self, e: Error) -> Error {
        self.ended = Some(e.duplicate());
        self.ended_at.get_or_insert_with(Instant::now);
        e
    }

    /// The error for an operation on a connection that has ended.
    fn closed_error(&self) -> Error {
        match &self.ended {
            Some(e) => e.duplicate(),
            None => match self.conn.close_received() {
                Some(frame) => Error::msg(ErrorKind::Closed, "connection is closed")
                    .with_close(frame.cloned(), Initiator::Remote),
                None => Error::msg(ErrorKind::Closed, "connection is closed"),
            },
        }
    }

    fn io_error(&mut self, e: std::io::Error) -> Error {
        // A transport error on an open connection means it ended without a
        // close frame: report it as closed abnormally (1006), with the cause.
        self.finish = Finish::Done;
        let err = Error::new(ErrorKind::Closed)
            .with_message("connection lost without a close frame (1006)")
            .with_close(
                Some(CloseFrame::new(CloseCode::ABNORMAL, "")),
                Initiator::Remote,
            )
            .with_source(e);
        self.end_with(err)
    }

    fn start_close_timer(&mut self) {
        if self.close_timer.is_none() {
            if let Some(t) = self.config.close_timeout {
                self.close_timer = Some(Box::pin(tokio::time::sleep(t)));
            }
        }
    }

    /// Queues a message from the user (every `send` path comes here).
    pub(super) fn queue(&mut self, msg: Message, fragment_size: Option<usize>) -> Result<()> {
        if msg.is_close() && self.conn.close_sent().is_none() {
            self.user_closed = true;
            self.start_close_timer();
        }
        let r = match fragment_size {
            Some(n) => self.conn.send_fragmented(msg, n),
            None => self.conn.send(msg),
        };
        r.map_err(|e| match e {
            tether_proto::Error::Closed => self.closed_error(),
            e => Error::from(e),
        })
    }

    /// Whether `send` may leave its message in the buffer: more input is
    /// already waiting, so the caller's next `recv` will come straight back
    /// and flush everything together before it waits.
    pub(super) fn may_defer_flush(&self) -> bool {
        !self.split
            && self.conn.has_buffered_input()
            && self.conn.buffered_amount() < self.config.write_buffer_limit
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    /// One attempt to write out what is queued, without waiting: for a
    /// split socket's senders and fan-out when no reader is waiting to do
    /// it, and for a reader that stops waiting. If the transport is not
    /// ready, `cx` is woken when it is, and the bytes stay queued for the
    /// next operation on the socket. An I/O error is left for the next
    /// operation to meet again and report, to whoever called it.
    pub(super) fn try_write_out(&mut self, cx: &mut Context<'_>) {
        if self.finish != Finish::No || (self.conn.transmit().is_empty() && !self.unflushed) {
            return;
        }
        let _ = self.poll_write_out(cx);
    }

    /// Writes out everything queued in the core with vectored writes, then
    /// flushes the transport. Called by the wait point, by `flush`, by the
    /// closing handshake, and by `recv` while the write buffer is over its
    /// limit.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            let out = self.conn.transmit();
            if out.is_empty() {
                break;
            }
            let mut slices = [IoSlice::new(&[]); 64];
            let n = out.chunks_vectored(&mut slices);
            match ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n])) {
                Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Ok(k) => {
                    self.conn.transmit().advance(k);
                    self.written += k as u64;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        // A buffering transport (TLS) may hold bytes that it took: flush,
        // and remember a pending flush so that the wait point resumes it.
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => {
                self.unflushed = true;
                Poll::Pending
            }
            Poll::Ready(r) => {
                self.unflushed = false;
                Poll::Ready(r)
            }
        }
    }

    /// The one wait point. Every operation whose I/O returned `Pending`
    /// comes here before it returns `Pending` itself. In order:
    ///
    /// 1. the server's shutdown signal starts a going-away close (1001);
    /// 2. on an open connection, the keepalive queues its ping, or declares
    ///    the peer dead (1011, [`ErrorKind::KeepaliveTimeout`]);
    /// 3. once a close frame went either way, the close timer runs, and
    ///    ends the connection when it expires;
    /// 4. what is queued is written out.
    ///
    /// `Pending`: wait (every timer and the transport hold the waker).
    /// `Ready(Ok)`: bytes were written, the caller should look again.
    /// `Ready(Err)`: the connection ended.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Stop>> {
        self.poll_shutdown_signal(cx);
        if self.finish == Finish::No && self.conn.state() == State::Open {
            if let Some(interval) = self.config.ping_interval {
                let timeout = self.config.ping_timeout;
                let conn = &mut self.conn;
                let ka = self.keepalive.get_or_insert_with(|| {
                    // Each ping gives back a write buffer left grown by a
                    // large message, so between pings it can be reused
                    // (fresh pages for each large message cost page
                    // faults) and an idle connection still sheds it
                    // within one interval.
                    conn.set_keep_write_capacity(true);
                    Box::new(Keepalive::new(interval, timeout))
                });
                match ka.poll(cx) {
                    Tick::Idle => {}
                    Tick::Ping(p) => {
                        self.conn.release_spare_capacity();
                        // Cannot fail on an open connection (payload of 4 bytes).
                        drop(self.conn.send(Message::Ping(p)));
                    }
                    Tick::Dead(t) => return Poll::Ready(Err(Stop::Failed(self.peer_dead(cx, t)))),
                }
            }
        }
        // RFC 6455 §7.1.1: once closing, a peer that does not finish the
        // handshake is dropped. Whoever started the close (the user, the
        // peer, a failure, the shutdown signal), the timer starts here.
        if self.conn.state() != State::Open && self.finish != Finish::Done {
            self.start_close_timer();
        }
        if let Poll::Ready(stop) = self.poll_close_timer(cx) {
            return Poll::Ready(Err(stop));
        }
        if !self.conn.transmit().is_empty() || self.unflushed {
            match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Stop::Failed(self.io_error(e)))),
                Poll::Pending => {}
            }
        }
        Poll::Pending
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

    /// Ends the connection when the close timer has expired.
    fn poll_close_timer(&mut self, cx: &mut Context<'_>) -> Poll<Stop> {
        let Some(t) = &mut self.close_timer else {
            return Poll::Pending;
        };
        ready!(t.as_mut().poll(cx));
        tracing::debug!("close timeout expired; dropping the connection");
        self.close_timer = None;
        self.finish = Finish::Done;
        self.ended_at.get_or_insert_with(Instant::now);
        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        Poll::Ready(Stop::CloseTimeout)
    }

    /// The keepalive declared the peer dead: fail with 1011, make one
    /// attempt to write the close frame, and give up at once (no close
    /// timeout is waited for a peer known to be dead).
    fn peer_dead(&mut self, cx: &mut Context<'_>, timeout: Duration) -> Error {
        tracing::warn!(
            ?timeout,
            "no pong to the keepalive ping: the peer is unresponsive"
        );
        self.conn
            .fail(CloseCode::INTERNAL_ERROR, "keepalive ping timeout");
        let _ = self.poll_write_out(cx);
        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        self.finish = Finish::Done;
        let e = Error::msg(
            ErrorKind::KeepaliveTimeout,
            format!("keepalive ping timeout: no pong within {timeout:?}; the peer is unresponsive"),
        )
        .with_close(
            Some(CloseFrame::new(
                CloseCode::INTERNAL_ERROR,
                "keepalive ping timeout",
            )),
            Initiator::Local,
        );
        self.end_with(e)
    }

    /// The error for a send-side operation stopped by the wait point.
    fn send_stopped(&self, stop: Stop) -> Error {
        match stop {
            Stop::Failed(e) => e,
            Stop::CloseTimeout => Error::msg(
                ErrorKind::Timeout,
                "close timeout expired before the closing handshake finished",
            ),
        }
    }

    /// Drives the end of the connection: flush the last frames, close TCP
    /// when this side should, otherwise wait for the peer to close it, all
    /// within the close timeout.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.finish == Finish::No {
            self.finish = Finish::Flush;
        }
        self.start_close_timer();
        loop {
            let progress = match self.finish {
                Finish::No | Finish::Flush => self.poll_write_out(cx).map(|r| {
                    self.finish = match r {
                        Err(_) => Finish::Done,
                        Ok(()) if self.conn.should_close_transport() => Finish::Shutdown,
                        Ok(()) => Finish::AwaitEof,
                    }
                }),
                Finish::Shutdown => Pin::new(&mut self.io)
                    .poll_shutdown(cx)
                    .map(|_| self.finish = Finish::Done),
                Finish::AwaitEof => {
                    // Discard anything after the close frame until EOF.
                    let buf = self.conn.read_buf();
                    buf.clear();
                    tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf).map(|r| {
                        if matches!(r, Ok(0) | Err(_)) {
                            self.finish = Finish::Done;
                        }
                    })
                }
                Finish::Done => {
                    self.close_timer = None;
                    return Poll::Ready(());
                }
            };
            if progress.is_pending() {
                match ready!(self.poll_wait(cx)) {
                    Ok(()) => {}
                    Err(_) => self.finish = Finish::Done,
                }
            }
        }
    }

    /// The next message (`recv`, the `Stream`, the reader half).
    pub(super) fn poll_next_msg(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            match self.finish {
                Finish::Done => return Poll::Ready(None),
                Finish::No => {}
                _ => {
                    ready!(self.poll_finish(cx));
                    return Poll::Ready(None);
                }
            }
            // Closing: a peer that floods messages instead of its close
            // frame never makes us wait, so the close timer is checked here
            // too, not only at the wait point.
            if self.close_timer.is_some() && self.poll_close_timer(cx).is_ready() {
                return Poll::Ready(None);
            }
            match self.conn.next_event() {
                Ok(Some(msg)) => {
                    match &msg {
                        Message::Close(_) => {
                            self.start_close_timer();
                            self.ended_at.get_or_insert_with(Instant::now);
                        }
                        Message::Pong(p) => {
                            if let Some(ka) = &mut self.keepalive {
                                ka.on_pong(p);
                            }
                        }
                        _ => {}
                    }
                    return Poll::Ready(Some(Ok(msg)));
                }
                Ok(None) if self.conn.read_closed() => {
                    // The peer's close frame was delivered; finish closing.
                    ready!(self.poll_finish(cx));
                    return Poll::Ready(None);
                }
                Ok(None) => {}
                Err(e) => {
                    let err = self.end_with(Error::from(e));
                    // Send the close frame and drop the transport before
                    // reporting, so the peer sees the right code. If the
                    // transport is not ready, the rest of the closing
                    // happens on the next poll; report now.
                    self.finish = Finish::Flush;
                    let _ = self.poll_finish(cx);
                    return Poll::Ready(Some(Err(err)));
                }
            }
            // More input is needed. Don't read while the write buffer is
            // over its limit: a peer that sends pings (or anything else we
            // answer) without reading would otherwise grow our queue of
            // pongs without bound.
            let io = if self.conn.buffered_amount() >= self.config.write_buffer_limit {
                self.poll_write_out(cx).map(|r| r.map(|()| 1))
            } else {
                tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, self.conn.read_buf())
            };
            match io {
                Poll::Ready(Ok(0)) => self.conn.receive_eof(),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(self.io_error(e)))),
                Poll::Pending => match ready!(self.poll_wait(cx)) {
                    Ok(()) => {}
                    Err(Stop::Failed(e)) => return Poll::Ready(Some(Err(e))),
                    Err(Stop::CloseTimeout) => return Poll::Ready(None),
                },
            }
        }
    }

    /// Ready to queue a message: the connection is open and the write
    /// buffer is under its limit (`Sink::poll_ready`).
    pub(super) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_ready_for(cx, false)
    }

    /// As [`Driver::poll_ready`], for `send(msg)`: a close frame does not
    /// wait for room (it is small, and the only one): queued at once, it
    /// starts the close timer, which bounds the wait for a peer that does
    /// not read.
    pub(super) fn poll_ready_for(&mut self, cx: &mut Context<'_>, close: bool) -> Poll<Result<()>> {
        if self
            .shutting_down
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
        {
            self.poll_shutdown_signal(cx);
        }
        loop {
            if self.is_closing() || self.conn.error().is_some() {
                return Poll::Ready(Err(self.closed_error()));
            }
            if close || self.conn.buffered_amount() < self.config.write_buffer_limit {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_flush(cx))?;
        }
    }

    /// Writes out everything queued (`flush`, `send`, `Sink::poll_flush`).
    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.finish == Finish::Done {
            // Nothing will ever be written again.
            return Poll::Ready(match self.conn.transmit().is_empty() {
                true => Ok(()),
                false => Err(self.closed_error()),
            });
        }
        loop {
            match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.io_error(e))),
                Poll::Pending => {
                    if let Err(stop) = ready!(self.poll_wait(cx)) {
                        return Poll::Ready(Err(self.send_stopped(stop)));
                    }
                }
            }
        }
    }

    /// Queues a normal close (1000) unless a close was sent, then flushes
    /// (`Sink::poll_close`).
    pub(super) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if !self.is_closing() {
            let _ = self.queue(
                Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))),
                None,
            );
        }
        self.poll_flush(cx)
    }
}
