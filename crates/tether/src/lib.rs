//! # tether
//!
//! A WebSocket client and server for tokio (RFC 6455, RFC 7692) that stays
//! connected, and says clearly when it cannot.
//!
//! # A connection that comes back
//!
//! The Rust form of Python websockets' `async for ws in connect(url)`: a
//! stream of connections that reconnects with jittered exponential backoff,
//! retries only what a retry can fix, and hands you the error that it
//! cannot (see [`reconnect`]):
//!
//! ```no_run
//! # async fn run() -> tether::Result<()> {
//! use tether::{reconnect::ReconnectPolicy, ClientBuilder};
//! let mut connections = ClientBuilder::new("wss://feed.example.com/prices")
//!     .reconnecting(ReconnectPolicy::default());
//! while let Some(ws) = connections.next().await {
//!     let mut ws = ws?; // only a fatal error gets here: 401, 404, close 1008...
//!     while let Some(Ok(msg)) = ws.recv().await {
//!         println!("{msg:?}");
//!     }
//! } // a dropped connection: the next turn reconnects, after the backoff delay
//! # Ok(()) }
//! ```
//!
//! # A session that loses nothing
//!
//! [`reconnect::Session`] hides the reconnects altogether: messages sent
//! while disconnected are queued (bounded in bytes) and sent first on the
//! next connection; one cut mid-write is sent again.
//!
//! ```no_run
//! # async fn run() -> tether::Result<()> {
//! use tether::{reconnect::ReconnectPolicy, ClientBuilder, Message};
//! let mut session = ClientBuilder::new("ws://127.0.0.1:9001/chat")
//!     .session(ReconnectPolicy::default())
//!     .start();
//! session.send(Message::text("hello")).await?; // queued until connected
//! while let Some(msg) = session.recv().await {
//!     println!("{msg:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! # Errors you can decide on
//!
//! One error type, [`Error`], with a [`kind`](Error::kind) to match on and
//! the facts a retry policy needs: [`status`](Error::status),
//! [`response`](Error::response) (headers and a bounded body),
//! [`retry_after`](Error::retry_after), [`close_code`](Error::close_code),
//! [`io_kind`](Error::io_kind). "Retry or stop" is one `match`, and the
//! reconnect hook ([`reconnect::ReconnectPolicy::classify`]) is where you
//! write it, like websockets' `process_exception`. Credentials never appear
//! in an error, a `Debug` or a log line.
//!
//! # The rest
//!
//! - [`connect`] / [`ClientBuilder`] open one client connection: headers,
//!   subprotocols, an open timeout, HTTP and SOCKS5 proxies ([`proxy`],
//!   from the environment by default), `wss://` with rustls;
//! - [`serve`] / [`ServerBuilder`] / [`accept`] accept connections, with
//!   caps (`max_connections`, `max_handshakes`, message and frame sizes), a
//!   graceful [`Server::shutdown`], and hooks that see every HTTP request (a
//!   health check on the same port, an async authentication), choose the
//!   subprotocol and amend the 101;
//! - the handshake's [`Request`] and [`Response`] convert to and from the
//!   [`http`] crate's types (re-exported); the client takes a URL, a
//!   [`url::Url`] or an `http::Request` ([`IntoClientRequest`]), and runs
//!   over any stream of yours ([`ClientBuilder::connect_on`]);
//! - [`WebSocket`] is a `Stream` of [`Message`]s and a `Sink` of them (the
//!   traits of `futures-util`; add it to use `StreamExt`/`SinkExt`), with
//!   `recv`, `send`, `ping`, `close`, and `split` into a reader and a
//!   writer (the [`WsWriter`] is `Clone`: one per sending task, and sends
//!   made while the reader waits go out together in one write);
//! - [`hub::Hub`] sends one message to many server connections (fan-out),
//!   framed once, with a bounded queue per connection and a slow member
//!   closed with 1013 rather than messages dropped silently;
//! - permessage-deflate (RFC 7692) is on by default on both sides
//!   ([`DeflateConfig`]; `compression(None)` turns it off); keepalive pings
//!   every 20 s with a 20 s timeout; messages up to 1 MiB by default
//!   (`max_message_size`; tokio-tungstenite allows 64 MiB: set it if you
//!   need more, the default is sized for hostile peers);
//! - WebSockets inside an axum or hyper server, beside its other routes:
//!   the extractor `tether::axum::WebSocketUpgrade` (feature `axum`, for
//!   axum 0.8) and `tether::hyper::upgrade` (feature `hyper`, for hyper 1),
//!   negotiated with a [`ServerBuilder`]'s settings.
//!
//! Cargo features: `tls` (on by default: TLS with the platform's trust
//! store), `webpki-roots` (Mozilla's roots compiled in), `rustls` (TLS with
//! no built-in roots), `hyper` and `axum` (the framework integrations, off
//! by default).
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
mod integrations;
pub mod proxy;
mod queue;
pub mod reconnect;
pub mod resume;
mod secrets;
mod server;
mod socket;
mod tls;
mod transport;
mod userinfo;

pub use client::{connect, ClientBuilder, CredentialsRequest, IntoClientRequest};
pub use error::{BoxError, Error, ErrorKind, Initiator, Result};
#[cfg(feature = "axum")]
pub use integrations::axum;
#[cfg(feature = "hyper")]
pub use integrations::hyper;
pub use server::{accept, serve, Server, ServerBuilder};
pub use socket::{WebSocket, WebSocketConfig, WsReader, WsWriter};
pub use transport::MaybeTlsStream;

pub use bytes::Bytes;
/// The `http` crate, whose `HeaderMap` the handshake types hold and to whose
/// `Request`/`Response` they convert (see [`Request`] and [`Response`]); an
/// `http::Request` is also a client request ([`IntoClientRequest`]).
pub use http;
/// The `rustls` crate (feature `rustls`), at the version
/// [`ClientBuilder::tls_config`] and [`ServerBuilder::tls_config`] take.
#[cfg(feature = "rustls")]
pub use rustls;
pub use tether_proto;
pub use tether_proto::deflate::{DeflateConfig, DeflateParams};
pub use tether_proto::handshake::{ReasonPhrase, Request, Response};
pub use tether_proto::{CloseCode, CloseFrame, Message, Role, State, Utf8Bytes};
/// The `url` crate, re-exported so that a [`url::Url`] given to [`connect`]
/// or [`ClientBuilder::new`] has the version tether takes.
pub use url;

/// The README's Rust snippets, compiled (and the runnable ones run) as doc
/// tests, so that what users copy compiles. One snippet is an axum router:
/// they run with the `axum` feature, as `scripts/test.sh` (all features)
/// does.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The guide for users of Python `websockets`, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/coming-from-python-websockets.md")]
pub struct GuidePythonWebsockets;

/// The guide for users of tokio-tungstenite, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/coming-from-tokio-tungstenite.md")]
pub struct GuideTokioTungstenite;

/// The guide for users of axum's `ws`, compiled as doc tests (feature
/// `axum`).
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../../../docs/coming-from-axum-ws.md")]
pub struct GuideAxumWs;
