//! Fan-out: one message to many server connections ([`Hub`]).
//!
//! - `mod.rs`: the [`Hub`], its settings and the broadcast;
//! - `member.rs`: [`Member`], a connection in the hub;
//! - `topic.rs`: [`Topic`], named groups whose messages carry ids, reach
//!   every process sharing the hub's [`Backend`], and can be resumed;
//! - `backend/`: the [`Backend`] trait, [`InProcess`] (default) and
//!   [`RedisBackend`] (feature `redis`).
//!
//! A hub delivers to the members connected to this process. Each message is
//! framed once ([`PreparedMessage`]) and queued on every member's
//! connection without waiting for any of them; each connection's unsent
//! bytes are its queue, bounded by [`HubBuilder::max_queue_bytes`].

mod backend;
mod member;
mod topic;

pub use backend::{Backend, BoxFuture, History, InProcess, TopicSink, DEFAULT_HISTORY};
#[cfg(feature = "redis")]
pub use backend::{RedisBackend, RedisBackendBuilder, DEFAULT_REDIS_HISTORY};
pub use member::{Member, MemberId};
pub use topic::Topic;

use std::collections::HashMap;
use topic::TopicCore;

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
    backend: Arc<dyn Backend>,
    topics: Mutex<HashMap<String, Topic>>,
    max_topics: usize,
    topic_ring: usize,
    stats: Arc<Stats>,
}

/// Counters shared by a hub and its topics.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) publish_failures: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) closed_slow: AtomicU64,
}

#[derive(Clone)]
struct Entry {
    id: MemberId,
    target: Arc<dyn Target>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Never held across an await, and nothing panics while holding it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A set of members that a [`Member`] leaves when it is dropped: the hub's
/// own members, or a topic's.
pub(crate) trait Group: Send + Sync {
    fn remove(&self, gone: &[MemberId]);
}

impl Group for Inner {
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
#[derive(Clone)]
#[must_use]
pub struct HubBuilder {
    max_queue_bytes: usize,
    backend: Option<Arc<dyn Backend>>,
    max_topics: usize,
    topic_ring: usize,
}

impl std::fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubBuilder")
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("max_topics", &self.max_topics)
            .field("topic_ring", &self.topic_ring)
            .finish_non_exhaustive()
    }
}

/// The default [`HubBuilder::max_topics`]: 10,000.
pub const DEFAULT_MAX_TOPICS: usize = 10_000;

impl Default for HubBuilder {
    fn default() -> Self {
        HubBuilder {
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            backend: None,
            max_topics: DEFAULT_MAX_TOPICS,
            topic_ring: 1000,
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

    /// Where the hub's topics live: [`InProcess`] by default (this
    /// process only), or a backend shared by many processes, such as
    /// [`RedisBackend`] (feature `redis`).
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// The most topics [`Hub::topic`] creates (default
    /// [`DEFAULT_MAX_TOPICS`]): topics stay once made, so a server that
    /// names topics after client input (a URL path) stays bounded.
    pub fn max_topics(mut self, n: usize) -> Self {
        self.max_topics = n;
        self
    }

    /// How many recent messages each topic keeps in this process to serve
    /// resuming clients without asking the backend (default 1000, at least
    /// 1). Clients that resume from further back get the backend's history.
    pub fn recent_messages(mut self, n: usize) -> Self {
        self.topic_ring = n.max(1);
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
                backend: self.backend.unwrap_or_else(|| Arc::new(InProcess::new())),
                topics: Mutex::new(HashMap::new()),
                max_topics: self.max_topics,
                topic_ring: self.topic_ring,
                stats: Arc::default(),
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

    /// The topic `name`, made on first use (and then subscribed to in the
    /// backend). See [`Topic`].
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when making it would pass
    /// [`HubBuilder::max_topics`].
    pub fn topic(&self, name: &str) -> Result<Topic> {
        let mut topics = lock(&self.inner.topics);
        if let Some(t) = topics.get(name) {
            return Ok(t.clone());
        }
        if topics.len() >= self.inner.max_topics {
            return Err(Error::msg(
                ErrorKind::Config,
                format!("too many topics (at most {})", self.inner.max_topics),
            ));
        }
        let topic = Topic {
            core: Arc::new(TopicCore::new(
                name.to_string(),
                self.inner.max_queue_bytes,
                self.inner.topic_ring,
                self.inner.stats.clone(),
            )),
            backend: self.inner.backend.clone(),
        };
        self.inner.backend.subscribe(name, topic.sink());
        topics.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// How many [`Topic::publish`] calls failed to reach the backend (and
    /// were delivered to this process's members only).
    pub fn publish_failures(&self) -> u64 {
        self.inner.stats.publish_failures.load(Ordering::Relaxed)
    }

    /// How many gap notices the topics of this hub sent (history lost by
    /// the backend, seen when catching up after an outage).
    pub fn gaps(&self) -> u64 {
        self.inner.stats.gaps.load(Ordering::Relaxed)
    }

    /// The number of members (of the hub itself, not of its topics).
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
        let group: Arc<dyn Group> = self.inner.clone();
        Member::new(id, reader, writer, handshake, Arc::downgrade(&group))
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
