//! [`Config`]: the settings of an open WebSocket.

use std::time::Duration;

/// Settings of an open WebSocket, with the defaults of Python `websockets`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The largest message accepted (default 1 MiB). Over it, the connection
    /// fails with close code 1009 before the excess is buffered. `None`: no limit.
    pub max_message_size: Option<usize>,
    /// The largest frame accepted (default: `max_message_size`).
    pub max_frame_size: Option<usize>,
    /// Outgoing bytes buffered before `send` waits for the transport to drain
    /// them (default 64 KiB): backpressure instead of unbounded memory.
    pub write_buffer_limit: usize,
    /// How long the closing handshake may take (default 10 s). `None`: wait forever.
    pub close_timeout: Option<Duration>,
    /// How often to send a keepalive ping (default 20 s, as websockets).
    /// `None` disables keepalive.
    pub ping_interval: Option<Duration>,
    /// How long to wait for the pong (default 20 s). Without it in time the
    /// peer is declared dead: the connection fails with close code 1011 and
    /// [`ErrorKind::KeepaliveTimeout`](crate::ErrorKind::KeepaliveTimeout), without waiting for a closing
    /// handshake. `None`: pings are sent but never time out.
    pub ping_timeout: Option<Duration>,
    /// permessage-deflate (RFC 7692): offered by clients and accepted by
    /// servers by default, as browsers and websockets do. `None` turns it
    /// off. [`ServerBuilder`](crate::ServerBuilder) uses a 12-bit window.
    pub compression: Option<tether_proto::deflate::DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: Some(1 << 20),
            max_frame_size: None,
            write_buffer_limit: 64 * 1024,
            close_timeout: Some(Duration::from_secs(10)),
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Some(Duration::from_secs(20)),
            compression: Some(tether_proto::deflate::DeflateConfig::default()),
        }
    }
}

impl Config {
    pub(crate) fn proto(&self) -> tether_proto::Config {
        let msg = self.max_message_size.unwrap_or(usize::MAX);
        let mut c = tether_proto::Config::default()
            .with_max_message_size(msg)
            .with_max_frame_size(self.max_frame_size.unwrap_or(msg));
        c.compression = self.compression;
        c
    }
}
