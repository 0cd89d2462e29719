//! The server's opening handshake (RFC 6455 §4.2): reading the request,
//! refusing it, and [`Upgrade`], the negotiation shared by
//! [`ServerBuilder::accept`] and the HTTP framework integrations.

use super::listen::{Serving, Slot};
use super::ServerBuilder;
use crate::error::{Error, ErrorKind, Result};
use crate::socket::WebSocket;
use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use std::sync::Arc;
use tether_proto::deflate::DeflateParams;
use tether_proto::handshake::{ClientOffer, Request, Response, ServerHandshake};
use tether_proto::{Connection, HandshakeError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A valid upgrade request with everything decided: the 101 to send, the
/// subprotocol and the permessage-deflate parameters. Turned into a
/// [`WebSocket`] once the 101 is on its way.
#[derive(Debug)]
pub(crate) struct Upgrade {
    /// The 101 response.
    pub(crate) response: Response,
    subprotocol: Option<String>,
    deflate: Option<DeflateParams>,
    /// When it was decided: before the 101 is sent, whoever sends it.
    at: std::time::Instant,
}

impl ServerBuilder {
    /// Validates an upgrade request and negotiates it with this builder's
    /// settings and hooks: the subprotocol (`select_subprotocol`),
    /// compression, and the 101 (`process_response`). A
    /// [`HandshakeError::Status`] holds a response to send instead (a
    /// hook's); [`ServerHandshake::reject`] gives the response for any
    /// error.
    // Used by the framework integrations; `handshake` takes the two steps
    // apart to count the connection in between.
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn negotiate(&self, request: &Request) -> Result<Upgrade, HandshakeError> {
        let offer = ServerHandshake::validate(request)?;
        self.negotiate_offer(request, &offer)
    }

    /// [`ServerBuilder::negotiate`] after validation (steps 7 to 9 of the
    /// order documented on [`ServerBuilder`]).
    fn negotiate_offer(
        &self,
        request: &Request,
        offer: &ClientOffer,
    ) -> Result<Upgrade, HandshakeError> {
        let subprotocol = self.choose_subprotocol(request, offer)?;
        let deflate = offer.negotiate_deflate(self.config.compression.as_ref());
        let mut response = offer.accept_with(subprotocol.as_deref(), deflate.as_ref());
        self.run_process_response(request, &mut response)?;
        Ok(Upgrade {
            response,
            subprotocol,
            deflate,
            at: std::time::Instant::now(),
        })
    }
}

impl Upgrade {
    /// The WebSocket over `io`, after the 101 was sent; `leftover` holds
    /// bytes the client sent after its request.
    pub(crate) fn into_websocket<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        builder: &ServerBuilder,
        io: S,
        leftover: Bytes,
        request: Request,
    ) -> WebSocket<S> {
        let mut conn = Connection::server(builder.config.proto());
        conn.set_negotiated(tether_proto::Negotiated {
            deflate: self.deflate,
            ..Default::default()
        });
        let mut ws = WebSocket::from_parts(io, conn, leftover, Arc::new(builder.config.clone()));
        ws.set_subprotocol(self.subprotocol);
        ws.set_request(request);
        ws.set_upgraded_at(self.at);
        ws
    }
}

impl ServerBuilder {
    /// The opening handshake, in the order documented on [`ServerBuilder`].
    /// Under [`ServerBuilder::serve`], `serving` carries the shutdown signal
    /// and the connection count; the returned slot counts this connection
    /// until it is dropped.
    pub(super) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut io: S,
        serving: Option<&Serving>,
    ) -> Result<(WebSocket<S>, Option<Slot>)> {
        let mut hs = ServerHandshake::new();
        let mut buf = BytesMut::with_capacity(4096);
        let (request, leftover) = loop {
            buf.clear();
            let n = io.read_buf(&mut buf).await.map_err(|e| {
                Error::io(ErrorKind::Connect, e)
                    .with_message("client went away during the handshake")
            })?;
            if n == 0 {
                return Err(Error::msg(
                    ErrorKind::Connect,
                    "client closed the connection during the handshake",
                ));
            }
            match hs.receive(&buf) {
                Ok(Some(r)) => break r,
                Ok(None) => continue,
                Err(e) => {
                    // No request to show a hook: answered here.
                    let _ = send_refusal(&mut io, None, &ServerHandshake::reject(&e)).await;
                    return Err(e.into());
                }
            }
        };
        // During a graceful shutdown, handshakes in flight get 503 (load
        // balancers see the server draining, health check included).
        if serving.is_some_and(|sv| sv.token.is_cancelled()) {
            let resp = Response::with_body(503, "server shutting down\n");
            return Err(refuse(&mut io, &request, &leftover, resp).await);
        }
        if let Some(hook) = &self.process_request {
            if let Some(mut resp) = hook(&request).await {
                // A 1xx is not a final answer (RFC 9110 §15.2): a 101 here
                // would switch protocols with nothing negotiated.
                if resp.status < 200 {
                    tracing::error!(
                        status = resp.status,
                        "process_request answered with a 1xx status; answering 500"
                    );
                    resp = super::hooks::server_bug_response();
                }
                return Err(refuse(&mut io, &request, &leftover, resp).await);
            }
        }
        let offer = match ServerHandshake::validate(&request) {
            Ok(o) => o,
            Err(e) => return Err(reject(&mut io, &request, &leftover, e).await),
        };
        // After the hook, so that a health check answers at capacity.
        let slot = match serving {
            Some(sv) => match sv.take_slot(self.max_connections) {
                Some(s) => Some(s),
                None => {
                    tracing::warn!(max = ?self.max_connections, "at max_connections: refusing with 503");
                    let resp = Response::with_body(503, "server at capacity, try again later\n")
                        .header("retry-after", "5");
                    return Err(refuse(&mut io, &request, &leftover, resp).await);
                }
            },
            None => None,
        };
        let upgrade = match self.negotiate_offer(&request, &offer) {
            Ok(u) => u,
            Err(e) => return Err(reject(&mut io, &request, &leftover, e).await),
        };
        io.write_all(&upgrade.response.to_bytes())
            .await
            .map_err(|e| Error::io(ErrorKind::Connect, e))?;
        let ws = upgrade.into_websocket(self, io, leftover, request);
        Ok((ws, slot))
    }
}

/// Answers `request` with `resp` (a hook's or a 503) instead of upgrading:
/// [`ErrorKind::HttpStatus`] with the response sent, or
/// [`ErrorKind::Connect`] when it could not be written.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    request: &Request,
    leftover: &[u8],
    resp: Response,
) -> Error {
    let resp = closing(resp);
    if let Err(e) = send_refusal(io, Some(request), &resp).await {
        return Error::io(ErrorKind::Connect, e);
    }
    if body_unread(request, leftover) {
        linger(io).await;
    }
    Error::new(ErrorKind::HttpStatus).with_response(resp)
}

/// Answers an invalid request (or a hook's [`HandshakeError::Status`]):
/// the error that `e` is ([`ErrorKind::Handshake`], or
/// [`ErrorKind::HttpStatus`] for a status), whether or not the response
/// could be written.
async fn reject<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    request: &Request,
    leftover: &[u8],
    e: HandshakeError,
) -> Error {
    let resp = closing(ServerHandshake::reject(&e));
    let _ = send_refusal(io, Some(request), &resp).await;
    if body_unread(request, leftover) {
        linger(io).await;
    }
    match e {
        HandshakeError::Status(_) => Error::new(ErrorKind::HttpStatus).with_response(resp),
        e => Error::from(e),
    }
}

/// `resp` with `Connection: close` (in place of any other value): the
/// connection ends after it (RFC 9112 §9.6).
fn closing(mut resp: Response) -> Response {
    resp.headers
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Writes a refusal and ends the sending side. The answer to a `HEAD`
/// request is the head alone, its `Content-Length` that of the body it
/// would have had (RFC 9110 §9.3.2).
async fn send_refusal<S: AsyncWrite + Unpin>(
    io: &mut S,
    request: Option<&Request>,
    resp: &Response,
) -> std::io::Result<()> {
    let mut bytes = resp.to_bytes();
    if request.is_some_and(|r| r.method == "HEAD") {
        bytes.truncate(bytes.len() - resp.body.len());
    }
    io.write_all(&bytes).await?;
    io.shutdown().await
}

/// True when the request announced a body that was not read with its head:
/// then the client may still be sending it, and closing with unread bytes
/// would reset the connection, which can destroy the response before the
/// client reads it (the "lingering close" of RFC 9112 §9.6).
fn body_unread(request: &Request, leftover: &[u8]) -> bool {
    let length = request
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    request
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
        || length.is_some_and(|n| n > leftover.len() as u64)
}

/// Reads and drops what the client still sends, until it closes: at most
/// 64 KiB and 2 s, so that a client cannot hold the connection. (It runs
/// within the open timeout: should that run out first, `accept` returns
/// `Timeout` although the response was sent.)
async fn linger<S: AsyncRead + Unpin>(io: &mut S) {
    const MAX: usize = 64 * 1024;
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < MAX {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
}
