//! WebSockets inside other HTTP servers: the upgrade of a hyper 1 request
//! (`tether::hyper`, feature `hyper`) and an axum extractor (`tether::axum`, feature
//! `axum`). Both negotiate through `ServerBuilder::negotiate` and
//! `Upgrade::into_websocket` (`server/handshake.rs`), as tether's own server
//! does, so the settings, the subprotocol and permessage-deflate behave the
//! same on every path.
//!
//! - `hyper.rs`: validating a request, the 101, `UpgradeFuture`;
//! - `axum.rs`: the `WebSocketUpgrade` extractor on top of `hyper.rs`.

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "hyper")]
pub mod hyper;
