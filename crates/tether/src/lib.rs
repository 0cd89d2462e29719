//! # tether
//!
//! A WebSocket client and server for tokio (RFC 6455) that stays connected,
//! and says clearly when it cannot.
//!
//! - [`connect`] / [`ClientBuilder`] open a client connection;
//! - [`serve`] / [`ServerBuilder`] / [`accept`] accept connections;
//! - [`WebSocket`] is a `Stream` of [`Message`]s and a `Sink` of them, with
//!   `recv`, `send`, `ping`, `close`, and `split` into a reader and a writer
//!   (the [`WsWriter`] is `Clone`: one per sending task);
//! - [`hub::Hub`] sends one message to many server connections (fan-out),
//!   framed once, with a bounded queue per connection;
//! - `wss://` and TLS servers (feature `tls`, on by default; rustls with
//!   `ring`): `ClientBuilder::add_root_certificate_pem_file`,
//!   `ClientBuilder::danger_accept_invalid_certs` (tests only),
//!   `ServerBuilder::tls_pem`. Cargo features: `tls` (the platform's trust
//!   store), `webpki-roots` (Mozilla's roots compiled in), `rustls` (no
//!   built-in roots).
//!
//! The protocol itself lives in the sans-I/O crate [`tether_proto`]; this
//! crate moves bytes between it and tokio.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> tether::Result<()> {
//! use tether::Message;
//! // An echo server on a free port...
//! let server = tether::serve("127.0.0.1:0", |mut ws| async move {
//!     while let Some(Ok(msg)) = ws.recv().await {
//!         if msg.is_data() && ws.send(msg).await.is_err() {
//!             break;
//!         }
//!     }
//! })
//! .await?;
//! // ...and a client that talks to it.
//! let mut ws = tether::connect(&format!("ws://{}/", server.local_addr())).await?;
//! ws.send(Message::text("hello")).await?;
//! assert_eq!(ws.recv().await.unwrap()?, Message::text("hello"));
//! ws.close(tether::CloseCode::NORMAL, "bye").await?;
//! server.shutdown().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod client;
mod error;
pub mod hub;
pub mod proxy;
mod queue;
pub mod reconnect;
mod secrets;
mod server;
mod socket;
mod tls;
mod transport;
mod userinfo;

pub use client::{connect, ClientBuilder, CredentialsRequest};
pub use error::{BoxError, Error, ErrorKind, Initiator, Result};
pub use server::{accept, serve, Server, ServerBuilder};
pub use socket::{WebSocket, WebSocketConfig, WsReader, WsWriter};
pub use transport::MaybeTlsStream;

pub use bytes::Bytes;
pub use tether_proto;
pub use tether_proto::deflate::{DeflateConfig, DeflateParams};
pub use tether_proto::handshake::{Request, Response};
pub use tether_proto::{CloseCode, CloseFrame, Message, Role, State, Utf8Bytes};
