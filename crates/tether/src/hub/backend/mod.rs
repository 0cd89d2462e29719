//! Backends of a hub's topics: where a topic's messages get their ids, are
//! kept for resuming clients, and travel between server processes.
//!
//! - `mod.rs`: the [`Backend`] trait, [`TopicSink`], [`History`];
//! - `memory.rs`: [`InProcess`], the default (one process, a ring per topic);
//! - `redis.rs`: [`RedisBackend`] (feature `redis`), many processes.

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::{InProcess, DEFAULT_HISTORY};
#[cfg(feature = "redis")]
pub use redis::{RedisBackend, RedisBackendBuilder, DEFAULT_REDIS_HISTORY};

use super::topic::TopicCore;
use crate::error::Result;
use crate::resume::{Gap, MessageId};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tether_proto::Message;

/// A boxed future, the return type of [`Backend`]'s async methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a hub's topics live: ids, history, and delivery to every process.
///
/// The contract, for each topic:
/// - **One order**: [`publish`](Backend::publish) gives each message an id
///   greater than every id before it in the topic, across all the
///   processes that share the backend.
/// - **Delivery**: every message published by any process reaches the
///   [`TopicSink`] given to [`subscribe`](Backend::subscribe) in every
///   process, in id order. The sink drops what it already has (an id not
///   above its [`last_id`](TopicSink::last_id)), so a backend that catches
///   up after an outage may deliver a message twice; it must never deliver
///   out of order, and must report with [`TopicSink::gap`] what it knows it
///   lost.
/// - **History**: [`history`](Backend::history) returns the messages after
///   an id that it still holds, and says when it no longer reaches back.
///
/// Two implementations: [`InProcess`] (the default) and, with the feature
/// `redis`, [`RedisBackend`].
pub trait Backend: Send + Sync + 'static {
    /// Publishes `msg` (text or binary) on `topic`: records it with a new id
    /// and has it delivered to every subscribed process, this one included
    /// (through the sink, not by the caller). Returns the id.
    ///
    /// # Errors
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the message
    /// could not be recorded (the backend is unreachable): it reached no
    /// one, and the caller delivers it to local members only.
    fn publish<'a>(&'a self, topic: &'a str, msg: &'a Message) -> BoxFuture<'a, Result<MessageId>>;

    /// Starts delivering `topic`'s messages to `sink`. Called once per topic
    /// and hub, when the topic is first used.
    fn subscribe(&self, topic: &str, sink: TopicSink);

    /// The messages of `topic` after `after`, oldest first, as far as the
    /// history holds them; with a [`Gap`] when it cannot tell that it holds
    /// every message after `after`.
    ///
    /// # Errors
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the history
    /// cannot be read.
    fn history<'a>(&'a self, topic: &'a str, after: MessageId) -> BoxFuture<'a, Result<History>>;

    /// Where a client that joins `topic` now starts: an id such that every
    /// message published later has a greater one and
    /// [`history`](Backend::history) after it reports no gap while nothing
    /// was lost (the id of the last message recorded, or a mark before
    /// the first one when there is none). Sent to a resuming client that
    /// has no message yet, so that it can resume after a disconnect.
    ///
    /// The default says it cannot tell (`Ok(None)`): such a client then
    /// learns its position from the first message it gets.
    ///
    /// # Errors
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the backend
    /// cannot be read.
    fn position<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<MessageId>>> {
        let _ = topic;
        Box::pin(async { Ok(None) })
    }
}

/// What a [`Backend`] holds of a topic after some id.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct History {
    /// The messages, in id order.
    pub messages: Vec<(MessageId, Message)>,
    /// Set when messages after the requested id may be missing from
    /// `messages` (trimmed, or lost with the backend's data).
    pub gap: Option<Gap>,
}

impl History {
    /// A history of `messages`, with `gap` when it does not reach back.
    pub fn new(messages: Vec<(MessageId, Message)>, gap: Option<Gap>) -> Self {
        History { messages, gap }
    }
}

/// Where a [`Backend`] delivers one topic's messages in one process: the
/// topic's local members. Cheap to clone.
#[derive(Clone)]
pub struct TopicSink {
    pub(super) core: Arc<TopicCore>,
}

impl std::fmt::Debug for TopicSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicSink")
            .field("topic", &self.core.name())
            .finish_non_exhaustive()
    }
}

impl TopicSink {
    /// The topic's name.
    pub fn topic(&self) -> &str {
        self.core.name()
    }

    /// Delivers a message to the topic's local members, unless its id is
    /// not above [`last_id`](TopicSink::last_id) (it was delivered
    /// already). Never waits.
    pub fn deliver(&self, id: MessageId, msg: &Message) {
        self.core.deliver(Some(id), msg);
    }

    /// Tells the topic's resuming members that messages may have been lost.
    pub fn gap(&self, gap: Gap) {
        self.core.gap(gap);
    }

    /// The id of the last message delivered in this process, if any: where
    /// a backend catches up from after an outage.
    pub fn last_id(&self) -> Option<MessageId> {
        self.core.last_id()
    }
}
