//! [`Topic`]: a named group of members whose messages carry ids, reach
//! every process that shares the hub's backend, and can be resumed.

use super::backend::{Backend, History, TopicSink};
use super::member::{Member, MemberId};
use super::{lock, Group, Stats};
use crate::error::{Error, ErrorKind, Result};
use crate::resume::{self, Gap, MessageId};
use crate::socket::{Offered, Target, WebSocket};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tether_proto::{Message, PreparedMessage};
use tokio::io::{AsyncRead, AsyncWrite};

/// One topic in one process: its local members and the recent messages
/// delivered to them.
pub(crate) struct TopicCore {
    name: String,
    state: Mutex<State>,
    max_queue_bytes: usize,
    ring_cap: usize,
    next_member: AtomicU64,
    stats: Arc<Stats>,
}

struct State {
    members: Vec<Entry>,
    /// The last id delivered here.
    last: Option<MessageId>,
    /// What was delivered here lately, in order (messages and gap
    /// notices), with when: resuming clients are served from it without
    /// asking the backend, and new members get what was delivered between
    /// their handshake and their joining.
    ring: VecDeque<(Instant, Delivered)>,
    /// The largest id dropped from `ring`.
    evicted: Option<MessageId>,
    /// When the last entry dropped from `ring` had been delivered.
    evicted_at: Option<Instant>,
}

#[derive(Clone)]
enum Delivered {
    Message(MessageId, Message),
    Gap(Gap),
}

impl Delivered {
    /// Where it sits in the id order.
    fn key(&self) -> MessageId {
        match self {
            Delivered::Message(id, _) => *id,
            Delivered::Gap(g) => g.after,
        }
    }
}

struct Entry {
    id: MemberId,
    target: Arc<dyn Target>,
    /// Selected `tether.resume.v1`: gets ids and gap notices.
    framed: bool,
    /// Has every message up to this id (it resumed from there, or was
    /// given them by a replay): live ones up to it are skipped.
    skip_through: Option<MessageId>,
}

/// What the members of a topic are sent for one delivery: the bare
/// message and the framed one, each framed once when first needed.
struct Frames<'a> {
    id: Option<MessageId>,
    msg: &'a Message,
    bare: Option<PreparedMessage>,
    framed: Option<PreparedMessage>,
}

impl<'a> Frames<'a> {
    fn new(id: Option<MessageId>, msg: &'a Message) -> Self {
        Frames {
            id,
            msg,
            bare: None,
            framed: None,
        }
    }

    fn get(&mut self, framed: bool) -> Option<&PreparedMessage> {
        let (slot, msg) = if framed {
            (&mut self.framed, resume::frame_message(self.id, self.msg))
        } else {
            (&mut self.bare, self.msg.clone())
        };
        if slot.is_none() {
            *slot = PreparedMessage::new(msg).ok();
        }
        slot.as_ref()
    }
}

impl Group for TopicCore {
    fn remove(&self, gone: &[MemberId]) {
        if !gone.is_empty() {
            lock(&self.state).members.retain(|e| !gone.contains(&e.id));
        }
    }
}

impl TopicCore {
    pub(crate) fn new(
        name: String,
        max_queue_bytes: usize,
        ring_cap: usize,
        stats: Arc<Stats>,
    ) -> Self {
        TopicCore {
            name,
            state: Mutex::new(State {
                members: Vec::new(),
                last: None,
                ring: VecDeque::new(),
                evicted: None,
                evicted_at: None,
            }),
            max_queue_bytes,
            ring_cap: ring_cap.max(1),
            next_member: AtomicU64::new(0),
            stats,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn last_id(&self) -> Option<MessageId> {
        lock(&self.state).last
    }

    fn remember(&self, st: &mut State, d: Delivered) {
        st.ring.push_back((Instant::now(), d));
        while st.ring.len() > self.ring_cap {
            if let Some((at, d)) = st.ring.pop_front() {
                st.evicted_at = Some(at);
                if let Delivered::Message(id, _) = d {
                    st.evicted = Some(id);
                }
            }
        }
    }

    /// Queues a message on every member, in the order of the calls (the
    /// lock is held throughout, and nothing here waits). `id` `None`: a
    /// message that reached this process only.
    pub(crate) fn deliver(&self, id: Option<MessageId>, msg: &Message) {
        let mut st = lock(&self.state);
        if let Some(id) = id {
            if st.last.is_some_and(|last| id <= last) {
                return; // delivered already (a backend catching up)
            }
            st.last = Some(id);
            self.remember(&mut st, Delivered::Message(id, msg.clone()));
        }
        let mut frames = Frames::new(id, msg);
        let limit = self.max_queue_bytes;
        let mut removed = Vec::new();
        for e in &st.members {
            if let (Some(id), Some(skip)) = (id, e.skip_through) {
                if id <= skip {
                    continue;
                }
            }
            let Some(prepared) = frames.get(e.framed) else {
                continue;
            };
            match e.target.offer(prepared, limit) {
                Offered::Queued(_) => {}
                Offered::ClosedSlow => {
                    tracing::warn!(
                        topic = %self.name,
                        member = e.id.get(),
                        limit,
                        "topic member too slow: closing it with 1013"
                    );
                    self.stats.closed_slow.fetch_add(1, Ordering::Relaxed);
                    removed.push(e.id);
                }
                Offered::Gone => removed.push(e.id),
            }
        }
        if !removed.is_empty() {
            st.members.retain(|e| !removed.contains(&e.id));
        }
    }

    /// Sends a gap notice to every resuming member that could be missing
    /// messages in it.
    pub(crate) fn gap(&self, gap: Gap) {
        tracing::warn!(topic = %self.name, %gap, "topic history lost");
        self.stats.gaps.fetch_add(1, Ordering::Relaxed);
        let mut st = lock(&self.state);
        self.remember(&mut st, Delivered::Gap(gap));
        let limit = self.max_queue_bytes;
        let mut notice = None;
        for e in &st.members {
            if !e.framed || gap_seen(gap, e.skip_through).is_none() {
                continue;
            }
            let n = notice.get_or_insert_with(|| {
                PreparedMessage::new(resume::gap_notice(gap)).expect("a text message")
            });
            let _ = e.target.offer(n, limit);
        }
    }

    /// Adds a member that resumes after `from`, replaying what it missed;
    /// `history` is the backend's, fetched when the ring does not reach
    /// back to `from`. Without `from`, the member starts with what was
    /// delivered here since `since` (its handshake), if known.
    ///
    /// A framed member then gets its position (`p <id>`): the last id it
    /// has, or where it starts (`position`, the backend's, when nothing was
    /// delivered here yet).
    fn add(
        &self,
        mut entry: Entry,
        from: Option<MessageId>,
        since: Option<Instant>,
        history: Option<History>,
        position: Option<MessageId>,
    ) {
        let mut st = lock(&self.state);
        let limit = self.max_queue_bytes;
        if let (None, Some(since)) = (from, since) {
            // The client counts as connected from its 101 on, but joins
            // only now: what was delivered in between is its to get, or a
            // gap notice when the ring no longer holds all of it.
            let mut replay: Vec<Delivered> = Vec::new();
            if entry.framed && st.evicted_at.is_some_and(|at| at >= since) {
                let before = st.ring.iter().find_map(|(_, d)| match d {
                    Delivered::Message(id, _) => Some(*id),
                    Delivered::Gap(_) => None,
                });
                // What came before the handshake is not known any more.
                replay.push(Delivered::Gap(Gap {
                    after: MessageId::ZERO,
                    before,
                }));
            }
            replay.extend(
                st.ring
                    .iter()
                    .filter(|(at, d)| {
                        *at >= since && (entry.framed || matches!(d, Delivered::Message(..)))
                    })
                    .map(|(_, d)| d.clone()),
            );
            if !offer_all(&*entry.target, replay, entry.framed, limit) {
                return;
            }
            entry.skip_through = st.last;
        }
        if let Some(from) = from {
            // What to send, in order.
            let mut replay: Vec<Delivered> = Vec::new();
            let mut upto = from;
            if let Some(h) = history {
                if let Some(g) = h.gap {
                    replay.push(Delivered::Gap(g));
                }
                for (id, m) in h.messages {
                    if id > upto {
                        upto = id;
                        replay.push(Delivered::Message(id, m));
                    }
                }
                // The ring must continue where the history ended; if it
                // dropped messages after that, they are lost here.
                if st.evicted.is_some_and(|e| e > upto) {
                    let before = st.ring.iter().find_map(|(_, d)| match d {
                        Delivered::Message(id, _) if *id > upto => Some(*id),
                        _ => None,
                    });
                    replay.push(Delivered::Gap(Gap {
                        after: upto,
                        before,
                    }));
                }
            }
            for (_, d) in &st.ring {
                match d {
                    Delivered::Message(id, m) if *id > upto => {
                        upto = *id;
                        replay.push(Delivered::Message(*id, m.clone()));
                    }
                    Delivered::Gap(g) => {
                        if let Some(g) = gap_seen(*g, Some(upto)) {
                            replay.push(Delivered::Gap(g));
                        }
                    }
                    _ => {}
                }
            }
            if !offer_all(&*entry.target, replay, true, limit) {
                return;
            }
            entry.skip_through = Some(upto.max(st.last.unwrap_or(upto)));
        }
        if entry.framed {
            let at = entry.skip_through.or(st.last).max(position);
            if let Some(at) = at {
                // Told it has everything up to `at`, it must never get an
                // id at or below it: with the backend's position (nothing
                // delivered here yet), messages still on their way to this
                // process may be older than it. They count as before the
                // client's start; sending them after the position would
                // move a client's resume point backwards.
                entry.skip_through = Some(at);
                if let Ok(p) = PreparedMessage::new(resume::position_notice(at)) {
                    if !matches!(entry.target.offer(&p, limit), Offered::Queued(_)) {
                        return;
                    }
                }
            }
        }
        st.members.push(entry);
    }

    /// True when the ring alone can serve a client resuming after `from`.
    fn covers(&self, from: MessageId) -> bool {
        let st = lock(&self.state);
        st.ring.front().is_some_and(|(_, d)| from >= d.key())
    }
}

/// Queues a replay on a joining member: framed with ids and gap notices,
/// or bare (gaps left out). False when the member closed (or was too slow
/// to take its own replay).
fn offer_all(target: &dyn Target, replay: Vec<Delivered>, framed: bool, limit: usize) -> bool {
    for d in replay {
        let msg = match d {
            Delivered::Message(id, m) if framed => resume::frame_message(Some(id), &m),
            Delivered::Message(_, m) => m,
            Delivered::Gap(g) if framed => resume::gap_notice(g),
            Delivered::Gap(_) => continue,
        };
        if let Ok(p) = PreparedMessage::new(msg) {
            if !matches!(target.offer(&p, limit), Offered::Queued(_)) {
                return false;
            }
        }
    }
    true
}

/// The part of `gap` that a member with every message up to `seen` may
/// have missed, if any.
fn gap_seen(gap: Gap, seen: Option<MessageId>) -> Option<Gap> {
    let seen = seen.unwrap_or(MessageId::ZERO);
    if gap.before.is_some_and(|b| b <= seen) {
        return None;
    }
    Some(Gap {
        after: gap.after.max(seen),
        before: gap.before,
    })
}

/// A topic of a [`Hub`](super::Hub): made by
/// [`Hub::topic`](super::Hub::topic), cheap to clone.
///
/// - **Joining** is by the server's code: [`Topic::join`] adds a
///   connection. (The CLI maps the URL path to a topic.)
/// - **Publishing** ([`Topic::publish`]) goes through the hub's backend: the
///   message gets an id, is kept in the topic's history, and reaches the
///   topic's members in every process that shares the backend, each once,
///   in id order.
/// - **Resuming**: a member whose client selected the subprotocol
///   [`tether.resume.v1`](crate::resume::SUBPROTOCOL) gets every message
///   with its id, and on joining, the messages after the `last_id` of its
///   URL, then the live ones, with no duplicate and no gap, or a gap notice
///   when the history no longer reaches back. See [`crate::resume`].
///   Offer the subprotocol on the server
///   ([`ServerBuilder::subprotocols`](crate::ServerBuilder::subprotocols)).
/// - **Slow members** are closed with 1013, as in the hub.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use tether::{hub::Hub, resume, Message, ServerBuilder};
/// let hub = Hub::new();
/// let h = hub.clone();
/// let server = ServerBuilder::new()
///     .subprotocols([resume::SUBPROTOCOL])
///     .serve("127.0.0.1:9001", move |ws| {
///         let prices = h.topic("prices").expect("a topic");
///         async move {
///             let mut member = prices.join(ws).await;
///             while let Some(Ok(_)) = member.recv().await {}
///         }
///     })
///     .await?;
/// hub.topic("prices")?.publish(Message::text("EUR 1.08")).await?;
/// # server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Topic {
    pub(super) core: Arc<TopicCore>,
    pub(super) backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.core.name)
            .field("members", &self.len())
            .finish()
    }
}

impl Topic {
    pub(super) fn sink(&self) -> TopicSink {
        TopicSink {
            core: self.core.clone(),
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The number of members in this process.
    pub fn len(&self) -> usize {
        lock(&self.core.state).members.len()
    }

    /// True when the topic has no member in this process.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of the last message delivered to this process's members.
    pub fn last_id(&self) -> Option<MessageId> {
        self.core.last_id()
    }

    /// Adds a server connection to the topic. When its client selected
    /// [`tether.resume.v1`](crate::resume::SUBPROTOCOL), messages go to it
    /// framed with their ids, and when its URL carries a `last_id`, it first
    /// gets what it missed (from this process's recent messages, or else
    /// from the backend's history), then the live messages, with no
    /// duplicate and no gap; or a gap notice first when the history does
    /// not reach back (or cannot be read). An invalid `last_id` counts as
    /// none.
    ///
    /// Without a `last_id`, a connection accepted by a tether server first
    /// gets the messages delivered in this process since its handshake (the
    /// client counts as connected from the 101 on, and the join comes
    /// later): from the recent messages, or, for a resuming client, after a
    /// gap notice when they no longer hold all of them. So a client sees
    /// every message published after its handshake, or a gap.
    ///
    /// # Cancel safety
    /// Not cancel-safe: a cancelled join drops the connection.
    pub async fn join<S>(&self, ws: WebSocket<S>) -> Member<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let framed = ws.subprotocol() == Some(resume::SUBPROTOCOL);
        let from = if framed {
            ws.request()
                .and_then(|r| resume::last_id_in_target(&r.target))
        } else {
            None
        };
        let id = MemberId(self.core.next_member.fetch_add(1, Ordering::Relaxed));
        let (reader, writer, handshake) = ws.split_with_handshake();
        let since = handshake.upgraded_at;
        let entry = Entry {
            id,
            target: writer.target(),
            framed,
            skip_through: None,
        };
        let history = match from {
            Some(from) if !self.core.covers(from) => Some(
                self.backend
                    .history(&self.core.name, from)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(topic = %self.core.name, error = %e, "cannot read the topic's history");
                        History::new(Vec::new(), Some(Gap { after: from, before: None }))
                    }),
            ),
            _ => None,
        };
        // A resuming client with no message yet learns where it starts, so
        // that its next reconnect resumes from there. Asked of the backend
        // only when nothing was delivered here yet.
        let position = if framed && from.is_none() && self.core.last_id().is_none() {
            self.backend
                .position(&self.core.name)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(topic = %self.core.name, error = %e, "cannot read the topic's position");
                    None
                })
        } else {
            None
        };
        self.core.add(entry, from, since, history, position);
        let group: Arc<dyn Group> = self.core.clone();
        Member::new(id, reader, writer, handshake, Arc::downgrade(&group))
    }

    /// Publishes a text or binary message to the topic's members in every
    /// process that shares the backend (this one included), and returns its
    /// id.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a control message.
    /// [`ErrorKind::Backend`] when the backend is unreachable: the message
    /// was then delivered to this process's members only, without an id
    /// (resuming clients get it framed as `m -`, and it cannot be replayed),
    /// and the hub's [`publish_failures`](super::Hub::publish_failures)
    /// counter went up.
    pub async fn publish(&self, msg: Message) -> Result<MessageId> {
        if !msg.is_data() {
            return Err(Error::msg(
                ErrorKind::Config,
                "only text and binary messages can be published",
            ));
        }
        match self.backend.publish(&self.core.name, &msg).await {
            Ok(id) => Ok(id),
            Err(e) => {
                self.core
                    .stats
                    .publish_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.core.deliver(None, &msg);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
