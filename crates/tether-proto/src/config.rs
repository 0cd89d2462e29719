//! Limits and settings of a connection.

/// Settings of a [`Connection`](crate::Connection). Plain data with the same
/// defaults as Python `websockets`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// The largest message accepted, in bytes (default 1 MiB). A message over
    /// the limit fails the connection with close code 1009 as soon as a frame
    /// header reveals it, before its payload is buffered. `usize::MAX`
    /// disables the limit.
    pub max_message_size: usize,
    /// The largest single frame accepted, in bytes (default: the message
    /// limit). Over the limit: close 1009.
    pub max_frame_size: usize,
    /// Frames sent are split into fragments of at most this size (default:
    /// unlimited, one frame per message).
    pub max_send_frame_size: usize,
    /// Whether a received ping is answered with a pong automatically (default
    /// true). RFC 6455 §5.5.2 requires an answer.
    pub auto_pong: bool,
    /// permessage-deflate settings: what the handshake offers or accepts,
    /// and the level and threshold used once agreed. `None` disables
    /// compression.
    pub compression: Option<crate::deflate::DeflateConfig>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_message_size: 1 << 20,
            max_frame_size: 1 << 20,
            max_send_frame_size: usize::MAX,
            auto_pong: true,
            compression: Some(crate::deflate::DeflateConfig::default()),
        }
    }
}

impl ConnectionConfig {
    /// Sets the message size limit, and the frame limit with it if that was
    /// larger.
    #[must_use]
    pub fn with_max_message_size(mut self, limit: usize) -> Self {
        self.max_message_size = limit;
        self.max_frame_size = limit;
        self
    }

    /// Sets the frame size limit.
    #[must_use]
    pub fn with_max_frame_size(mut self, limit: usize) -> Self {
        self.max_frame_size = limit;
        self
    }
}
