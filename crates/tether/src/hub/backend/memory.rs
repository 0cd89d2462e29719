//! [`InProcess`]: the default backend, for one server process.

use super::{Backend, BoxFuture, History, TopicSink};
use crate::error::Result;
use crate::resume::{Gap, MessageId};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tether_proto::Message;

/// The default history length of a topic: 1000 messages.
pub const DEFAULT_HISTORY: usize = 1000;

/// The default backend: topics live in this process only. Each topic keeps
/// its last messages in a ring (a bounded history, [`InProcess::history`]
/// long) for resuming clients.
///
/// Ids are `<ms>-<seq>` from the wall clock, like Redis stream ids, and
/// always grow: a client that resumes with an id from before this process
/// started is told it has a gap (the history began after it).
///
/// ```
/// use tether::hub::{Hub, InProcess};
/// let hub = Hub::builder().backend(InProcess::new().history(100)).build();
/// # let _ = hub;
/// ```
pub struct InProcess {
    history: usize,
    /// Ids are above this: the time the backend started.
    origin: MessageId,
    topics: Mutex<HashMap<String, Ring>>,
}

#[derive(Default)]
struct Ring {
    messages: VecDeque<(MessageId, Message)>,
    /// The largest id dropped from the ring.
    evicted: Option<MessageId>,
    last: Option<MessageId>,
    sinks: Vec<TopicSink>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl Default for InProcess {
    fn default() -> Self {
        InProcess::new()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl InProcess {
    /// A backend with a history of [`DEFAULT_HISTORY`] messages per topic.
    pub fn new() -> Self {
        InProcess {
            history: DEFAULT_HISTORY,
            origin: MessageId::new(now_ms(), 0),
            topics: Mutex::new(HashMap::new()),
        }
    }

    /// How many messages each topic keeps for resuming clients (at least 1).
    #[must_use]
    pub fn history(mut self, n: usize) -> Self {
        self.history = n.max(1);
        self
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<String, Ring>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_now(&self, topic: &str, msg: &Message) -> MessageId {
        let mut topics = self.topics();
        let ring = topics.entry(topic.to_string()).or_default();
        let last = ring.last.unwrap_or(self.origin);
        let now = now_ms();
        // As Redis does: the clock's millisecond, or the next sequence
        // number when the clock has not moved on (or went back).
        let id = if now > last.ms() {
            MessageId::new(now, 0)
        } else {
            last.successor()
        };
        ring.last = Some(id);
        ring.messages.push_back((id, msg.clone()));
        while ring.messages.len() > self.history {
            if let Some((old, _)) = ring.messages.pop_front() {
                ring.evicted = Some(old);
            }
        }
        // Delivered under the lock, so that every sink sees one order.
        for sink in &ring.sinks {
            sink.deliver(id, msg);
        }
        id
    }
}

impl Backend for InProcess {
    fn publish<'a>(&'a self, topic: &'a str, msg: &'a Message) -> BoxFuture<'a, Result<MessageId>> {
        let id = self.publish_now(topic, msg);
        Box::pin(async move { Ok(id) })
    }

    fn subscribe(&self, topic: &str, sink: TopicSink) {
        self.topics()
            .entry(topic.to_string())
            .or_default()
            .sinks
            .push(sink);
    }

    fn history<'a>(&'a self, topic: &'a str, after: MessageId) -> BoxFuture<'a, Result<History>> {
        let h = {
            let topics = self.topics();
            let ring = topics.get(topic);
            let messages: Vec<(MessageId, Message)> = ring
                .map(|r| {
                    r.messages
                        .iter()
                        .filter(|(id, _)| *id > after)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let evicted = ring.and_then(|r| r.evicted);
            // Lost: the ring dropped messages after `after`, or `after` is
            // from before this process started.
            let lost = after < self.origin || evicted.is_some_and(|e| e > after);
            let gap = lost.then(|| Gap {
                after,
                before: messages.first().map(|(id, _)| *id),
            });
            History::new(messages, gap)
        };
        Box::pin(async move { Ok(h) })
    }

    fn position<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<MessageId>>> {
        // Every id is above the origin, and a resume from it is no gap.
        let last = self.topics().get(topic).and_then(|r| r.last);
        let pos = last.unwrap_or(self.origin);
        Box::pin(async move { Ok(Some(pos)) })
    }
}
