//! Messages as the application sees them.

use crate::close::{CloseCode, CloseFrame};
use bytes::Bytes;

// Kept here too: `Utf8Bytes` was defined in this module before it moved to
// `utf8`, next to the validator.
pub use crate::utf8::Utf8Bytes;

/// A WebSocket message (RFC 6455 §5.6 data frames, §5.5 control frames),
/// whole: fragments are joined before a message is handed out, and split
/// (when asked) on the way out.
///
/// - Payloads are [`Bytes`] (text is [`Utf8Bytes`], checked UTF-8): cloning
///   a message is cheap, and a message received on one connection can be
///   sent on many without a copy.
/// - Received pings are answered by the connection itself, and are still
///   handed out (as `Ping`) for those who want to see them; pongs answer
///   the keepalive pings.
/// - A `Close` is the last message a connection yields; answering it is
///   done for you. Use [`Message::close_code`] to read its code (1005 when
///   the frame had none).
///
/// ```
/// use tether_proto::{Message, CloseCode};
/// let m = Message::text("hello");
/// assert!(m.is_data() && m.is_text());
/// assert_eq!(m.as_text(), Some("hello"));
/// let bin = Message::binary(vec![1u8, 2, 3]);
/// assert_eq!(bin.len(), 3);
/// assert_eq!(Message::Close(None).close_code(), Some(CloseCode::NO_STATUS));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; at most 125 bytes. Received pings are answered automatically.
    Ping(Bytes),
    /// A pong; at most 125 bytes.
    Pong(Bytes),
    /// A close frame. `None` when the frame carried no status code (reported
    /// as 1005 by [`Message::close_code`]).
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<Utf8Bytes>) -> Self {
        Message::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Message::Binary(b.into())
    }

    /// True for text and binary messages.
    pub fn is_data(&self) -> bool {
        matches!(self, Message::Text(_) | Message::Binary(_))
    }

    /// True for a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// True for a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Message::Binary(_))
    }

    /// True for a close message.
    pub fn is_close(&self) -> bool {
        matches!(self, Message::Close(_))
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// The payload bytes of any message (the close payload is not re-encoded:
    /// this returns the reason's bytes for a close).
    pub fn as_payload(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b,
            Message::Close(Some(c)) => c.reason.as_bytes(),
            Message::Close(None) => &[],
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_payload().len()
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The close code of a close message (1005 when the frame had none).
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Message::Close(Some(c)) => Some(c.code),
            Message::Close(None) => Some(CloseCode::NO_STATUS),
            _ => None,
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::Text(s.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::Binary(b.into())
    }
}
