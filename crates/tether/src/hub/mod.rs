//! Fan-out: one message to many server connections ([`Hub`]).
//!
//! - `mod.rs`: the [`Hub`], its settings and the broadcast;
//! - `member.rs`: [`Member`], a connection in the hub.
//!
//! A hub delivers to the members connected to this process. Each message is
//! framed once ([`PreparedMessage`]) and queued on every member's
//! connection without waiting for any of them; each connection's unsent
//! bytes are its queue, bounded by [`HubBuilder::max_queue_bytes`].

mod member;

pub use member::{Member, MemberId};

use crate::error::{Error, ErrorKind, Result};
use crate::socket::{Offered, Target, WebSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tether_proto::{Message, PreparedMessage};
use tokio::io::{AsyncRead, AsyncWrite};

/// The default [`HubBuilder::max_queue_bytes`]: 1 MiB.
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 1 << 20;

/// A group of server connections that receive the same messages.
///
/// [`Hub::join`] adds a connection and returns its [`Member`] handle;
/// [`Hub::broadcast`] sends a message to every member. The hub is cheap to
/// clone (the clones share the members) and can be used from any task.
///
/// - **Framed once**: a broadcast frames the message once and queues the
///   same bytes on every member (large frames by reference, small ones
///   copied into each connection's write buffer). Members that negotiated
///   permessage-deflate get it compressed: with context takeover (the
///   default) each connection compresses it in its own context, since the
///   compressed bytes depend on every message it compressed before; with
///   `server_no_context_takeover`, it is compressed once per compression
///   level and window in use and shared. See [`PreparedMessage`].
/// - **Never waits for a member**: `broadcast` is a plain function. It
///   queues, then leaves the writing to each member's task waiting in
///   [`Member::recv`] (so that messages broadcast in quick succession go
///   out in one write), or makes one write attempt itself.
/// - **Slow members are closed, never skipped**: each member's queue is
///   its connection's unsent bytes. A member whose queue would pass
///   [`HubBuilder::max_queue_bytes`] (1 MiB by default) is closed with
///   1013 "try again later" and removed; it gets every message before that
///   and none after, and its close code tells it so. A reconnecting client
///   (tether's [`Session`](crate::reconnect::Session) retries 1013) comes
///   back with backoff.
/// - **One order**: broadcasts are serialized, so every member receives
///   them in the same order.
/// - **Leaving**: a member leaves when its handle is dropped, when its
///   connection ends ([`Member::recv`] returns `None`), and when a
///   broadcast finds its connection closed.
///
/// Keep a task reading each member: the reader answers pings, completes
/// the closing handshake, and writes out what the hub queued.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use tether::{hub::Hub, Message, ServerBuilder};
/// let hub = Hub::new();
/// let chat = hub.clone();
/// let server = ServerBuilder::new()
///     .serve("127.0.0.1:9001", move |ws| {
///         let hub = chat.clone();
///         async move {
///             let mut member = hub.join(ws);
///             // Relay what each member says to everyone.
///             while let Some(Ok(msg)) = member.recv().await {
///                 if msg.is_data() {
///                     let report = hub.broadcast(msg).expect("a data message");
///                     if !report.closed_slow.is_empty() {
///                         eprintln!("closed for being slow: {:?}", report.closed_slow);
///                     }
///                 }
///             }
///         }
///     })
///     .await?;
/// // Any task can broadcast, for instance a ticker.
/// hub.broadcast(Message::text("server restarting in 5 minutes"))?;
/// # server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    /// The members; a broadcast takes a snapshot (one reference count), and
    /// joining or leaving copies the list only while a broadcast holds one.
    members: Mutex<Arc<Vec<Entry>>>,
    /// Held for the whole of each broadcast (which never waits), so that
    /// every member sees the broadcasts in one order.
    sending: Mutex<()>,
    max_queue_bytes: usize,
    next_id: AtomicU64,
}

#[derive(Clone)]
struct Entry {
    id: MemberId,
    target: Arc<dyn Target>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Never held across an await, and nothing panics while holding it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn remove(&self, gone: &[MemberId]) {
        if gone.is_empty() {
            return;
        }
        let mut members = lock(&self.members);
        Arc::make_mut(&mut members).retain(|e| !gone.contains(&e.id));
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("members", &self.len())
            .field("max_queue_bytes", &self.inner.max_queue_bytes)
            .finish()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

/// Settings of a [`Hub`].
///
/// ```
/// let hub = tether::hub::Hub::builder().max_queue_bytes(256 << 10).build();
/// assert_eq!(hub.max_queue_bytes(), 256 << 10);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct HubBuilder {
    max_queue_bytes: usize,
}

impl Default for HubBuilder {
    fn default() -> Self {
        HubBuilder {
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
        }
    }
}

impl HubBuilder {
    /// The most bytes a member's connection may hold unsent (the frames of
    /// broadcasts, and anything else queued on it); default 1 MiB. A
    /// broadcast that would take a member past it closes that member with
    /// 1013 instead. A member with nothing unsent takes any message, even
    /// one larger than the limit.
    pub fn max_queue_bytes(mut self, n: usize) -> Self {
        self.max_queue_bytes = n;
        self
    }

    /// The hub.
    pub fn build(self) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                members: Mutex::new(Arc::new(Vec::new())),
                sending: Mutex::new(()),
                max_queue_bytes: self.max_queue_bytes,
                next_id: AtomicU64::new(0),
            }),
        }
    }
}

/// What one broadcast did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastReport {
    /// Members the message was queued on.
    pub delivered: usize,
    /// Members closed with 1013 and removed instead: the message would have
    /// taken their queue past the limit.
    pub closed_slow: Vec<MemberId>,
    /// Members removed because their connection had closed.
    pub gone: usize,
}

impl Hub {
    /// A hub with the default settings.
    pub fn new() -> Self {
        HubBuilder::default().build()
    }

    /// Settings for a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// The queue limit of each member, in bytes.
    pub fn max_queue_bytes(&self) -> usize {
        self.inner.max_queue_bytes
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        lock(&self.inner.members).len()
    }

    /// True when the hub has no member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a server connection. The returned [`Member`] receives its
    /// messages (keep calling [`Member::recv`]) and can send to it alone;
    /// dropping it leaves the hub.
    pub fn join<S>(&self, ws: WebSocket<S>) -> Member<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let id = MemberId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let (reader, writer, handshake) = ws.split_with_handshake();
        let entry = Entry {
            id,
            target: writer.target(),
        };
        Arc::make_mut(&mut lock(&self.inner.members)).push(entry);
        Member::new(id, reader, writer, handshake, Arc::downgrade(&self.inner))
    }

    /// Sends a text or binary message to every member: frames it once,
    /// then as [`Hub::broadcast_prepared`].
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a control message (ping, pong, close):
    /// those belong to one connection.
    pub fn broadcast(&self, msg: Message) -> Result<BroadcastReport> {
        let prepared = PreparedMessage::new(msg).map_err(|_| {
            Error::msg(
                ErrorKind::Config,
                "only text and binary messages can be broadcast",
            )
        })?;
        Ok(self.broadcast_prepared(&prepared))
    }

    /// Queues a framed message on every member, without waiting for any:
    /// a member whose queue would pass the limit is closed with 1013 and
    /// removed instead, and members whose connection closed are removed.
    /// Call it from any task; it holds no lock once it returns.
    pub fn broadcast_prepared(&self, msg: &PreparedMessage) -> BroadcastReport {
        let mut report = BroadcastReport::default();
        let mut removed = Vec::new();
        {
            let _order = lock(&self.inner.sending);
            let members = lock(&self.inner.members).clone();
            let limit = self.inner.max_queue_bytes;
            for e in members.iter() {
                match e.target.offer(msg, limit) {
                    Offered::Queued(_) => report.delivered += 1,
                    Offered::ClosedSlow => {
                        tracing::warn!(
                            member = e.id.get(),
                            limit,
                            "fan-out member too slow: closing it with 1013"
                        );
                        report.closed_slow.push(e.id);
                        removed.push(e.id);
                    }
                    Offered::Gone => {
                        report.gone += 1;
                        removed.push(e.id);
                    }
                }
            }
        }
        self.inner.remove(&removed);
        report
    }
}

#[cfg(test)]
mod tests;
