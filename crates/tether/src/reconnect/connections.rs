//! [`Connections`]: a `Stream` of connections, reconnecting as the policy says.

use super::policy::{Plan, Planner};
use super::{Ended, ReconnectPolicy};
use crate::client::{ClientBuilder, Connected};
use crate::error::{ErrorKind, Initiator, Result};
use crate::socket::{EndInfo, WebSocket};
use futures_core::Stream;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use tokio::time::{Instant, Sleep};

type ConnectFuture = Pin<Box<dyn Future<Output = Result<Connected>> + Send>>;

enum St {
    /// Connect now (or judge how the previous connection ended first).
    Ready,
    Sleeping(Pin<Box<Sleep>>),
    Connecting(ConnectFuture),
    Done,
}

/// A stream of connections: each `next()` yields a fresh [`WebSocket`],
/// after waiting as the [`ReconnectPolicy`] decides. Retryable failures are
/// logged and retried; a fatal one is yielded once, then the stream ends.
///
/// Made by [`ClientBuilder::reconnecting`]. See [`crate::reconnect`].
///
/// # Cancel safety
/// `next()` is cancel-safe: an attempt or a wait in progress continues on
/// the next call.
pub struct Connections {
    builder: ClientBuilder,
    planner: Planner,
    state: St,
    prev: Option<Arc<Mutex<EndInfo>>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("url", &self.builder.url_redacted())
            .field("attempts", &self.planner.attempts)
            .finish_non_exhaustive()
    }
}

impl Connections {
    pub(crate) fn new(builder: ClientBuilder, policy: ReconnectPolicy) -> Self {
        let has_provider = builder.has_headers_provider();
        Connections {
            builder,
            planner: Planner::new(policy, has_provider),
            state: St::Ready,
            prev: None,
        }
    }

    /// The next connection: the same as `StreamExt::next` (from
    /// `futures-util`), without needing that trait in scope.
    ///
    /// # Cancel safety
    /// Cancel-safe: an attempt or a wait in progress continues on the next
    /// call.
    pub async fn next(&mut self) -> Option<Result<WebSocket>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The number of connection attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.planner.attempts
    }

    /// Cuts a wait short: the next attempt starts at once (for example when
    /// the application learns that the network is back).
    pub fn reconnect_now(&mut self) {
        if let St::Sleeping(s) = &mut self.state {
            s.as_mut().reset(Instant::now());
        }
    }

    fn start_connect(&mut self) {
        let attempt = self.planner.start_attempt(&self.builder.url_redacted());
        let refresh = std::mem::take(&mut self.planner.refresh_next);
        let builder = self.builder.clone();
        self.state = St::Connecting(Box::pin(async move {
            let headers = builder.provided_headers(attempt, refresh).await?;
            builder.connect_full(headers).await
        }));
    }
}

/// Describes how a connection ended, from what its socket recorded.
pub(crate) fn ended_from(info: &EndInfo) -> Ended {
    let open_for = info
        .ended_at
        .unwrap_or_else(Instant::now)
        .saturating_duration_since(info.opened_at);
    let error_kind = info.error.as_ref().map(|(k, _)| *k);
    let (close, initiator) = if info.user_closed {
        (info.close_sent.clone().flatten(), Some(Initiator::Local))
    } else if let Some(received) = &info.close_received {
        (received.clone(), Some(Initiator::Remote))
    } else if matches!(
        error_kind,
        Some(ErrorKind::Protocol | ErrorKind::KeepaliveTimeout)
    ) {
        (info.close_sent.clone().flatten(), Some(Initiator::Local))
    } else {
        (None, None)
    };
    // Dropped by the user while still open.
    let user_closed = info.user_closed
        || (info.error.is_none() && info.close_received.is_none() && info.close_sent.is_none());
    Ended {
        close,
        initiator,
        error_kind,
        error: info.error.as_ref().map(|(_, m)| m.clone()),
        open_for,
        user_closed,
    }
}

impl Stream for Connections {
    type Item = Result<WebSocket>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                St::Done => return Poll::Ready(None),
                St::Ready => {
                    if let Some(prev) = this.prev.take() {
                        let info = prev.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        match this.planner.ended(ended_from(&info)) {
                            Plan::Wait(d) => {
                                this.state = St::Sleeping(Box::pin(tokio::time::sleep(d)))
                            }
                            Plan::Stop(e) => {
                                this.state = St::Done;
                                return Poll::Ready(Some(Err(e)));
                            }
                        }
                        continue;
                    }
                    // An invalid URL, or a value that cannot be sent, is
                    // fatal before any attempt.
                    if this.planner.attempts == 0 {
                        if let Err(e) = this.builder.validate() {
                            this.planner.stopped(&e);
                            this.state = St::Done;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                    this.start_connect();
                }
                St::Sleeping(s) => {
                    ready!(s.as_mut().poll(cx));
                    this.start_connect();
                }
                St::Connecting(f) => match ready!(f.as_mut().poll(cx)) {
                    Ok(c) => {
                        this.planner.connected();
                        if let Some(r) = c.redirected {
                            // After 301/308 the new URL is kept; after a
                            // temporary redirect, reconnects start over. A
                            // permanent redirect to another origin is not
                            // kept either: the builder's credentials would go
                            // straight to the new origin, so reconnects go
                            // back through the hop, which drops them.
                            if r.permanent && !r.cross_origin {
                                this.builder.set_url(r.url);
                            }
                        }
                        let mut ws = c.ws;
                        let slot = Arc::new(Mutex::new(EndInfo::new(Instant::now())));
                        ws.set_report(slot.clone());
                        this.prev = Some(slot);
                        this.state = St::Ready;
                        return Poll::Ready(Some(Ok(ws)));
                    }
                    Err(e) => match this.planner.attempt_failed(e) {
                        Plan::Wait(d) => this.state = St::Sleeping(Box::pin(tokio::time::sleep(d))),
                        Plan::Stop(e) => {
                            this.state = St::Done;
                            return Poll::Ready(Some(Err(e)));
                        }
                    },
                },
            }
        }
    }
}
