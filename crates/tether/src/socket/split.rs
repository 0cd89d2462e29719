//! The two halves of a split [`WebSocket`](super::WebSocket): a reader and a
//! writer that two tasks can use at once, over one [`Driver`] behind a
//! mutex that is never held across an `.await`.
//!
//! Both halves drive the same transport and timers, but a transport and a
//! timer keep one waker each: polled by one half, they would forget the
//! other, and a keepalive timeout or a freed write buffer could wake the
//! wrong task (or a task that has moved on). So every poll made on behalf of
//! a half uses one shared waker that wakes whichever halves are waiting.

use super::driver::Driver;
use crate::error::{Error, Result};
use bytes::Bytes;
use futures_core::Stream as FuturesStream;
use futures_sink::Sink;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use tether_proto::{CloseCode, CloseFrame, Message};
use tokio::io::{AsyncRead, AsyncWrite};

/// Which half is polling.
#[derive(Clone, Copy)]
enum Half {
    Reader = 0,
    Writer = 1,
}

/// The wakers of the halves that are waiting; waking it wakes them all.
#[derive(Default)]
struct Halves([Mutex<Option<Waker>>; 2]);

impl Halves {
    fn register(&self, half: Half, waker: &Waker) {
        let mut slot = self.0[half as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

impl Wake for Halves {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in &self.0 {
            let w = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(w) = w {
                w.wake();
            }
        }
    }
}

struct Shared<S> {
    driver: Mutex<Driver<S>>,
    halves: Arc<Halves>,
    /// A waker over `halves`, made once.
    waker: Waker,
}

/// A handle on the shared driver.
struct Handle<S>(Arc<Shared<S>>);

impl<S> Handle<S> {
    fn lock(&self) -> MutexGuard<'_, Driver<S>> {
        // Never held across an await, and nothing in the driver panics
        // while holding it; recover from poisoning anyway.
        self.0.driver.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the driver for `half`, with the shared waker.
    fn poll<R>(
        &self,
        cx: &mut Context<'_>,
        half: Half,
        f: impl FnOnce(&mut Driver<S>, &mut Context<'_>) -> R,
    ) -> R {
        self.0.halves.register(half, cx.waker());
        let mut shared_cx = Context::from_waker(&self.0.waker);
        f(&mut self.lock(), &mut shared_cx)
    }
}

/// Splits `driver` into the two halves.
pub(super) fn split<S>(mut driver: Driver<S>) -> (WsReader<S>, WsWriter<S>) {
    driver.split = true;
    let halves = Arc::new(Halves::default());
    let shared = Arc::new(Shared {
        driver: Mutex::new(driver),
        waker: Waker::from(halves.clone()),
        halves,
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
pub struct WsReader<S = crate::MaybeTlsStream> {
    handle: Handle<S>,
}

/// The sending half of a split [`WebSocket`](super::WebSocket).
pub struct WsWriter<S = crate::MaybeTlsStream> {
    handle: Handle<S>,
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
    /// Receives the next message, as [`WebSocket::recv`](super::WebSocket::recv).
    ///
    /// # Errors
    /// As [`WebSocket::recv`](super::WebSocket::recv).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.handle.poll(cx, Half::Reader, Driver::poll_next_msg)).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    /// Sends a message and writes it out. Like every wait of the socket,
    /// a wait for write space here still runs the keepalive and the close
    /// timer: a peer that stopped reading is declared dead at the keepalive
    /// timeout.
    ///
    /// # Errors
    /// As [`WebSocket::send`](super::WebSocket::send).
    ///
    /// # Cancel safety
    /// As [`WebSocket::send`](super::WebSocket::send).
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        let close = msg.is_close();
        poll_fn(|cx| {
            self.handle
                .poll(cx, Half::Writer, |d, cx| d.poll_ready_for(cx, close))
        })
        .await?;
        self.handle.lock().queue(msg, None)?;
        poll_fn(|cx| self.handle.poll(cx, Half::Writer, Driver::poll_flush)).await
    }

    /// Sends a ping.
    ///
    /// # Errors
    /// As [`WebSocket::send`](super::WebSocket::send).
    ///
    /// # Cancel safety
    /// As [`WebSocket::send`](super::WebSocket::send).
    pub async fn ping(&mut self, payload: impl Into<Bytes>) -> Result<()> {
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
    pub async fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        let code = code.into();
        self.send(Message::Close(Some(CloseFrame::new(code, reason))))
            .await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FuturesStream for WsReader<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.handle.poll(cx, Half::Reader, Driver::poll_next_msg)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.handle.poll(cx, Half::Writer, Driver::poll_ready)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.handle.lock().queue(item, None)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.handle.poll(cx, Half::Writer, Driver::poll_flush)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.handle.poll(cx, Half::Writer, Driver::poll_close)
    }
}
