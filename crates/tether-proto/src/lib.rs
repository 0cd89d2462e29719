//! The sans-I/O core of tether: RFC 6455 WebSocket framing, masking, UTF-8
//! validation, the opening and closing handshakes, and the connection state
//! machine, with no async runtime, no clock and no sockets.
//!
//! Bytes go in, messages and bytes come out. The `tether` crate drives this
//! core over tokio; other I/O layers (blocking sockets, other runtimes,
//! tests) can drive it the same way:
//!
//! ```
//! use tether_proto::{Connection, ConnectionConfig, Message};
//! // A server connection fed a masked client frame: "Hi".
//! let mut server = Connection::server(ConnectionConfig::default());
//! server.receive(&[0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2]);
//! assert_eq!(server.next_event().unwrap(), Some(Message::text("Hi")));
//! // Answer; the bytes to write wait in `transmit()`.
//! server.send(Message::text("Hello")).unwrap();
//! assert_eq!(server.buffered_amount(), 7);
//! ```
//!
//! # Diagnostics
//!
//! A [`Connection`] emits a `tracing` event at TRACE for every frame it
//! receives or queues: target `tether::frame` for the header (direction,
//! opcode, length, FIN, RSV bits, masked), target `tether::payload` for an
//! excerpt of the payload (the first 64 bytes), which may hold secrets and so
//! is left out by a filter such as `tether::frame=trace`. Disabled, they cost
//! a level check per frame.
#![warn(missing_docs, unreachable_pub)]
// The one unsafe operation is `str::from_utf8_unchecked` on text the
// connection already validated: `Utf8Bytes::from_validated`, its caller in
// `connection.rs` and `Utf8Bytes::as_str` opt in with `#[allow(unsafe_code)]`.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

pub mod close;
pub mod config;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
mod http_message;
pub mod mask;
pub mod message;
pub mod outgoing;
pub mod redact;
mod trace;
pub mod utf8;

#[cfg(test)]
mod tests;

pub use close::{CloseCode, CloseFrame};
pub use config::ConnectionConfig;
pub use connection::prepared::{PreparedMessage, Queued};
pub use connection::{Connection, MaskSource, Negotiated, Role, State};
pub use error::{Error, ErrorKind, HandshakeError, ProtocolError};
pub use message::Message;
pub use utf8::Utf8Bytes;
