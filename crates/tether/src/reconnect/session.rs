//! [`Session`]: one logical connection that reconnects by itself.

use super::connections::ended_from;
use super::policy::{Plan, Planner};
use super::{Event, ReconnectPolicy};
use crate::client::ClientBuilder;
use crate::error::{Error, ErrorKind, Initiator, Result};
use crate::queue;
use crate::resume::{self, Frame, Gap, MessageId, Received};
use crate::socket::{EndInfo, WebSocket};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_proto::{CloseCode, Message};
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

/// The most queued messages one write of the session's connection task
/// takes before it looks at the socket's input again.
const MAX_BATCH: usize = 256;

type OnConnect =
    dyn Fn(WebSocket) -> Pin<Box<dyn Future<Output = Result<WebSocket>> + Send>> + Send + Sync;

/// What a [`Session`] is doing, for a user interface to watch.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionState {
    /// Attempt `attempt` is in progress.
    Connecting {
        /// The attempt number, from 1.
        attempt: u32,
    },
    /// Connected.
    Open {
        /// The round trip measured by the last keepalive ping.
        latency: Option<Duration>,
    },
    /// Waiting before the next attempt.
    Waiting {
        /// How long.
        delay: Duration,
        /// What failed, in words.
        cause: String,
    },
    /// Stopped for good: the policy gave up, or the user closed the session.
    Stopped {
        /// Why; `None` when the user closed the session.
        error: Option<Arc<Error>>,
    },
}

/// Settings of a [`Session`]; made by [`ClientBuilder::session`].
#[must_use]
pub struct SessionBuilder {
    builder: ClientBuilder,
    policy: ReconnectPolicy,
    queue: usize,
    queue_bytes: usize,
    on_connect: Option<Arc<OnConnect>>,
    resume: bool,
    urls: Vec<String>,
}

impl std::fmt::Debug for SessionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBuilder")
            .field("builder", &self.builder)
            .field("policy", &self.policy)
            .field("queue", &self.queue)
            .field("queue_bytes", &self.queue_bytes)
            .field("resume", &self.resume)
            .field("fallback_urls", &self.urls.len())
            .finish_non_exhaustive()
    }
}

impl SessionBuilder {
    pub(crate) fn new(builder: ClientBuilder, policy: ReconnectPolicy) -> Self {
        SessionBuilder {
            builder,
            policy,
            queue: 1024,
            queue_bytes: 1 << 20,
            on_connect: None,
            resume: false,
            urls: Vec::new(),
        }
    }

    /// Resumes after each reconnect with no message lost, when the server
    /// speaks [`tether.resume.v1`](crate::resume) (a tether
    /// [`Topic`](crate::hub::Topic)): offers the subprotocol, removes the
    /// framing from each message, remembers the last id seen and sends it
    /// (`?last_id=`) on every reconnect, so the server replays what was
    /// missed, with no duplicate. When the server says its history no
    /// longer reaches back, [`Session::recv_or_gap`] returns a
    /// [`Gap`](crate::resume::Gap) where the messages are missing. Against
    /// a server that does not select the subprotocol, messages pass
    /// unchanged (negotiated: any server works). Default off.
    pub fn resume(mut self, on: bool) -> Self {
        self.resume = on;
        self
    }

    /// Other URLs of the same service (say, the other server processes of
    /// a topic): after each failed attempt or ended connection, the next
    /// attempt goes to the next URL in turn (the builder's URL first, then
    /// these, then round again). With [`resume`](SessionBuilder::resume),
    /// the last id goes to whichever server is next.
    pub fn fallback_urls<I, T>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// The number of messages `send` may queue while disconnected (and the
    /// number of received messages buffered for `recv`); default 1024.
    /// Past it, `send` waits.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }

    /// The payload bytes each queue may hold (the messages `send` queued,
    /// and those received and not yet taken by `recv`); default 1 MiB.
    /// Past it, `send` waits, and the session stops reading from the
    /// server until `recv` makes room. A single message larger than this
    /// waits for an empty queue.
    pub fn queue_bytes(mut self, n: usize) -> Self {
        self.queue_bytes = n.max(1);
        self
    }

    /// Runs `f` on each new connection before any queued message is sent:
    /// to authenticate or resubscribe. An error counts as a failed attempt.
    pub fn on_connect<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<WebSocket>> + Send + 'static,
    {
        self.on_connect = Some(Arc::new(move |ws| Box::pin(f(ws))));
        self
    }

    /// Starts the session on a background task (needs a tokio runtime).
    pub fn start(self) -> Session {
        let (out_tx, out_rx) = queue::channel(self.queue, self.queue_bytes);
        let (in_tx, in_rx) = queue::channel(self.queue, self.queue_bytes);
        let (state_tx, state_rx) = watch::channel(SessionState::Connecting { attempt: 1 });
        let ctl = Arc::new(Control {
            reconnect: Notify::new(),
            close: Mutex::new(None),
        });
        let last_id = Arc::new(Mutex::new(None));
        let mut builder = self.builder;
        if self.resume {
            builder = builder.subprotocol(resume::SUBPROTOCOL);
        }
        let mut urls = vec![builder.url().to_string()];
        urls.extend(self.urls);
        let driver = Driver {
            planner: Planner::new(self.policy, builder.has_headers_provider()),
            builder,
            urls,
            next_url: 0,
            last_id: last_id.clone(),
            on_connect: self.on_connect,
            out_rx,
            in_tx,
            state: state_tx,
            ctl: ctl.clone(),
            resend: VecDeque::new(),
            unplaced: false,
        };
        let task = tokio::spawn(driver.run());
        Session {
            tx: SessionSender {
                out_tx,
                state: state_rx,
            },
            last_id,
            in_rx,
            ctl,
            task: Some(task),
        }
    }
}

struct Control {
    reconnect: Notify,
    close: Mutex<Option<(CloseCode, String, oneshot::Sender<()>)>>,
}

/// One logical connection that reconnects by itself with a
/// [`ReconnectPolicy`].
///
/// - `send` works while disconnected: messages wait in a bounded queue and
///   are delivered in order after reconnecting, after the `on_connect` hook.
/// - **Delivery across reconnects**: a message handed to a connection that
///   died before the message was completely written to the socket is sent
///   again, first, on the next connection. A message fully written to the
///   socket counts as sent: WebSocket has no acknowledgements, so what the
///   network lost after that cannot be known here; use application-level
///   acknowledgements when every message matters. Nothing is dropped
///   silently: when the session stops, `send` fails and the messages still
///   queued are returned by [`Session::undelivered`].
/// - Both queues are bounded, by count and by bytes
///   ([`SessionBuilder::queue_capacity`], [`SessionBuilder::queue_bytes`],
///   1024 messages and 1 MiB by default): when the application does not call `recv`,
///   received messages fill the receive queue and the session stops reading
///   (backpressure), so keep a task receiving while another sends:
///   [`Session::sender`] gives a cloneable handle for the tasks that
///   send, and the session is a `Stream` of the messages received.
/// - A close from the server reconnects or stops by the close-code table of
///   [`crate::reconnect`]; [`Session::close`] never reconnects.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use tether::{ClientBuilder, Message, reconnect::ReconnectPolicy};
/// let mut session = ClientBuilder::new("ws://127.0.0.1:9001/feed")
///     .session(ReconnectPolicy::default())
///     .on_connect(|mut ws| async move {
///         ws.send(Message::text(r#"{"subscribe":"prices"}"#)).await?;
///         Ok(ws)
///     })
///     .start();
/// session.send(Message::text("hello")).await?; // queued if not connected yet
/// while let Some(msg) = session.recv().await {
///     println!("{msg:?}");
/// }
/// println!("stopped: {:?}", session.state());
/// # Ok(()) }
/// ```
///
/// Sending from other tasks, receiving as a `Stream`:
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use futures_util::StreamExt;
/// use tether::{ClientBuilder, Message, reconnect::ReconnectPolicy};
/// let mut session = ClientBuilder::new("ws://127.0.0.1:9001/feed")
///     .session(ReconnectPolicy::default())
///     .start();
/// for task in 0..4 {
///     let tx = session.sender();
///     tokio::spawn(async move {
///         for i in 0..10 {
///             tx.send(Message::text(format!("{task}:{i}"))).await?;
///         }
///         Ok::<(), tether::Error>(())
///     });
/// }
/// while let Some(msg) = session.next().await {
///     println!("{msg:?}");
/// }
/// # Ok(()) }
/// ```
pub struct Session {
    tx: SessionSender,
    last_id: Arc<Mutex<Option<MessageId>>>,
    in_rx: queue::Receiver,
    ctl: Arc<Control>,
    task: Option<tokio::task::JoinHandle<VecDeque<Message>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &*self.tx.state.borrow())
            .finish_non_exhaustive()
    }
}

/// A handle that sends through a [`Session`] from any task, into the same
/// bounded queue as [`Session::send`]; made by [`Session::sender`], cheap
/// to clone. Each task's messages are delivered in the order it sent them.
/// Once the session stops (or is dropped), `send` fails.
#[derive(Clone)]
pub struct SessionSender {
    out_tx: queue::Sender,
    state: watch::Receiver<SessionState>,
}

impl std::fmt::Debug for SessionSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSender")
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl SessionSender {
    /// Queues a text or binary message, as [`Session::send`].
    ///
    /// # Errors
    /// As [`Session::send`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a cancelled call did not queue the message.
    pub async fn send(&self, msg: Message) -> Result<()> {
        if !msg.is_data() {
            return Err(Error::msg(
                ErrorKind::Config,
                "a session sends only text and binary messages",
            ));
        }
        self.out_tx
            .send(msg)
            .await
            .map_err(|_| self.stopped_error())
    }

    fn stopped_error(&self) -> Error {
        match &*self.state.borrow() {
            SessionState::Stopped { error: Some(e) } => e.duplicate(),
            _ => Error::msg(ErrorKind::Closed, "the session is closed"),
        }
    }

    /// The session's current state.
    pub fn state(&self) -> SessionState {
        self.state.borrow().clone()
    }
}

impl Session {
    /// Queues a text or binary message; it is sent now if connected, or
    /// after reconnecting. Waits while the queue is full.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a control message (use [`Session::close`]);
    /// the stop error (or [`ErrorKind::Closed`]) once the session stopped.
    ///
    /// # Cancel safety
    /// Cancel-safe: a cancelled call did not queue the message.
    pub async fn send(&self, msg: Message) -> Result<()> {
        self.tx.send(msg).await
    }

    /// A cloneable handle to send from other tasks, into the same queue.
    pub fn sender(&self) -> SessionSender {
        self.tx.clone()
    }

    /// The next text or binary message received, from whichever connection;
    /// `None` once the session has stopped. The session is also a `Stream`
    /// of the same messages.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Message> {
        self.in_rx.recv().await
    }

    /// As [`Session::recv`], and with [`resume`](SessionBuilder::resume),
    /// also the gaps the server reported, in order with the messages.
    /// (`recv` and the `Stream` skip gaps.)
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn recv_or_gap(&mut self) -> Option<Received> {
        self.in_rx.recv_item().await
    }

    /// The id of the last message received under
    /// [`resume`](SessionBuilder::resume), where the next reconnect resumes.
    pub fn last_id(&self) -> Option<MessageId> {
        *self.last_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.tx.state()
    }

    /// A receiver that sees every state change.
    pub fn watch(&self) -> watch::Receiver<SessionState> {
        self.tx.state.clone()
    }

    /// Cuts a wait between attempts short.
    pub fn reconnect_now(&self) {
        self.ctl.reconnect.notify_one();
    }

    /// Closes the session: sends what is queued, closes the connection with
    /// `code` and `reason`, and never reconnects. Returns the messages that
    /// could not be delivered (when it was not connected).
    ///
    /// # Cancel safety
    /// Not cancel-safe: the close goes on without the caller.
    pub async fn close(mut self, code: CloseCode, reason: &str) -> VecDeque<Message> {
        let (tx, rx) = oneshot::channel();
        *self.ctl.close.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((code, reason.to_string(), tx));
        self.ctl.reconnect.notify_one();
        let _ = rx.await;
        self.undelivered().await
    }

    /// After the session stopped: the messages that were queued and never
    /// sent, in order.
    ///
    /// # Cancel safety
    /// Not cancel-safe: the result is lost if cancelled.
    pub async fn undelivered(&mut self) -> VecDeque<Message> {
        match self.task.take() {
            Some(t) => t.await.unwrap_or_default(),
            None => VecDeque::new(),
        }
    }
}

impl futures_core::Stream for Session {
    type Item = Message;

    /// As [`Session::recv`].
    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Message>> {
        self.get_mut().in_rx.poll_recv(cx)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

struct Driver {
    builder: ClientBuilder,
    /// The URLs tried in turn (the builder's first).
    urls: Vec<String>,
    next_url: usize,
    /// The last id received under tether.resume.v1, shared with the Session.
    last_id: Arc<Mutex<Option<MessageId>>>,
    planner: Planner,
    on_connect: Option<Arc<OnConnect>>,
    out_rx: queue::Receiver,
    in_tx: queue::Sender,
    state: watch::Sender<SessionState>,
    ctl: Arc<Control>,
    /// Messages to send first on the next connection: they were not
    /// completely written when the previous one died.
    resend: VecDeque<Message>,
    /// A connection under tether.resume.v1 ended before the server said
    /// where the client stood (no id, no position): what was published
    /// until the next connection may be lost, and is reported as a gap.
    unplaced: bool,
}

enum RunEnd {
    /// The connection ended; judge it.
    Ended,
    /// The user closed the session.
    UserClosed,
}

impl Driver {
    fn close_requested(&self) -> Option<(CloseCode, String, oneshot::Sender<()>)> {
        self.ctl
            .close
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    async fn run(mut self) -> VecDeque<Message> {
        // An invalid URL, or a value that cannot be sent, is fatal before
        // any attempt.
        if let Err(e) = self.builder.validate() {
            self.planner.stopped(&e);
            let _ = self.state.send(SessionState::Stopped {
                error: Some(Arc::new(e)),
            });
            return self.leftovers();
        }
        loop {
            if let Some((_, _, done)) = self.close_requested() {
                let _ = self.state.send(SessionState::Stopped { error: None });
                let _ = done.send(());
                return self.leftovers();
            }
            let attempt = self.planner.start_attempt(&self.builder.url_redacted());
            let _ = self.state.send(SessionState::Connecting { attempt });
            let refresh = std::mem::take(&mut self.planner.refresh_next);
            let plan = match self.connect(attempt, refresh).await {
                Ok(ws) => {
                    self.planner.connected();
                    let slot = Arc::new(Mutex::new(EndInfo::new(Instant::now())));
                    let mut ws = ws;
                    ws.set_report(slot.clone());
                    match self.serve(ws).await {
                        RunEnd::UserClosed => return self.leftovers(),
                        RunEnd::Ended => {}
                    }
                    let info = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    self.planner.ended(ended_from(&info))
                }
                Err(e) => self.planner.attempt_failed(e),
            };
            match plan {
                Plan::Wait(delay) => {
                    let cause = self.last_reason();
                    let _ = self.state.send(SessionState::Waiting { delay, cause });
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.ctl.reconnect.notified() => {}
                    }
                }
                Plan::Stop(e) => {
                    let _ = self.state.send(SessionState::Stopped {
                        error: Some(Arc::new(e)),
                    });
                    return self.leftovers();
                }
            }
        }
    }

    fn last_id(&self) -> Option<MessageId> {
        *self.last_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Passes a received data message on: under tether.resume.v1, without
    /// its framing, remembering its id, dropping any id seen already (a
    /// server must not send one; a duplicate never reaches the user).
    async fn received(&mut self, m: Message, framed: bool) {
        if !framed {
            let _ = self.in_tx.send(m).await;
            return;
        }
        match Frame::parse(&m) {
            Ok(Frame::Message { id, message }) => {
                if let Some(id) = id {
                    let mut last = self.last_id.lock().unwrap_or_else(|p| p.into_inner());
                    if last.is_some_and(|l| id <= l) {
                        return;
                    }
                    *last = Some(id);
                }
                let _ = self.in_tx.send(message).await;
            }
            Ok(Frame::Gap(gap)) => {
                tracing::warn!(%gap, "the server reports a gap in the stream");
                let _ = self.in_tx.send_gap(gap).await;
            }
            Ok(Frame::Position(id)) => {
                let mut last = self.last_id.lock().unwrap_or_else(|p| p.into_inner());
                if !last.is_some_and(|l| id <= l) {
                    *last = Some(id);
                }
            }
            // Not framed after all: pass it on as it is.
            Err(_) => {
                let _ = self.in_tx.send(m).await;
            }
        }
    }

    fn last_reason(&self) -> String {
        self.planner.last_reason.clone().unwrap_or_default()
    }

    /// Everything never handed to a connection: the resend list, then the queue.
    fn leftovers(&mut self) -> VecDeque<Message> {
        self.out_rx.close();
        let mut left = std::mem::take(&mut self.resend);
        while let Some(m) = self.out_rx.try_recv() {
            left.push_back(m);
        }
        left
    }

    /// The builder for the next attempt: the next URL in turn, with the
    /// resume point.
    fn attempt_builder(&mut self) -> ClientBuilder {
        let mut url = self.urls[self.next_url % self.urls.len()].clone();
        self.next_url = (self.next_url + 1) % self.urls.len();
        if let Some(id) = *self.last_id.lock().unwrap_or_else(|p| p.into_inner()) {
            url = resume::url_with_last_id(&url, id);
        }
        let mut b = self.builder.clone();
        b.set_url(url);
        b
    }

    async fn connect(&mut self, attempt: u32, refresh: bool) -> Result<WebSocket> {
        let builder = if self.urls.len() > 1 || self.last_id().is_some() {
            self.attempt_builder()
        } else {
            self.builder.clone()
        };
        let headers = builder.provided_headers(attempt, refresh).await?;
        let c = builder.connect_full(headers).await?;
        match &self.on_connect {
            Some(f) => f(c.ws).await,
            None => Ok(c.ws),
        }
    }

    /// The user closed the open connection: it ended too, so the policy's
    /// observer hears of it like of any other end (the planner does not:
    /// nothing follows).
    fn closed_by_user(&self, code: CloseCode, reason: String, opened: Instant) {
        self.planner.policy.emit(&Event::Closed {
            code: Some(code),
            reason,
            initiator: Some(Initiator::Local),
            open_for: opened.elapsed(),
        });
    }

    /// Runs an open connection until it ends or the user closes the session.
    async fn serve(&mut self, mut ws: WebSocket) -> RunEnd {
        let opened = Instant::now();
        let framed = ws.subprotocol() == Some(resume::SUBPROTOCOL);
        if std::mem::take(&mut self.unplaced) {
            let gap = Gap {
                after: MessageId::ZERO,
                before: None,
            };
            tracing::warn!(%gap, "the last connection ended before the server gave a resume point");
            let _ = self.in_tx.send_gap(gap).await;
        }
        let _ = self.state.send(SessionState::Open { latency: None });
        let mut latency = None;
        // (end offset in the written byte stream, message) for messages
        // handed to this socket and not yet known to be fully written.
        let mut in_flight: VecDeque<(u64, Message)> = VecDeque::new();
        let end = loop {
            if ws.latency() != latency {
                latency = ws.latency();
                let _ = self.state.send(SessionState::Open { latency });
            }
            // Forget messages that are completely written.
            let (written, _) = ws.write_progress();
            while in_flight.front().is_some_and(|(end, _)| *end <= written) {
                in_flight.pop_front();
            }
            let next_out = self.resend.pop_front();
            let msg = match next_out {
                Some(m) => Some(m),
                None => {
                    tokio::select! {
                        biased;
                        _ = self.ctl.reconnect.notified() => {
                            if let Some((code, reason, done)) = self.close_requested() {
                                let _ = ws.close(code, &reason).await;
                                self.closed_by_user(code, reason, opened);
                                let _ = self.state.send(SessionState::Stopped { error: None });
                                let _ = done.send(());
                                return RunEnd::UserClosed;
                            }
                            continue;
                        }
                        r = ws.recv() => match r {
                            Some(Ok(m)) if m.is_data() => {
                                // A user that dropped the receiving side
                                // does not stop the session.
                                self.received(m, framed).await;
                                continue;
                            }
                            Some(Ok(_)) => continue,
                            Some(Err(_)) | None => break RunEnd::Ended,
                        },
                        m = self.out_rx.recv() => m,
                    }
                }
            };
            let Some(msg) = msg else {
                // Every sender is gone: the Session was dropped.
                let _ = ws.close(CloseCode::NORMAL, "").await;
                self.closed_by_user(CloseCode::NORMAL, String::new(), opened);
                return RunEnd::UserClosed;
            };
            // Queue this message and those already waiting behind it, then
            // write them out together: a sender that produces faster than
            // the socket drains gets many frames per write instead of one
            // write (and one flush) per message. The batch is bounded so
            // that a busy sender does not keep this loop from reading.
            let mut next = Some(msg);
            let mut queued = 0;
            let mut failed = None;
            while let Some(m) = next.take() {
                match futures_util::SinkExt::feed(&mut ws, m.clone()).await {
                    Ok(()) => {
                        let (_, queued_end) = ws.write_progress();
                        in_flight.push_back((queued_end, m));
                    }
                    Err(_) => {
                        failed = Some(m);
                        break;
                    }
                }
                queued += 1;
                if queued < MAX_BATCH {
                    next = self.resend.pop_front().or_else(|| self.out_rx.try_recv());
                }
            }
            if let Some(m) = failed {
                self.resend.push_front(m);
                break RunEnd::Ended;
            }
            // A failed flush leaves the messages not fully written in
            // `in_flight`: they are sent again after reconnecting.
            if ws.flush().await.is_err() {
                break RunEnd::Ended;
            }
        };
        if framed && self.last_id().is_none() {
            self.unplaced = true;
        }
        // Messages not completely written go first on the next connection.
        let (written, _) = ws.write_progress();
        let unsent: Vec<Message> = in_flight
            .into_iter()
            .filter(|(end, _)| *end > written)
            .map(|(_, m)| m)
            .collect();
        if !unsent.is_empty() {
            tracing::info!(
                count = unsent.len(),
                "messages not fully written will be sent again after reconnecting"
            );
        }
        for m in unsent.into_iter().rev() {
            self.resend.push_front(m);
        }
        drop(ws);
        end
    }
}
