//! [`WebSocket`]: a message stream and sink over any async byte stream,
//! driving the sans-I/O [`Connection`] of `tether-proto`.
//!
//! - `driver.rs`: the only place that moves bytes between a transport and
//!   the core, and the one wait point where the timers run;
//! - `keepalive.rs`: the keepalive rule;
//! - `split.rs`: the reader and the (cloneable) writer halves, and the
//!   socket side of fan-out;
//! - `config.rs`: the settings.
//!
//! Writes are coalesced: a message sent while more input is already buffered
//! is written together with the following ones, at the latest when `recv`
//! next waits for input or the buffer passes `write_buffer_limit`. On a
//! split socket, messages sent while the reader waits in `recv` are written
//! by the reader, together.

mod config;
mod driver;
mod keepalive;
mod split;

pub(crate) use config::socket_setters;
pub use config::WebSocketConfig;
pub(crate) use driver::EndInfo;
pub(crate) use split::{Offered, Target};
pub use split::{WsReader, WsWriter};

use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use driver::Driver;
use futures_core::Stream as FuturesStream;
use futures_sink::Sink;
use rand::{RngCore, SeedableRng};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tether_proto::connection::MaskSource;
use tether_proto::handshake::Request;
use tether_proto::{CloseCode, CloseFrame, Connection, Message, State};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Masking keys for a client connection from a CSPRNG (RFC 6455 §5.3,
/// §10.3: unpredictable): ChaCha12 seeded from the operating system.
pub(crate) fn mask_source() -> Box<dyn MaskSource> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    Box::new(move || {
        let mut k = [0u8; 4];
        rng.fill_bytes(&mut k);
        k
    })
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
pub struct WebSocket<S = crate::MaybeTlsStream> {
    /// Boxed: a `WebSocket` is moved into and held by the futures of the
    /// tasks that use it, often several nested ones; a pointer keeps each
    /// of them small (the driver is about 700 bytes).
    driver: Box<Driver<S>>,
    subprotocol: Option<String>,
    request: Option<Box<Request>>,
    /// Server side: when the upgrade was decided, before the 101 went out.
    /// A topic joined later replays what it delivered since then.
    upgraded_at: Option<std::time::Instant>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.driver.conn)
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
        config: Arc<WebSocketConfig>,
    ) -> Self {
        conn.receive(&leftover);
        WebSocket {
            driver: Box::new(Driver::new(io, conn, config)),
            subprotocol: None,
            request: None,
            upgraded_at: None,
        }
    }

    /// Wraps a transport on which a WebSocket handshake was already done by
    /// other means (for example by an HTTP server framework), in `role`.
    pub fn from_raw(io: S, role: tether_proto::Role, config: WebSocketConfig) -> Self {
        let proto = config.proto();
        let conn = match role {
            tether_proto::Role::Client => Connection::client(proto, mask_source()),
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

    pub(crate) fn set_upgraded_at(&mut self, at: std::time::Instant) {
        self.upgraded_at = Some(at);
    }

    pub(crate) fn set_shutdown(&mut self, token: CancellationToken, flag: Arc<AtomicBool>) {
        self.driver.set_shutdown(token.cancelled_owned(), flag);
    }

    /// The permessage-deflate parameters agreed in the handshake, if any.
    pub fn compression(&self) -> Option<crate::DeflateParams> {
        self.driver.conn.deflate()
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
        self.driver.state()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.driver.io
    }

    /// The round-trip time measured by the last keepalive ping, if any.
    pub fn latency(&self) -> Option<Duration> {
        self.driver.latency()
    }

    /// How long the connection has been open.
    pub fn open_for(&self) -> Duration {
        self.driver.opened_at.elapsed()
    }

    /// Bytes written to the transport so far, and bytes queued after them.
    pub(crate) fn write_progress(&self) -> (u64, u64) {
        (
            self.driver.written,
            self.driver.written + self.driver.conn.buffered_amount() as u64,
        )
    }

    pub(crate) fn set_report(&mut self, r: Arc<Mutex<EndInfo>>) {
        self.driver.report = Some(r);
    }

    /// Outgoing bytes queued and not yet written to the transport.
    pub fn buffered_amount(&self) -> usize {
        self.driver.conn.buffered_amount()
    }

    /// The close frame received from the peer, once it arrived.
    pub fn close_received(&self) -> Option<Option<&CloseFrame>> {
        self.driver.conn.close_received()
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
        poll_fn(|cx| self.driver.poll_next_msg(cx)).await
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
        let close = msg.is_close();
        poll_fn(|cx| self.driver.poll_ready_for(cx, close)).await?;
        self.driver.queue(msg, None)?;
        if self.driver.may_defer_flush() {
            return Ok(());
        }
        poll_fn(|cx| self.driver.poll_flush(cx)).await
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
        poll_fn(|cx| self.driver.poll_ready(cx)).await?;
        self.driver.queue(msg, Some(fragment_size))?;
        poll_fn(|cx| self.driver.poll_flush(cx)).await
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
        poll_fn(|cx| self.driver.poll_flush(cx)).await
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
        if !self.driver.is_closing() {
            let code = code.into();
            self.driver
                .queue(Message::Close(Some(CloseFrame::new(code, reason))), None)?;
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

    /// Splits the socket into a reader and a writer that tasks can use at
    /// once; clone the writer to send from several tasks. Pings keep being
    /// answered by whichever half runs. While a task waits in
    /// [`WsReader::recv`], the messages sent meanwhile are written out by
    /// that task, many in one write (see [`WsWriter::send`]).
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        split::split(*self.driver)
    }

    /// Splits the socket, keeping what the handshake agreed.
    pub(crate) fn split_with_handshake(self) -> (WsReader<S>, WsWriter<S>, Handshake) {
        let agreed = Handshake {
            subprotocol: self.subprotocol,
            request: self.request,
            compression: self.driver.conn.deflate(),
            upgraded_at: self.upgraded_at,
        };
        let (r, w) = split::split(*self.driver);
        (r, w, agreed)
    }
}

/// What the opening handshake agreed, kept by a socket's owner after a
/// split.
#[derive(Debug, Default)]
pub(crate) struct Handshake {
    pub(crate) subprotocol: Option<String>,
    pub(crate) request: Option<Box<Request>>,
    pub(crate) compression: Option<crate::DeflateParams>,
    /// Server side: when the upgrade was decided (before the 101).
    pub(crate) upgraded_at: Option<std::time::Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FuturesStream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().driver.poll_next_msg(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().driver.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().driver.queue(item, None)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().driver.poll_flush(cx)
    }

    /// Sends a normal close frame (1000) if none was sent, and flushes. It
    /// does not wait for the peer's close: keep reading the stream for that.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().driver.poll_close(cx)
    }
}
