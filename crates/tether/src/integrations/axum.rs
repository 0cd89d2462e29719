//! WebSockets in an axum 0.8 router (feature `axum`): the
//! [`WebSocketUpgrade`] extractor, in the style of axum's own
//! `axum::extract::ws::WebSocketUpgrade`, giving a tether [`WebSocket`](crate::WebSocket).
//!
//! The extractor checks the request as tether's server does and answers an
//! invalid one with [`UpgradeRejection`] (400, 405, 426 or 505 with a short
//! reason). [`WebSocketUpgrade::on_upgrade`] negotiates with a
//! [`ServerBuilder`]'s settings (subprotocols, permessage-deflate, message
//! size, keepalive...), returns the 101, and runs your handler on a task
//! once the connection is upgraded. In the handler,
//! [`WebSocket::subprotocol`](crate::WebSocket::subprotocol), [`WebSocket::compression`](crate::WebSocket::compression) and
//! [`WebSocket::request`](crate::WebSocket::request) tell what was agreed and asked.
//!
//! Compression is on by default, as in tether's server and in browsers
//! (axum's own extractor has none): a client that offers permessage-deflate
//! gets it, with a 12-bit server window.
//!
//! The accept loop's settings of the builder (`max_connections`,
//! `open_timeout`, TLS) and its request hooks (`process_request`) do not
//! apply here: axum owns the connections, and routing, authentication and
//! health checks are axum's routes, extractors and middleware. The
//! connection must be served by `axum::serve` (which enables upgrades) or
//! hyper with `.with_upgrades()`, over HTTP/1.1.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{extract::State, response::Response, routing::get, Router};
//! use tether::axum::WebSocketUpgrade;
//! use tether::{Message, ServerBuilder};
//!
//! // One ServerBuilder with the settings of every WebSocket of the app.
//! #[derive(Clone)]
//! struct App {
//!     ws: ServerBuilder,
//! }
//!
//! async fn chat(State(app): State<App>, upgrade: WebSocketUpgrade) -> Response {
//!     upgrade
//!         .builder(app.ws)
//!         .protocols(["chat.v1"])
//!         .on_upgrade(|mut ws| async move {
//!             // What was agreed: the subprotocol, the compression.
//!             let greeting = format!("welcome, speaking {:?}", ws.subprotocol());
//!             if ws.send(Message::text(greeting)).await.is_err() {
//!                 return;
//!             }
//!             while let Some(Ok(msg)) = ws.recv().await {
//!                 if msg.is_data() && ws.send(msg).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         })
//! }
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "an ordinary page\n" }))
//!     .route("/health", get(|| async { "ok\n" }))
//!     .route("/ws", get(chat))
//!     .with_state(App {
//!         ws: ServerBuilder::new().max_message_size(Some(64 << 10)),
//!     });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! let mut ws = tether::ClientBuilder::new(format!("ws://{addr}/ws"))
//!     .subprotocol("chat.v1")
//!     .connect()
//!     .await?;
//! assert_eq!(ws.subprotocol(), Some("chat.v1"));
//! assert!(ws.compression().is_some()); // tether's client offers it by default
//! let greeting = ws.recv().await.unwrap()?;
//! assert_eq!(greeting.as_text(), Some("welcome, speaking Some(\"chat.v1\")"));
//! ws.send(Message::text("hello")).await?;
//! assert_eq!(ws.recv().await.unwrap()?, Message::text("hello"));
//! # Ok(()) }
//! ```
//!
//! A page and a WebSocket on one URL: extract `Option<WebSocketUpgrade>`,
//! which is `None` for a request that asks for no upgrade (an invalid
//! upgrade request is still refused):
//!
//! ```
//! use axum::response::{IntoResponse, Response};
//! use tether::axum::WebSocketUpgrade;
//!
//! async fn home(upgrade: Option<WebSocketUpgrade>) -> Response {
//!     match upgrade {
//!         Some(u) => u.on_upgrade(|_ws| async {}),
//!         None => "the page\n".into_response(),
//!     }
//! }
//! # let _: axum::routing::MethodRouter = axum::routing::get(home);
//! ```

pub use super::hyper::UpgradeRejection;
use super::hyper::{accept, check, take_on_upgrade, UpgradedWebSocket};
use crate::error::Error;
use crate::server::ServerBuilder;
use crate::socket::WebSocketConfig;
use ::hyper::upgrade::OnUpgrade;
use axum_core::body::Body;
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use std::fmt;
use std::future::Future;
use tether_proto::deflate::DeflateConfig;
use tether_proto::handshake::Request;

/// The extractor of a WebSocket upgrade request; see the [module
/// docs](self).
///
/// Extracting it checks the request (and takes hyper's pending upgrade out
/// of it); the settings start as [`ServerBuilder::new`]'s, and the
/// negotiation happens in [`WebSocketUpgrade::on_upgrade`].
#[must_use = "the client gets its 101 only from the response of `on_upgrade`"]
pub struct WebSocketUpgrade {
    request: Request,
    on_upgrade: OnUpgrade,
    builder: ServerBuilder,
    on_failed: Option<Box<dyn FnOnce(Error) + Send>>,
}

impl fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("request", &self.request)
            .field("builder", &self.builder)
            .finish_non_exhaustive()
    }
}

impl WebSocketUpgrade {
    /// Replaces the settings with `builder`'s: subprotocols, compression,
    /// message and frame limits, keepalive, close timeout. Settings given
    /// before this call are replaced too; those given after it apply on
    /// top.
    pub fn builder(mut self, builder: ServerBuilder) -> Self {
        self.builder = builder;
        self
    }

    /// The subprotocols this endpoint speaks: the first one the client
    /// offered (in the client's order) is chosen, and sent back in
    /// `Sec-WebSocket-Protocol` (RFC 6455 §4.2.2). As
    /// [`ServerBuilder::subprotocols`].
    pub fn protocols<I: IntoIterator<Item = T>, T: Into<String>>(mut self, protocols: I) -> Self {
        self.builder = self.builder.subprotocols(protocols);
        self
    }

    /// Replaces the socket settings; as [`ServerBuilder::config`].
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.builder = self.builder.config(config);
        self
    }

    /// The largest message accepted (default 1 MiB; `None`: unlimited); as
    /// [`ServerBuilder::max_message_size`].
    pub fn max_message_size(mut self, n: Option<usize>) -> Self {
        self.builder = self.builder.max_message_size(n);
        self
    }

    /// permessage-deflate settings (default: accepted with a 12-bit server
    /// window; `None` turns it off); as [`ServerBuilder::compression`].
    pub fn compression(mut self, c: Option<DeflateConfig>) -> Self {
        self.builder = self.builder.compression(c);
        self
    }

    /// The upgrade request: its path, query and headers (the socket keeps
    /// it too: [`WebSocket::request`](crate::WebSocket::request)).
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn requested_protocols(&self) -> impl Iterator<Item = &str> {
        self.request
            .headers
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// Called, on the upgrade's task, with the error when the connection
    /// could not be upgraded after the 101 (the client went away, or the
    /// server does not allow upgrades). By default the error is logged at
    /// `debug` level with `tracing`.
    pub fn on_failed_upgrade<C>(mut self, callback: C) -> Self
    where
        C: FnOnce(Error) + Send + 'static,
    {
        self.on_failed = Some(Box::new(callback));
        self
    }

    /// Negotiates the upgrade and returns the response to send: the 101,
    /// after which `callback` runs on a new tokio task with the socket.
    /// The socket's [`WebSocket::subprotocol`](crate::WebSocket::subprotocol) and [`WebSocket::compression`](crate::WebSocket::compression)
    /// tell what was agreed.
    ///
    /// The builder's `select_subprotocol` and `process_response` hooks run
    /// here as in tether's own server. Returns a refusal instead (with the
    /// status of [`UpgradeRejection`]) when the negotiation fails: a hook
    /// that answered with another status, or made a mistake (500).
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(UpgradedWebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let WebSocketUpgrade {
            request,
            on_upgrade,
            builder,
            on_failed,
        } = self;
        let (response, socket) = match accept(request, on_upgrade, builder) {
            Ok(accepted) => accepted,
            Err(refused) => return IntoResponse::into_response(refused),
        };
        tokio::spawn(async move {
            match socket.await {
                Ok(ws) => callback(ws).await,
                Err(e) => match on_failed {
                    Some(f) => f(e),
                    None => tracing::debug!(error = %e, "WebSocket upgrade failed"),
                },
            }
        });
        response.map(Body::new)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = UpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request = check(&parts.method, parts.version, &parts.uri, &parts.headers)?;
        let on_upgrade = take_on_upgrade(&mut parts.extensions)?;
        Ok(WebSocketUpgrade {
            request,
            on_upgrade,
            builder: ServerBuilder::new(),
            on_failed: None,
        })
    }
}

/// `Option<WebSocketUpgrade>`: `None` for a request that asks for no
/// upgrade (no `Upgrade: websocket` with `Connection: upgrade`), so that one
/// route can serve a page and a WebSocket; an invalid upgrade request is
/// still refused.
impl<S: Send + Sync> OptionalFromRequestParts<S> for WebSocketUpgrade {
    type Rejection = UpgradeRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if !super::hyper::asks_for_upgrade(&parts.headers) {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        UpgradeRejection::into_response(self).map(Body::new)
    }
}
