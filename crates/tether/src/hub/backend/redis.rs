//! [`RedisBackend`]: topics shared by many server processes through Redis.
//!
//! Per topic `T` (with the default prefix `tether:`):
//! - `tether:s:T`, a stream (`XADD ... MAXLEN ~ N`): the history; its entry
//!   ids are the message ids;
//! - `tether:o:T`, the id of the stream's first entry ever (`SET NX`): a
//!   resume point older than it means the stream was lost (Redis restarted
//!   without persistence) and the client gets a gap;
//! - `tether:p:T`, the pub/sub channel for live delivery: `<id> <t|b>\n<payload>`.
//!
//! One Lua script does `XADD`, then `SET NX`, then `PUBLISH`: Redis runs it
//! atomically, so the order of the channel is the order of the ids, in
//! every process. Each process subscribes once (`PSUBSCRIBE tether:p:*`)
//! and drops the messages of topics it has no members for.

use super::{Backend, BoxFuture, History, TopicSink};
use crate::error::{Error, ErrorKind, Result};
use crate::reconnect::Backoff;
use crate::resume::{Gap, MessageId};
use bytes::Bytes;
use futures_util::StreamExt;
use rand::SeedableRng;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tether_proto::{Message, Utf8Bytes};
use tokio::sync::Notify;
use tokio::time::{timeout, Instant};

/// The default history length of each topic's stream (`MAXLEN ~`).
pub const DEFAULT_REDIS_HISTORY: usize = 10_000;

/// XADD with a bounded length, the origin mark, then PUBLISH, atomically.
const PUBLISH: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'k', ARGV[2], 'd', ARGV[3])
redis.call('SET', KEYS[2], id, 'NX')
redis.call('PUBLISH', ARGV[4], id .. ' ' .. ARGV[2] .. '\n' .. ARGV[3])
return id
";

/// The origin mark, the largest id trimmed (Redis 7's
/// `max-deleted-entry-id`, 0-0 without a stream) and the first page of
/// entries after an id, read together so that they agree.
const HISTORY: &str = r"
local origin = redis.call('GET', KEYS[2])
local maxdel = '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'max-deleted-entry-id' then maxdel = info[i + 1] end
  end
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local firstid = ''
if #first > 0 then firstid = first[1][1] end
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
return {origin or '', maxdel, entries, firstid}
";

/// Where a joining client starts: the stream's last generated id (every
/// later entry is above it, trimmed or not), or `0-0` when there is no
/// stream yet (see `history`: a resume from `0-0` is from the beginning).
const POSITION: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return info[i + 1] end
  end
end
return '0-0'
";

const PAGE: usize = 1000;

/// Settings of a [`RedisBackend`]; made by [`RedisBackend::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisBackendBuilder {
    url: String,
    prefix: String,
    history: usize,
    backoff: Backoff,
    timeout: Duration,
    ping_interval: Duration,
}

impl RedisBackendBuilder {
    /// The prefix of every key and channel (default `tether:`). It must
    /// not contain the glob characters `*?[]\`.
    pub fn prefix(mut self, p: impl Into<String>) -> Self {
        self.prefix = p.into();
        self
    }

    /// How many messages each topic's stream keeps, about (`MAXLEN ~`:
    /// Redis trims whole nodes, so a few more may stay); default
    /// [`DEFAULT_REDIS_HISTORY`].
    pub fn history(mut self, n: usize) -> Self {
        self.history = n.max(1);
        self
    }

    /// The delays between attempts to reach Redis again (tether's
    /// [`Backoff`], as for WebSockets); default: first retry within 100 ms,
    /// then from 200 ms growing by 1.618 up to 10 s, with jitter.
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.backoff = b;
        self
    }

    /// How long connecting or one command may take before Redis counts as
    /// unreachable (default 2 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// How often the subscription is checked with a `PING` when nothing
    /// else shows it alive (default 10 s). A Redis that does not answer
    /// within [`timeout`](RedisBackendBuilder::timeout) counts as lost and
    /// is reconnected: without it, a silent network partition (no RST, no
    /// FIN) would leave the process subscribed to nothing until TCP gave
    /// up, many minutes later.
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d.max(Duration::from_millis(10));
        self
    }

    /// The backend; it connects in a background task (so it needs a tokio
    /// runtime), and keeps reconnecting while Redis is unreachable.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for an invalid Redis URL or prefix.
    pub fn build(self) -> Result<RedisBackend> {
        if self.prefix.contains(['*', '?', '[', ']', '\\']) {
            return Err(Error::msg(
                ErrorKind::Config,
                "the Redis key prefix must not contain * ? [ ] \\",
            ));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| Error::msg(ErrorKind::Config, "invalid Redis URL").with_source(e))?;
        let shared = Arc::new(Shared {
            client,
            prefix: self.prefix,
            history: self.history,
            timeout: self.timeout,
            ping_interval: self.ping_interval,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            sinks: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            outages: AtomicU64::new(0),
            publish: Script::new(PUBLISH),
            history_script: Script::new(HISTORY),
            position_script: Script::new(POSITION),
        });
        let task = tokio::spawn(supervise(Arc::downgrade(&shared), self.backoff));
        Ok(RedisBackend { shared, task })
    }
}

/// A [`Backend`] that shares topics between server processes through
/// Redis (feature `redis`): pub/sub for live delivery, a stream per topic
/// for history and ids (see the module's key layout in the docs of
/// [`crate::hub`]).
///
/// - **Ids**: a Lua script appends to the topic's stream and publishes the
///   id with the payload in one step, so ids are totally ordered per topic
///   across processes, and every process receives them in that order.
/// - **Each process** delivers each message once per local member, in id
///   order: what it fetches from the stream and what arrives live are
///   merged by id.
/// - **Redis down**: [`Topic::publish`](crate::hub::Topic::publish) fails
///   at once with [`ErrorKind::Backend`] and delivers to local members only
///   (without an id); the subscription comes back by itself with tether's
///   [`Backoff`], and then fetches from each stream what this process
///   missed, so members see no gap for messages that reached Redis. When
///   the stream itself lost messages (trimmed, or Redis restarted without
///   persistence), resuming members get a gap notice. Logged once per
///   outage (a warning when it starts, one when it ends), not per message.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use tether::hub::{Hub, RedisBackend};
/// let redis = RedisBackend::builder("redis://127.0.0.1:6379").history(5000).build()?;
/// let hub = Hub::builder().backend(redis).build();
/// let id = hub.topic("prices")?.publish(tether::Message::text("EUR 1.08")).await?;
/// println!("published as {id}");
/// # Ok(()) }
/// ```
pub struct RedisBackend {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.shared.prefix)
            .field("history", &self.shared.history)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisBackend {
    /// Settings for the Redis server at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder {
            url: url.into(),
            prefix: "tether:".into(),
            history: DEFAULT_REDIS_HISTORY,
            backoff: Backoff {
                initial_max: Duration::from_millis(100),
                min: Duration::from_millis(200),
                factor: 1.618,
                max: Duration::from_secs(10),
                jitter: 0.5,
            },
            timeout: Duration::from_secs(2),
            ping_interval: Duration::from_secs(10),
        }
    }

    /// True while connected to Redis (subscribed, caught up).
    pub fn is_connected(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }

    /// How many times the connection to Redis was lost.
    pub fn outages(&self) -> u64 {
        self.shared.outages.load(Ordering::Relaxed)
    }
}

struct Shared {
    client: redis::Client,
    prefix: String,
    history: usize,
    timeout: Duration,
    ping_interval: Duration,
    /// The command connection while Redis is reachable.
    conn: Mutex<Option<MultiplexedConnection>>,
    up: AtomicBool,
    sinks: Mutex<HashMap<String, TopicSink>>,
    /// A command failed: the supervisor reconnects.
    wake: Notify,
    outages: AtomicU64,
    publish: Script,
    history_script: Script,
    position_script: Script,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn backend_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::msg(ErrorKind::Backend, format!("redis: {what}")).with_source(e)
}

fn unreachable() -> Error {
    Error::msg(
        ErrorKind::Backend,
        "redis unreachable: published to this process's members only",
    )
}

impl Shared {
    fn key(&self, kind: &str, topic: &str) -> String {
        format!("{}{kind}:{topic}", self.prefix)
    }

    fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.up.load(Ordering::Relaxed) {
            return None;
        }
        lock(&self.conn).clone()
    }

    /// A command failed: Redis counts as down until the supervisor is back.
    fn failed(&self) {
        self.up.store(false, Ordering::Relaxed);
        self.wake.notify_one();
    }

    async fn publish(&self, topic: &str, msg: &Message) -> Result<MessageId> {
        let mut conn = self.connection().ok_or_else(unreachable)?;
        let kind = if msg.is_text() { "t" } else { "b" };
        let mut inv = self.publish.prepare_invoke();
        inv.key(self.key("s", topic))
            .key(self.key("o", topic))
            .arg(self.history)
            .arg(kind)
            .arg(msg.as_payload())
            .arg(self.key("p", topic));
        let r: redis::RedisResult<String> =
            match timeout(self.timeout, inv.invoke_async(&mut conn)).await {
                Ok(r) => r,
                Err(_) => {
                    self.failed();
                    return Err(unreachable());
                }
            };
        match r {
            Ok(id) => id
                .parse()
                .map_err(|e| backend_error("XADD returned an invalid id", e)),
            Err(e) => {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    self.failed();
                }
                Err(backend_error("publish failed", e))
            }
        }
    }

    async fn position(&self, topic: &str) -> Result<Option<MessageId>> {
        let mut conn = self.connection().ok_or_else(unreachable)?;
        let mut inv = self.position_script.prepare_invoke();
        inv.key(self.key("s", topic));
        let id: String = timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| unreachable())?
            .map_err(|e| backend_error("reading the position failed", e))?;
        id.parse()
            .map(Some)
            .map_err(|e| backend_error("XINFO returned an invalid id", e))
    }

    async fn history(&self, topic: &str, after: MessageId) -> Result<History> {
        let mut conn = self.connection().ok_or_else(unreachable)?;
        let stream = self.key("s", topic);
        let mut inv = self.history_script.prepare_invoke();
        inv.key(&stream)
            .key(self.key("o", topic))
            .arg(after.to_string())
            .arg(PAGE);
        let v: Value = timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| unreachable())?
            .map_err(|e| backend_error("history failed", e))?;
        let Value::Array(parts) = v else {
            return Err(bad_reply());
        };
        let [origin, maxdel, entries, first] =
            <[Value; 4]>::try_from(parts).map_err(|_| bad_reply())?;
        let first: Option<MessageId> = text(&first).and_then(|s| s.parse().ok());
        let origin: Option<MessageId> = text(&origin).and_then(|s| s.parse().ok());
        let maxdel: MessageId = text(&maxdel)
            .and_then(|s| s.parse().ok())
            .unwrap_or(MessageId::ZERO);
        let mut messages = parse_entries(entries)?;
        let mut page = messages.len();
        // Further pages, bounded: the stream holds about `history` entries.
        while page == PAGE && messages.len() < self.history.saturating_mul(2) + PAGE {
            let from = messages.last().map_or(after, |(id, _)| *id);
            let v: Value = timeout(
                self.timeout,
                redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(format!("({from}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(&mut conn),
            )
            .await
            .map_err(|_| unreachable())?
            .map_err(|e| backend_error("history failed", e))?;
            let more = parse_entries(v)?;
            page = more.len();
            messages.extend(more);
        }
        // Lost: the stream began after `after` (or is gone: Redis
        // restarted), or trimming removed entries after it: Redis 7's
        // max-deleted-entry-id says so after XDEL/XTRIM, and, as `MAXLEN ~`
        // in XADD does not always record it, a stream whose oldest entry
        // is past `after` and is not the first ever was trimmed past the
        // resume point (conservative: when `after` was the very last entry
        // trimmed, nothing was lost, yet a gap is reported).
        let trimmed_past = match (first, origin) {
            (Some(f), Some(o)) => f > after && f != o,
            _ => false,
        };
        // `0-0` is a position from before the stream existed (`position`):
        // from the beginning, so only trimming loses messages for it. (A
        // stream lost with Redis's data while such a client was away goes
        // unnoticed: nothing is left that says it existed.)
        let lost = match origin {
            Some(o) => (after < o && after != MessageId::ZERO) || maxdel > after || trimmed_past,
            None => after != MessageId::ZERO,
        };
        let gap = lost.then(|| Gap {
            after,
            before: messages.first().map(|(id, _)| *id),
        });
        Ok(History::new(messages, gap))
    }
}

fn bad_reply() -> Error {
    Error::msg(ErrorKind::Backend, "redis: unexpected reply")
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    bytes_of(v).and_then(|b| std::str::from_utf8(b).ok())
}

/// A message from its kind (`t` or `b`) and payload; invalid UTF-8 in a
/// text message (written by something else than tether) goes out binary.
fn message(kind: &[u8], data: Bytes) -> Message {
    if kind == b"t" {
        match Utf8Bytes::try_from_bytes(data.clone()) {
            Ok(t) => return Message::Text(t),
            Err(_) => return Message::Binary(data),
        }
    }
    Message::Binary(data)
}

/// XRANGE's reply: `[[id, [field, value, ...]], ...]`. Entries that are not
/// tether's (no `d` field) are skipped.
fn parse_entries(v: Value) -> Result<Vec<(MessageId, Message)>> {
    let Value::Array(entries) = v else {
        return Err(bad_reply());
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Array(parts) = e else {
            return Err(bad_reply());
        };
        let [id, fields] = <[Value; 2]>::try_from(parts).map_err(|_| bad_reply())?;
        let id: MessageId = text(&id)
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad_reply)?;
        let Value::Array(fields) = fields else {
            return Err(bad_reply());
        };
        let (mut kind, mut data) = (None, None);
        for pair in fields.chunks(2) {
            if let [k, v] = pair {
                match bytes_of(k) {
                    Some(b"k") => kind = bytes_of(v).map(<[u8]>::to_vec),
                    Some(b"d") => data = bytes_of(v).map(Bytes::copy_from_slice),
                    _ => {}
                }
            }
        }
        if let (Some(kind), Some(data)) = (kind, data) {
            out.push((id, message(&kind, data)));
        }
    }
    Ok(out)
}

/// A live message: `<id> <t|b>\n<payload>`.
fn parse_live(payload: &[u8]) -> Option<(MessageId, Message)> {
    let head = &payload[..payload.len().min(64)];
    let nl = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..nl]).ok()?;
    let (id, kind) = line.split_once(' ')?;
    let id = id.parse().ok()?;
    let data = Bytes::copy_from_slice(&payload[nl + 1..]);
    Some((id, message(kind.as_bytes(), data)))
}

impl Backend for RedisBackend {
    fn publish<'a>(&'a self, topic: &'a str, msg: &'a Message) -> BoxFuture<'a, Result<MessageId>> {
        Box::pin(self.shared.publish(topic, msg))
    }

    fn subscribe(&self, topic: &str, sink: TopicSink) {
        lock(&self.shared.sinks).insert(topic.to_string(), sink);
    }

    fn history<'a>(&'a self, topic: &'a str, after: MessageId) -> BoxFuture<'a, Result<History>> {
        Box::pin(self.shared.history(topic, after))
    }

    fn position<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<MessageId>>> {
        Box::pin(self.shared.position(topic))
    }
}

/// Keeps the connection to Redis: connects, subscribes, catches up, then
/// delivers live messages until the connection is lost; then again after
/// tether's backoff delay. Logs once when an outage starts and once when
/// it ends.
async fn supervise(shared: Weak<Shared>, backoff: Backoff) {
    let mut rng = rand::rngs::SmallRng::from_entropy();
    let mut failures: u32 = 0;
    let mut down_since: Option<Instant> = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        match connect_and_run(&s, &mut down_since).await {
            Ok(()) => {
                // Was connected, then lost: a new outage.
                failures = 0;
                s.outages.fetch_add(1, Ordering::Relaxed);
                down_since = Some(Instant::now());
                tracing::warn!(
                    "redis connection lost: publishing to local members only until it is back"
                );
            }
            Err(e) => {
                if down_since.is_none() {
                    down_since = Some(Instant::now());
                    s.outages.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "redis unreachable: publishing to local members only, retrying with backoff");
                } else {
                    tracing::debug!(error = %e, attempt = failures, "redis still unreachable");
                }
            }
        }
        s.up.store(false, Ordering::Relaxed);
        *lock(&s.conn) = None;
        let delay = backoff.delay(failures, &mut rng);
        failures = failures.saturating_add(1);
        drop(s);
        tokio::time::sleep(delay).await;
    }
}

/// One connection's life. `Err` when it could not be established; `Ok`
/// when it was, and then was lost.
async fn connect_and_run(s: &Shared, down_since: &mut Option<Instant>) -> Result<()> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(s.timeout)
        .set_response_timeout(s.timeout);
    let conn = s
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| backend_error("cannot connect", e))?;
    let mut pubsub = timeout(s.timeout, s.client.get_async_pubsub())
        .await
        .map_err(|_| unreachable())?
        .map_err(|e| backend_error("cannot connect", e))?;
    // Subscribe before catching up, so nothing falls in between: what
    // arrives meanwhile waits in the connection and is merged by id.
    timeout(s.timeout, pubsub.psubscribe(format!("{}p:*", s.prefix)))
        .await
        .map_err(|_| unreachable())?
        .map_err(|e| backend_error("cannot subscribe", e))?;
    *lock(&s.conn) = Some(conn);
    s.up.store(true, Ordering::Relaxed);
    // Catch up: what each topic missed while this process was away.
    let sinks: Vec<(String, TopicSink)> = lock(&s.sinks)
        .iter()
        .map(|(t, k)| (t.clone(), k.clone()))
        .collect();
    for (topic, sink) in sinks {
        let Some(last) = sink.last_id() else { continue };
        let h = s.history(&topic, last).await?;
        if let Some(g) = h.gap {
            sink.gap(g);
        }
        for (id, m) in &h.messages {
            sink.deliver(*id, m);
        }
    }
    if let Some(since) = down_since.take() {
        tracing::warn!(
            outage = ?since.elapsed(),
            "redis reachable again: subscribed and caught up from the streams"
        );
    }
    let channel_prefix = format!("{}p:", s.prefix);
    let (mut control, mut stream) = pubsub.split();
    // Keepalive: a message received proves the subscription alive; after
    // `ping_interval` without one, a PING must be answered in time.
    let mut last_heard = Instant::now();
    loop {
        let ping_at = last_heard + s.ping_interval;
        tokio::select! {
            () = tokio::time::sleep_until(ping_at) => {
                let pong = timeout(s.timeout, control.ping::<Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    tracing::debug!("redis did not answer a ping on the subscription in time");
                    return Ok(());
                }
                last_heard = Instant::now();
            }
            m = stream.next() => {
                let Some(m) = m else { return Ok(()) };
                last_heard = Instant::now();
                let Some(topic) = m.get_channel_name().strip_prefix(&channel_prefix) else {
                    continue;
                };
                let sink = lock(&s.sinks).get(topic).cloned();
                let Some(sink) = sink else { continue };
                match parse_live(m.get_payload_bytes()) {
                    Some((id, msg)) => sink.deliver(id, &msg),
                    None => tracing::debug!(topic, "ignored a malformed message on the channel"),
                }
            }
            _ = s.wake.notified() => {
                if !s.up.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
        }
    }
}
