//! WebSockets from a hyper 1 server (feature `hyper`).
//!
//! [`upgrade`] checks an upgrade request (RFC 6455 §4.2.1) and negotiates
//! it with a [`ServerBuilder`]'s settings, exactly as tether's own server
//! does: the subprotocol ([`ServerBuilder::subprotocols`]), permessage-deflate
//! ([`ServerBuilder::compression`]) and the socket settings (message size,
//! keepalive, close timeout...). It returns the `101 Switching Protocols`
//! response for your service to return, and an [`UpgradeFuture`] that
//! resolves to the [`WebSocket`] once hyper has sent that response and
//! handed over the connection. The socket knows what was agreed:
//! [`WebSocket::subprotocol`], [`WebSocket::compression`], and
//! [`WebSocket::request`] (the path and headers of the upgrade request).
//!
//! An invalid request gets an [`UpgradeRejection`], which holds the response
//! to send instead: 405 for a method other than GET, 426 for a GET that asks
//! for no upgrade (a browser opening the WebSocket's URL) or for a
//! `Sec-WebSocket-Version` other than 13, 400 for a missing or invalid
//! header, 505 for a version of HTTP other than 1.1.
//!
//! What applies of the builder: the subprotocols, the compression and the
//! socket settings. What does not: the accept loop's settings
//! (`max_connections`, `max_handshakes`, `open_timeout`, TLS), which belong
//! to the server that owns the connections (hyper's), and the request hooks
//! (`process_request`): route and authenticate with your server's own tools
//! before calling [`upgrade`].
//!
//! The connection must be served with upgrades enabled
//! (`hyper::server::conn::http1::Builder::serve_connection(...).with_upgrades()`),
//! over HTTP/1.1: HTTP/2's extended CONNECT (RFC 8441) is not supported.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use http_body_util::Full;
//! use hyper::{body::Incoming, server::conn::http1, service::service_fn};
//! use hyper_util::rt::TokioIo;
//! use tether::{Bytes, Message, ServerBuilder};
//!
//! async fn route(
//!     mut req: http::Request<Incoming>,
//!     settings: ServerBuilder,
//! ) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
//!     if req.uri().path() != "/ws" {
//!         return Ok(http::Response::new(Full::from("an ordinary page\n")));
//!     }
//!     match tether::hyper::upgrade(&mut req, &settings) {
//!         Ok((response, socket)) => {
//!             tokio::spawn(async move {
//!                 let Ok(mut ws) = socket.await else { return };
//!                 while let Some(Ok(msg)) = ws.recv().await {
//!                     if msg.is_data() && ws.send(msg).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             });
//!             Ok(response)
//!         }
//!         // 400, 405, 426...: the reason, for the client to read.
//!         Err(refused) => Ok(refused.into_response()),
//!     }
//! }
//!
//! let settings = ServerBuilder::new().subprotocols(["chat.v1"]);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((tcp, _)) = listener.accept().await {
//!         let settings = settings.clone();
//!         let service = service_fn(move |req| route(req, settings.clone()));
//!         tokio::spawn(
//!             http1::Builder::new()
//!                 .serve_connection(TokioIo::new(tcp), service)
//!                 .with_upgrades(), // without it, the upgrade fails
//!         );
//!     }
//! });
//!
//! // tether's client offers permessage-deflate by default: both ends agree.
//! let mut ws = tether::ClientBuilder::new(format!("ws://{addr}/ws"))
//!     .subprotocol("chat.v1")
//!     .connect()
//!     .await?;
//! assert_eq!(ws.subprotocol(), Some("chat.v1"));
//! assert!(ws.compression().is_some());
//! ws.send(Message::text("hello")).await?;
//! assert_eq!(ws.recv().await.unwrap()?, Message::text("hello"));
//! # Ok(()) }
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::server::ServerBuilder;
use crate::socket::WebSocket;
use ::hyper::upgrade::{OnUpgrade, Upgraded};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tether_proto::handshake::{header_has_token, Request, Response, ServerHandshake};
use tether_proto::HandshakeError;

/// The [`WebSocket`] that an upgrade through hyper gives: over hyper's
/// [`Upgraded`] connection, adapted to tokio's I/O traits.
pub type UpgradedWebSocket = WebSocket<TokioIo<Upgraded>>;

/// True when `req` asks for a WebSocket upgrade: its `Upgrade` header holds
/// `websocket` and its `Connection` header holds `upgrade` (RFC 6455 §4.1,
/// case-insensitively, in any of their field lines). Such a request may
/// still be invalid; [`upgrade`] says why.
///
/// Use it to serve a page and a WebSocket on the same URL:
///
/// ```
/// let plain = http::Request::get("/").body(()).unwrap();
/// assert!(!tether::hyper::is_upgrade_request(&plain));
/// let ws = http::Request::get("/")
///     .header("connection", "keep-alive, Upgrade")
///     .header("upgrade", "websocket")
///     .body(())
///     .unwrap();
/// assert!(tether::hyper::is_upgrade_request(&ws));
/// ```
pub fn is_upgrade_request<B>(req: &http::Request<B>) -> bool {
    asks_for_upgrade(req.headers())
}

pub(super) fn asks_for_upgrade(headers: &HeaderMap) -> bool {
    header_has_token(headers, "upgrade", "websocket")
        && header_has_token(headers, "connection", "upgrade")
}

/// Checks the upgrade request `req`, negotiates it with `builder`'s
/// settings, and takes hyper's pending upgrade out of the request's
/// extensions.
///
/// Returns the 101 response, which your service must return for the upgrade
/// to happen, and the future of the socket, which resolves once hyper has
/// sent the 101 (spawn a task to await it: it cannot complete before your
/// service has returned the response). The future holds everything agreed:
/// await it even if you only want to know the subprotocol.
///
/// See the [module docs](self) for an example.
///
/// # Errors
/// An [`UpgradeRejection`] holding the response to send instead, when the
/// request is not a valid WebSocket upgrade (400, 405, 426, 505), or when
/// hyper left no pending upgrade in the request (500: a request that did not
/// come from a hyper server, or one taken out already).
pub fn upgrade<B>(
    req: &mut http::Request<B>,
    builder: &ServerBuilder,
) -> Result<(http::Response<Full<Bytes>>, UpgradeFuture), UpgradeRejection> {
    let request = check(req.method(), req.version(), req.uri(), req.headers())?;
    let on_upgrade = take_on_upgrade(req.extensions_mut())?;
    accept(request, on_upgrade, builder.clone())
}

/// Checks an upgrade request (the checks of tether's own server, and the
/// HTTP version, which hyper parsed), and turns it into tether's
/// [`Request`].
pub(super) fn check(
    method: &Method,
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Request, UpgradeRejection> {
    // RFC 6455 §4.1: "the HTTP version MUST be at least 1.1"; a WebSocket
    // over HTTP/2 is an extended CONNECT (RFC 8441), not supported here.
    if version != Version::HTTP_11 {
        return Err(UpgradeRejection::from_error(
            HandshakeError::VersionNotSupported,
        ));
    }
    let request = to_tether_request(method, uri, headers);
    match ServerHandshake::validate(&request) {
        Ok(_) => Ok(request),
        Err(e) if method == Method::GET && !asks_for_upgrade(headers) => {
            Err(UpgradeRejection::upgrade_required(e))
        }
        Err(e) => Err(UpgradeRejection::from_error(e)),
    }
}

/// hyper's pending upgrade, taken out of the request so that the socket's
/// future owns it.
pub(super) fn take_on_upgrade(
    extensions: &mut http::Extensions,
) -> Result<OnUpgrade, UpgradeRejection> {
    extensions.remove::<OnUpgrade>().ok_or_else(|| {
        let error = Error::msg(
            ErrorKind::Config,
            "the request holds no pending upgrade: serve the connection with hyper and \
             `.with_upgrades()`",
        );
        UpgradeRejection {
            error,
            response: Box::new(Response::with_body(
                500,
                "This server cannot upgrade this connection.\n",
            )),
        }
    })
}

/// Negotiates a checked request: the 101 and the future of the socket.
pub(super) fn accept(
    request: Request,
    on_upgrade: OnUpgrade,
    builder: ServerBuilder,
) -> Result<(http::Response<Full<Bytes>>, UpgradeFuture), UpgradeRejection> {
    // `check` validated the request already; `negotiate` validates again
    // (cheaply) on its way to the subprotocol and compression.
    let upgrade = builder
        .negotiate(&request)
        .map_err(UpgradeRejection::from_error)?;
    let response = to_http_response(&upgrade.response);
    let future = UpgradeFuture {
        on_upgrade,
        pending: Some(Box::new(Pending {
            upgrade,
            builder,
            request,
        })),
    };
    Ok((response, future))
}

/// The future of the [`WebSocket`], from [`upgrade`]: resolves once hyper
/// has sent the 101 and handed over the connection.
///
/// # Errors
/// [`ErrorKind::Connect`] when the connection could not be upgraded: the
/// client went away before the 101 was sent, the service answered with
/// another response, or the connection is not served
/// `.with_upgrades()`.
///
/// # Cancel safety
/// Dropping it drops the connection once hyper hands it over.
#[must_use = "the WebSocket exists only once this future is awaited"]
pub struct UpgradeFuture {
    on_upgrade: OnUpgrade,
    /// What the socket is built from; `None` once it resolved.
    pending: Option<Box<Pending>>,
}

struct Pending {
    upgrade: crate::server::Upgrade,
    builder: ServerBuilder,
    request: Request,
}

impl fmt::Debug for UpgradeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeFuture")
            .field("request", &self.pending.as_ref().map(|p| &p.request))
            .finish_non_exhaustive()
    }
}

impl Future for UpgradeFuture {
    type Output = Result<UpgradedWebSocket>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is Unpin (OnUpgrade is a shared receiver).
        let this = self.get_mut();
        let upgraded = match Pin::new(&mut this.on_upgrade).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        let Some(pending) = this.pending.take() else {
            return Poll::Ready(Err(Error::msg(
                ErrorKind::Config,
                "UpgradeFuture polled after it completed",
            )));
        };
        Poll::Ready(match upgraded {
            // hyper's Upgraded replays the bytes it read past the request
            // (a client may send its first frames right behind it), so
            // nothing is left over here.
            Ok(io) => {
                let Pending {
                    upgrade,
                    builder,
                    request,
                } = *pending;
                Ok(upgrade.into_websocket(&builder, TokioIo::new(io), Bytes::new(), request))
            }
            Err(e) => Err(Error::msg(
                ErrorKind::Connect,
                "the connection could not be upgraded to a WebSocket",
            )
            .with_source(e)),
        })
    }
}

/// A request that cannot be upgraded, with the response to send instead:
/// [`UpgradeRejection::into_response`] (with the feature `axum`, it is an
/// `IntoResponse`, and the rejection of the extractor).
pub struct UpgradeRejection {
    error: Error,
    /// Boxed: a rejection is two pointers wide, so the `Result`s that carry
    /// one stay small.
    response: Box<Response>,
}

impl UpgradeRejection {
    /// A refusal from a handshake error: the response of tether's own
    /// server for it.
    fn from_error(e: HandshakeError) -> Self {
        let mut response = ServerHandshake::reject(&e);
        // RFC 9110 §15.5.6: a 405 lists the methods that are allowed.
        if response.status == 405 {
            response = response.header("allow", "GET");
        }
        UpgradeRejection {
            error: Error::from(e),
            response: Box::new(response),
        }
    }

    /// A GET without `Upgrade: websocket` (a browser opening a WebSocket's
    /// URL): 426 Upgrade Required, which MUST name the protocol to upgrade
    /// to (RFC 9110 §15.5.22), with `Connection: upgrade` beside it
    /// (§7.8).
    fn upgrade_required(e: HandshakeError) -> Self {
        let response = Response::with_body(
            426,
            "This URL serves a WebSocket: connect with a WebSocket client.\n",
        )
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-version", "13");
        UpgradeRejection {
            error: Error::from(e),
            response: Box::new(response),
        }
    }

    /// The status of the response: 400, 405, 426, 500 or 505.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.response.status).unwrap_or(StatusCode::BAD_REQUEST)
    }

    /// Why the request was refused ([`ErrorKind::Handshake`], or
    /// [`ErrorKind::Config`] when hyper left no pending upgrade).
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The response to send: the status, a short plain-text reason, and
    /// for 426 the `Upgrade` and `Sec-WebSocket-Version` headers the client
    /// needs.
    pub fn into_response(self) -> http::Response<Full<Bytes>> {
        to_http_response(&self.response)
    }
}

impl fmt::Debug for UpgradeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeRejection")
            .field("status", &self.response.status)
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for UpgradeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WebSocket upgrade refused with HTTP {}",
            self.response.status
        )
    }
}

impl std::error::Error for UpgradeRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

// The conversions between `http`'s types and tether's (kept private here;
// tether's own handshake reads and writes raw HTTP/1.1).

fn to_tether_request(method: &Method, uri: &Uri, headers: &HeaderMap) -> Request {
    Request {
        method: method.as_str().to_string(),
        // The request target in origin form (RFC 9112 §3.2.1), as tether's
        // server sees it; hyper keeps an absolute-form target whole.
        target: uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        headers: headers.clone(),
    }
}

fn to_http_response(r: &Response) -> http::Response<Full<Bytes>> {
    let mut out = http::Response::new(Full::new(r.body.clone()));
    // tether builds only statuses it knows; 500 would only hide a bug.
    *out.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *out.headers_mut() = r.headers.clone();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, version: Version, headers: &[(&str, &str)]) -> http::Request<()> {
        let mut b = http::Request::builder()
            .method(method)
            .uri("/chat?room=1")
            .version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    const UPGRADE: &[(&str, &str)] = &[
        ("host", "example.com"),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        UPGRADE
            .iter()
            .copied()
            .filter(|(k, _)| *k != name)
            .collect()
    }

    fn refusal(mut req: http::Request<()>) -> http::Response<Full<Bytes>> {
        match upgrade(&mut req, &ServerBuilder::new()) {
            Ok(_) => panic!("{req:?} was accepted"),
            Err(e) => {
                let status = e.status();
                let r = e.into_response();
                assert_eq!(r.status(), status);
                r
            }
        }
    }

    #[test]
    fn a_plain_get_is_told_to_upgrade_with_426() {
        let r = refusal(request("GET", Version::HTTP_11, &[("host", "example.com")]));
        assert_eq!(r.status(), 426);
        assert_eq!(r.headers()["upgrade"], "websocket");
        assert_eq!(r.headers()["sec-websocket-version"], "13");
        // An Upgrade naming another protocol is not a WebSocket request either.
        let mut h = without("upgrade");
        h.push(("upgrade", "h2c"));
        assert_eq!(refusal(request("GET", Version::HTTP_11, &h)).status(), 426);
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        let r = refusal(request("POST", Version::HTTP_11, UPGRADE));
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "GET");
        // A POST that asks for no upgrade at all is no WebSocket request:
        // 426, as tether's own server answers it.
        assert_eq!(
            refusal(request("POST", Version::HTTP_11, &[])).status(),
            426
        );
    }

    #[test]
    fn invalid_upgrades_get_the_status_of_tethers_server() {
        let mut v12 = without("sec-websocket-version");
        v12.push(("sec-websocket-version", "12"));
        let r = refusal(request("GET", Version::HTTP_11, &v12));
        assert_eq!(r.status(), 426);
        assert_eq!(r.headers()["sec-websocket-version"], "13");
        for name in ["sec-websocket-key", "host"] {
            let r = refusal(request("GET", Version::HTTP_11, &without(name)));
            assert_eq!(r.status(), 400, "without {name}");
        }
        // Without `Connection: upgrade`, `Upgrade` is no request to upgrade
        // (RFC 9110 §7.8): the client is told what to send.
        let r = refusal(request("GET", Version::HTTP_11, &without("connection")));
        assert_eq!(r.status(), 426);
        assert_eq!(r.headers()["connection"], "upgrade");
        // RFC 6455 §4.1: HTTP/1.1 at least; HTTP/2 needs RFC 8441.
        for v in [Version::HTTP_10, Version::HTTP_2] {
            assert_eq!(refusal(request("GET", v, UPGRADE)).status(), 505, "{v:?}");
        }
    }

    #[test]
    fn a_valid_request_without_hypers_upgrade_is_a_500() {
        let mut req = request("GET", Version::HTTP_11, UPGRADE);
        let e = upgrade(&mut req, &ServerBuilder::new()).unwrap_err();
        assert_eq!(e.status(), 500);
        assert_eq!(e.error().kind(), ErrorKind::Config);
    }

    #[test]
    fn rejections_say_why_in_their_error() {
        let mut req = request("GET", Version::HTTP_11, &without("sec-websocket-key"));
        let e = upgrade(&mut req, &ServerBuilder::new()).unwrap_err();
        assert_eq!(e.error().kind(), ErrorKind::Handshake);
        assert_eq!(e.to_string(), "WebSocket upgrade refused with HTTP 400");
        let cause = crate::error::chain(&e);
        assert!(cause.contains("missing Sec-WebSocket-Key"), "{cause}");
    }

    #[test]
    fn the_request_keeps_its_target_and_headers() {
        let req = request("GET", Version::HTTP_11, UPGRADE);
        let r = check(req.method(), req.version(), req.uri(), req.headers()).unwrap();
        assert_eq!(r.target, "/chat?room=1");
        assert_eq!(r.path(), "/chat");
        assert_eq!(r.header("host"), Some("example.com"));
        let abs: Uri = "http://example.com/a?b".parse().unwrap();
        assert_eq!(
            to_tether_request(&Method::GET, &abs, &HeaderMap::new()).target,
            "/a?b"
        );
    }

    #[test]
    fn is_upgrade_request_reads_every_field_line() {
        let req = request(
            "GET",
            Version::HTTP_11,
            &[
                ("connection", "keep-alive"),
                ("connection", "UPGRADE"),
                ("upgrade", "WebSocket"),
            ],
        );
        assert!(is_upgrade_request(&req));
        assert!(!is_upgrade_request(&request(
            "GET",
            Version::HTTP_11,
            &[("upgrade", "websocket")]
        )));
    }
}
