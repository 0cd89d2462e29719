//! The continuity protocol `tether.resume.v1`: message ids, the resume
//! request and the gap notice. The full description, with a browser client
//! in JavaScript, is in `docs/resume-protocol.md`; in short:
//!
//! - The client offers the subprotocol [`SUBPROTOCOL`] and, when it has seen
//!   a message before, puts the last id in the URL query:
//!   `?last_id=1712345678901-3` ([`LAST_ID_PARAM`]). The server knows the
//!   resume point at handshake time, before any message flows.
//! - A server that selected the subprotocol prefixes every data message
//!   with one line: `m <id>\n` then the payload (a text message stays text,
//!   a binary one binary). `<id>` is a [`MessageId`], or `-` for a message
//!   that has no id (delivered to this server's members only while its
//!   backend was unreachable: it cannot be replayed).
//! - It first replays, in order, the messages after `last_id` that its
//!   history holds, then continues live: no duplicate, no gap.
//! - After that replay it tells the client its position, a text message
//!   `p <id>`: the client has every message up to `<id>` (or was told of
//!   the gap). A client that has not received any message yet learns from
//!   it where to resume from, so what is published while it is away is not
//!   lost after its very first connection either.
//! - When the history no longer reaches back to `last_id` (or cannot be
//!   read), it sends a gap notice first, a text message
//!   `g <after> <before>`: messages after `<after>` and before `<before>`
//!   (an id, or `-` when unknown) may be lost.
//! - Without the subprotocol, messages go out bare, so plain clients work.

use bytes::Bytes;
use std::fmt;
use std::str::FromStr;
use tether_proto::{Message, Utf8Bytes};

/// The subprotocol a client offers to resume (RFC 6455 §1.9).
pub const SUBPROTOCOL: &str = "tether.resume.v1";

/// The URL query parameter that carries the last id the client saw.
pub const LAST_ID_PARAM: &str = "last_id";

/// The id of a published message: unique and totally ordered within its
/// topic, across every server process that shares the backend. Written
/// `<ms>-<seq>` like a Redis stream id (which it is with the Redis backend):
/// a time in milliseconds and a sequence number within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MessageId {
    ms: u64,
    seq: u64,
}

impl MessageId {
    /// The smallest id, before every message.
    pub const ZERO: MessageId = MessageId { ms: 0, seq: 0 };

    /// The id `<ms>-<seq>`.
    pub const fn new(ms: u64, seq: u64) -> Self {
        MessageId { ms, seq }
    }

    /// The milliseconds part.
    pub const fn ms(self) -> u64 {
        self.ms
    }

    /// The sequence part.
    pub const fn seq(self) -> u64 {
        self.seq
    }

    /// The smallest id greater than this one (saturating).
    pub fn successor(self) -> Self {
        match self.seq.checked_add(1) {
            Some(seq) => MessageId { ms: self.ms, seq },
            None => MessageId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An id that is not `<ms>-<seq>` with two decimal numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId;

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid message id (expected <ms>-<seq>)")
    }
}

impl std::error::Error for InvalidId {}

impl FromStr for MessageId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let (ms, seq) = s.split_once('-').ok_or(InvalidId)?;
        // Digits only: no sign, no spaces (u64::from_str accepts a '+').
        let num = |t: &str| {
            if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidId);
            }
            t.parse::<u64>().map_err(|_| InvalidId)
        };
        Ok(MessageId {
            ms: num(ms)?,
            seq: num(seq)?,
        })
    }
}

/// Messages that may have been lost: ids after `after` and before `before`.
/// Reported by a server whose history no longer reaches back to a client's
/// resume point (or lost it when its backend restarted): the application
/// should resynchronize (reload its state) when it sees one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The last id before the gap (the client's resume point).
    pub after: MessageId,
    /// The first id after the gap, when known.
    pub before: Option<MessageId>,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.before {
            Some(b) => write!(
                f,
                "messages after {} and before {b} may be lost",
                self.after
            ),
            None => write!(f, "messages after {} may be lost", self.after),
        }
    }
}

/// What a resuming [`Session`](crate::reconnect::Session) received, in
/// order: [`Session::recv_or_gap`](crate::reconnect::Session::recv_or_gap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text or binary message (its framing removed).
    Message(Message),
    /// The server said messages may have been lost here: resynchronize.
    Gap(Gap),
}

/// One message of a server that selected [`SUBPROTOCOL`], parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// A data message, its framing line removed.
    Message {
        /// Its id; `None` for a message that cannot be replayed.
        id: Option<MessageId>,
        /// The payload, text or binary as sent.
        message: Message,
    },
    /// A gap notice.
    Gap(Gap),
    /// The client's position (`p <id>`): it has every message up to this
    /// id, or was told of the gap. Sent once on joining, after the replay.
    Position(MessageId),
}

/// A message that does not follow [`SUBPROTOCOL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFrame;

impl fmt::Display for InvalidFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message does not follow tether.resume.v1 framing")
    }
}

impl std::error::Error for InvalidFrame {}

fn parse_opt_id(s: &str) -> Result<Option<MessageId>, InvalidFrame> {
    if s == "-" {
        Ok(None)
    } else {
        s.parse().map(Some).map_err(|_| InvalidFrame)
    }
}

impl Frame {
    /// Parses a data message received under [`SUBPROTOCOL`].
    ///
    /// ```
    /// use tether::resume::{Frame, MessageId};
    /// use tether::Message;
    /// let f = Frame::parse(&Message::text("m 5-1\nhello")).unwrap();
    /// assert_eq!(f, Frame::Message { id: Some(MessageId::new(5, 1)), message: Message::text("hello") });
    /// ```
    ///
    /// # Errors
    /// [`InvalidFrame`] for a control message or one without the framing.
    pub fn parse(msg: &Message) -> Result<Frame, InvalidFrame> {
        let data = match msg {
            Message::Text(t) => t.as_bytes().clone(),
            Message::Binary(b) => b.clone(),
            _ => return Err(InvalidFrame),
        };
        // The framing line is short: look for its end in the first bytes
        // only, so a hostile payload costs no scan.
        let head_len = data.len().min(64);
        let line_end = data[..head_len].iter().position(|&b| b == b'\n');
        let (line, rest) = match line_end {
            Some(i) => (&data[..i], Some(i + 1)),
            None => (&data[..head_len], None),
        };
        let line = std::str::from_utf8(line).map_err(|_| InvalidFrame)?;
        if let Some(id) = line.strip_prefix("m ") {
            let start = rest.ok_or(InvalidFrame)?;
            let id = parse_opt_id(id)?;
            let payload: Bytes = data.slice(start..);
            let message = match msg {
                // The line was ASCII and ended at a '\n': the rest is UTF-8.
                Message::Text(_) => {
                    Message::Text(Utf8Bytes::try_from_bytes(payload).map_err(|_| InvalidFrame)?)
                }
                _ => Message::Binary(payload),
            };
            return Ok(Frame::Message { id, message });
        }
        // The notices are one line, nothing after it.
        let notice = rest.is_none() && data.len() <= head_len;
        if let Some(id) = line.strip_prefix("p ") {
            if !notice || !msg.is_text() {
                return Err(InvalidFrame);
            }
            return id.parse().map(Frame::Position).map_err(|_| InvalidFrame);
        }
        if let Some(ids) = line.strip_prefix("g ") {
            if !notice {
                return Err(InvalidFrame);
            }
            let (after, before) = ids.split_once(' ').ok_or(InvalidFrame)?;
            return Ok(Frame::Gap(Gap {
                after: after.parse().map_err(|_| InvalidFrame)?,
                before: parse_opt_id(before)?,
            }));
        }
        Err(InvalidFrame)
    }
}

/// The framing line of a data message with `id`.
pub(crate) fn message_prefix(id: Option<MessageId>) -> String {
    match id {
        Some(id) => format!("m {id}\n"),
        None => "m -\n".to_string(),
    }
}

/// `msg` framed with `id`.
pub(crate) fn frame_message(id: Option<MessageId>, msg: &Message) -> Message {
    let prefix = message_prefix(id);
    match msg {
        Message::Text(t) => Message::text(format!("{prefix}{}", t.as_str())),
        other => {
            let mut v = Vec::with_capacity(prefix.len() + other.len());
            v.extend_from_slice(prefix.as_bytes());
            v.extend_from_slice(other.as_payload());
            Message::binary(v)
        }
    }
}

/// The gap notice for `gap`.
pub(crate) fn gap_notice(gap: Gap) -> Message {
    let before = gap.before.map_or("-".to_string(), |b| b.to_string());
    Message::text(format!("g {} {before}", gap.after))
}

/// The position notice for `id`.
pub(crate) fn position_notice(id: MessageId) -> Message {
    Message::text(format!("p {id}"))
}

/// The resume point in a request target's query (`/path?last_id=...`), if
/// any and valid. An invalid value counts as none.
pub(crate) fn last_id_in_target(target: &str) -> Option<MessageId> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == LAST_ID_PARAM).then(|| v.parse().ok()).flatten()
    })
}

/// `url` with its `last_id` query parameter set to `id` (replacing any).
pub(crate) fn url_with_last_id(url: &str, id: MessageId) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p, q),
        None => (base, ""),
    };
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(LAST_ID_PARAM))
        .collect();
    let param = format!("{LAST_ID_PARAM}={id}");
    pairs.push(&param);
    let mut out = format!("{path}?{}", pairs.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// The topic a request target names: its path without the leading `/`
/// (the query removed). The CLI's `serve --broadcast` uses this mapping.
pub fn topic_of_target(target: &str) -> &str {
    let path = target.split(['?', '#']).next().unwrap_or("");
    path.trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_by_ms_then_seq_and_round_trip() {
        let a: MessageId = "5-9".parse().unwrap();
        let b: MessageId = "6-0".parse().unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "5-9");
        assert_eq!(a.successor(), MessageId::new(5, 10));
        for bad in [
            "",
            "5",
            "5-",
            "-5",
            "+5-1",
            "5-1-2",
            "a-1",
            " 5-1",
            "99999999999999999999999-1",
        ] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn frames_round_trip_text_binary_and_gap() {
        let id = Some(MessageId::new(7, 2));
        let t = frame_message(id, &Message::text("a\nb"));
        assert_eq!(
            Frame::parse(&t).unwrap(),
            Frame::Message {
                id,
                message: Message::text("a\nb")
            }
        );
        let b = frame_message(None, &Message::binary(vec![0u8, 10, 255]));
        assert_eq!(
            Frame::parse(&b).unwrap(),
            Frame::Message {
                id: None,
                message: Message::binary(vec![0u8, 10, 255])
            }
        );
        let g = Gap {
            after: MessageId::new(1, 0),
            before: Some(MessageId::new(9, 0)),
        };
        assert_eq!(Frame::parse(&gap_notice(g)).unwrap(), Frame::Gap(g));
        let g = Gap {
            after: MessageId::new(1, 0),
            before: None,
        };
        assert_eq!(Frame::parse(&gap_notice(g)).unwrap(), Frame::Gap(g));
        let p = MessageId::new(3, 4);
        assert_eq!(
            Frame::parse(&position_notice(p)).unwrap(),
            Frame::Position(p)
        );
    }

    #[test]
    fn unframed_and_hostile_messages_are_refused() {
        for bad in [
            "hello",
            "m 1-1",
            "m x\nhi",
            "g 1-1",
            "g a b",
            "x 1-1\n",
            "g 1-1 2-2\nextra",
            "g 1-1 2-2\n",
            "p",
            "p ",
            "p -",
            "p 1-1 2-2",
            "p 1-1\n",
            "p 1-1\nextra",
        ] {
            assert!(Frame::parse(&Message::text(bad)).is_err(), "{bad:?}");
        }
        assert!(Frame::parse(&Message::binary(vec![b'm'; 10_000])).is_err());
        assert!(Frame::parse(&Message::binary(&b"p 1-1"[..])).is_err());
        assert!(Frame::parse(&Message::Ping(Bytes::new())).is_err());
    }

    #[test]
    fn the_resume_point_travels_in_the_query() {
        let id = MessageId::new(12, 3);
        let u = url_with_last_id("ws://h/feed?a=1&last_id=1-1#x", id);
        assert_eq!(u, "ws://h/feed?a=1&last_id=12-3#x");
        assert_eq!(last_id_in_target("/feed?a=1&last_id=12-3"), Some(id));
        assert_eq!(last_id_in_target("/feed?last_id=bogus"), None);
        assert_eq!(last_id_in_target("/feed"), None);
        assert_eq!(topic_of_target("/prices/eur?last_id=1-1"), "prices/eur");
    }
}
