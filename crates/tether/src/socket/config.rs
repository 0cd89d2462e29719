//! [`WebSocketConfig`]: the settings of an open WebSocket.

use std::time::Duration;

/// Settings of an open WebSocket, with the defaults of Python `websockets`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebSocketConfig {
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
    pub compression: Option<crate::DeflateConfig>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            max_message_size: Some(1 << 20),
            max_frame_size: None,
            write_buffer_limit: 64 * 1024,
            close_timeout: Some(Duration::from_secs(10)),
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Some(Duration::from_secs(20)),
            compression: Some(crate::DeflateConfig::default()),
        }
    }
}

impl WebSocketConfig {
    /// The defaults of a server ([`ServerBuilder::new`](crate::ServerBuilder::new)):
    /// as [`Default`], but permessage-deflate is accepted with a 12-bit server
    /// window, as websockets does (less memory per connection than 15 bits).
    pub fn server() -> Self {
        WebSocketConfig {
            compression: Some(crate::DeflateConfig::server_default()),
            ..WebSocketConfig::default()
        }
    }

    pub(crate) fn proto(&self) -> tether_proto::ConnectionConfig {
        let msg = self.max_message_size.unwrap_or(usize::MAX);
        let mut c = tether_proto::ConnectionConfig::default()
            .with_max_message_size(msg)
            .with_max_frame_size(self.max_frame_size.unwrap_or(msg));
        c.compression = self.compression;
        c
    }
}

/// The setters that [`ClientBuilder`](crate::ClientBuilder) and
/// [`ServerBuilder`](crate::ServerBuilder) share for the sockets they open,
/// written once: each builder keeps its [`WebSocketConfig`] in a field named
/// `config`, and expands this inside its `impl`.
macro_rules! socket_setters {
    () => {
        /// Replaces the socket settings at once.
        pub fn config(mut self, config: $crate::WebSocketConfig) -> Self {
            self.config = config;
            self
        }

        /// The largest message accepted (default 1 MiB; `None`: unlimited).
        /// Over it, the connection fails with 1009 before the excess is
        /// buffered.
        pub fn max_message_size(mut self, n: Option<usize>) -> Self {
            self.config.max_message_size = n;
            self
        }

        /// The largest frame accepted (default: the message limit).
        pub fn max_frame_size(mut self, n: Option<usize>) -> Self {
            self.config.max_frame_size = n;
            self
        }

        /// Outgoing bytes buffered before `send` waits for the peer to
        /// read them (default 64 KiB).
        pub fn write_buffer_limit(mut self, n: usize) -> Self {
            self.config.write_buffer_limit = n;
            self
        }

        /// Bounds the closing handshake (default 10 s; `None`: wait forever).
        pub fn close_timeout(mut self, t: Option<std::time::Duration>) -> Self {
            self.config.close_timeout = t;
            self
        }

        /// Keepalive ping interval (default 20 s; `None` disables keepalive).
        pub fn ping_interval(mut self, t: Option<std::time::Duration>) -> Self {
            self.config.ping_interval = t;
            self
        }

        /// How long a keepalive ping may wait for its pong before the peer is
        /// declared dead (default 20 s; `None`: never).
        pub fn ping_timeout(mut self, t: Option<std::time::Duration>) -> Self {
            self.config.ping_timeout = t;
            self
        }

        /// permessage-deflate settings; `None` turns compression off. On by
        /// default, as in browsers and websockets: a client offers it, a
        /// server accepts it with a 12-bit server window.
        pub fn compression(mut self, c: Option<$crate::DeflateConfig>) -> Self {
            self.config.compression = c;
            self
        }
    };
}
pub(crate) use socket_setters;
