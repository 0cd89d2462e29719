//! The server's opening handshake (RFC 6455 §4.2): reading the request,
//! refusing it, and [`Upgrade`], the negotiation shared by
//! [`ServerBuilder::accept`] and the HTTP framework integrations.

use super::listen::{Serving, Slot};
use super::ServerBuilder;
use crate::error::{Error, ErrorKind, Result};
use crate::socket::WebSocket;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tether_proto::deflate::DeflateParams;
use tether_proto::handshake::{Request, Response, ServerHandshake};
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
}

impl ServerBuilder {
    /// Validates an upgrade request and negotiates the subprotocol and
    /// compression with this builder's settings.
    pub(crate) fn negotiate(&self, request: &Request) -> Result<Upgrade, HandshakeError> {
        let offer = ServerHandshake::validate(request)?;
        let subprotocol = offer
            .select_subprotocol(&self.subprotocols)
            .map(str::to_string);
        let deflate = offer.negotiate_deflate(self.config.compression.as_ref());
        let response = offer.accept_with(subprotocol.as_deref(), deflate.as_ref());
        Ok(Upgrade {
            response,
            subprotocol,
            deflate,
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
        ws
    }
}

impl ServerBuilder {
    /// The opening handshake. Under [`ServerBuilder::serve`], `serving`
    /// carries the shutdown signal and the connection count; the returned
    /// slot counts this connection until it is dropped.
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
                    let _ = io.write_all(&ServerHandshake::reject(&e).to_bytes()).await;
                    let _ = io.shutdown().await;
                    return Err(e.into());
                }
            }
        };
        let upgrade = match self.negotiate(&request) {
            Ok(u) => u,
            Err(e) => {
                let _ = io.write_all(&ServerHandshake::reject(&e).to_bytes()).await;
                let _ = io.shutdown().await;
                return Err(Error::from(e));
            }
        };
        // During a graceful shutdown, handshakes in flight get 503; so does
        // a request beyond max_connections.
        let mut slot = None;
        let refusal = match serving {
            Some(sv) if sv.token.is_cancelled() => {
                Some(Response::with_body(503, "server shutting down\n"))
            }
            Some(sv) => match sv.take_slot(self.max_connections) {
                Some(s) => {
                    slot = Some(s);
                    None
                }
                None => {
                    tracing::warn!(max = ?self.max_connections, "at max_connections: refusing with 503");
                    Some(
                        Response::with_body(503, "server at capacity, try again later\n")
                            .header("retry-after", "5"),
                    )
                }
            },
            None => None,
        }
        .or_else(|| self.process_request.as_ref().and_then(|f| f(&request)));
        if let Some(resp) = refusal {
            io.write_all(&resp.to_bytes())
                .await
                .map_err(|e| Error::io(ErrorKind::Connect, e))?;
            let _ = io.shutdown().await;
            return Err(Error::new(ErrorKind::HttpStatus).with_response(resp));
        }
        io.write_all(&upgrade.response.to_bytes())
            .await
            .map_err(|e| Error::io(ErrorKind::Connect, e))?;
        let ws = upgrade.into_websocket(self, io, leftover, request);
        Ok((ws, slot))
    }
}
