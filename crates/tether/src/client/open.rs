//! Opening a connection: the opening handshake over TCP, TLS and proxies,
//! redirects, the open timeout; or over a stream of the caller's
//! (`connect_on`).

use super::url::{parse_url, parse_ws_url, redirect_target, same_origin, Target};
use super::ClientBuilder;
use crate::error::{Error, ErrorKind, Result};
use crate::socket::{mask_source, WebSocket};
use crate::transport::MaybeTlsStream;
use bytes::BytesMut;
use http::{HeaderMap, HeaderValue};
use std::sync::Arc;
use tether_proto::handshake::{ClientHandshake, ClientRequest, Progress, Response};
use tether_proto::Connection;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

impl ClientBuilder {
    /// Opens the connection: resolves the host, races its addresses (Happy
    /// Eyeballs, RFC 8305), performs the TLS handshake for `wss://`, then
    /// the upgrade, all within the open timeout.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a value that cannot be sent (see
    /// [`ClientBuilder::validate`]), before any connection is opened;
    /// [`ErrorKind::InvalidUrl`], [`ErrorKind::Dns`], [`ErrorKind::Connect`]
    /// (refused, reset, or closed during the handshake),
    /// [`ErrorKind::Tls`] (certificate or host name not verified, TLS
    /// refused), [`ErrorKind::Timeout`], [`ErrorKind::HttpStatus`] (with the
    /// response), [`ErrorKind::Handshake`].
    ///
    /// # Cancel safety
    /// Cancelling drops the attempt.
    pub async fn connect(self) -> Result<WebSocket> {
        self.connect_with_response().await.map(|(ws, _)| ws)
    }

    /// As [`ClientBuilder::connect`], and also returns the server's 101
    /// response (its headers may carry cookies or server information).
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    ///
    /// # Cancel safety
    /// Cancelling drops the attempt.
    pub async fn connect_with_response(self) -> Result<(WebSocket, Response)> {
        // Before the credentials provider is asked for anything.
        self.validate()?;
        let headers = self.provided_headers(1, false).await?;
        let c = self.connect_full(headers).await?;
        Ok((c.ws, c.response))
    }

    /// Runs the client side of the opening handshake over `io`, a stream
    /// you already have: a Unix socket, an in-memory
    /// [`tokio::io::duplex`], a TLS stream of yours, a tunnel. The URL
    /// gives the `Host` header and the path (and its credentials, Basic
    /// auth); nothing is resolved or dialled.
    ///
    /// Unlike [`connect`](ClientBuilder::connect): no proxy, no TLS (the
    /// TLS options are not used; a `wss://` URL only sets the `Host`
    /// header's default port, 443), and no redirect is followed: a 3xx
    /// answer is an [`ErrorKind::HttpStatus`] error whose
    /// [`response`](crate::Error::response) holds the `Location`, for you to
    /// open a stream to. The open timeout bounds the handshake; a
    /// credentials provider is asked for its headers once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tether::Result<()> {
    /// use tether::{ClientBuilder, Message};
    /// // Both ends in one process, over an in-memory pipe.
    /// let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    /// let server = tokio::spawn(async move {
    ///     let mut ws = tether::accept(server_io).await?;
    ///     let msg = ws.recv().await.expect("a message")?;
    ///     ws.send(msg).await
    /// });
    /// let mut ws = ClientBuilder::new("ws://localhost/echo").connect_on(client_io).await?;
    /// ws.send(Message::text("hello")).await?;
    /// assert_eq!(ws.recv().await.unwrap()?, Message::text("hello"));
    /// # server.await.unwrap()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Config`] and [`ErrorKind::InvalidUrl`] as for
    /// [`ClientBuilder::validate`] (but a `wss://` URL needs no TLS
    /// feature here), [`ErrorKind::Credentials`] when the provider fails,
    /// [`ErrorKind::Timeout`], [`ErrorKind::Connect`] when the stream fails
    /// or ends during the handshake, [`ErrorKind::HttpStatus`] (with the
    /// response), [`ErrorKind::Handshake`].
    ///
    /// # Cancel safety
    /// Cancelling drops the stream.
    pub async fn connect_on<S>(self, io: S) -> Result<WebSocket<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.validate_settings()?;
        let target = parse_ws_url(&self.url)?;
        let headers = self.provided_headers(1, false).await?;
        let headers = headers.unwrap_or_else(|| self.headers.clone());
        // Boxed, as the server's accept: the handshake's buffers are freed
        // when it is done instead of sizing the caller's future.
        let attempt = Box::pin(self.handshake(io, &target, &headers));
        self.within_open_timeout(attempt)
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| e.with_url(&self.url))
    }

    /// Connects, following redirects, within the open timeout. `headers`
    /// replaces the builder's extra headers (a credentials provider's).
    pub(crate) async fn connect_full(&self, headers: Option<HeaderMap>) -> Result<Connected> {
        // Nothing is sent with a value that cannot be (header injection).
        self.validate()?;
        let headers = headers.unwrap_or_else(|| self.headers.clone());
        let result = self
            .within_open_timeout(self.follow_redirects(headers))
            .await;
        result.map_err(|e| {
            if e.url().is_none() {
                e.with_url(&self.url)
            } else {
                e
            }
        })
    }

    /// Runs `attempt` within the open timeout.
    async fn within_open_timeout<T>(
        &self,
        attempt: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.open_timeout {
            Some(t) => match tokio::time::timeout(t, attempt).await {
                Ok(r) => r,
                Err(_) => Err(Error::msg(
                    ErrorKind::Timeout,
                    format!("timed out opening the connection after {t:?}"),
                )),
            },
            None => attempt.await,
        }
    }

    /// Follows 301, 302, 303, 307 and 308 with a Location, at most
    /// [`MAX_REDIRECTS`] hops; never from `wss://` to `ws://`; drops
    /// credentials when the origin changes (as websockets does, and every
    /// header that is redacted in logs, not only its three).
    async fn follow_redirects(&self, mut headers: HeaderMap) -> Result<Connected> {
        let mut url = self.url.clone();
        let mut permanent = true;
        let mut cross_origin = false;
        for hop in 0..=MAX_REDIRECTS {
            let target = parse_url(&url)?;
            let err = match self.open(&target, &headers).await {
                Ok((ws, response)) => {
                    let redirected = (hop > 0).then(|| Redirected {
                        url: url.clone(),
                        permanent,
                        cross_origin,
                    });
                    return Ok(Connected {
                        ws,
                        response,
                        redirected,
                    });
                }
                Err(e) => e,
            };
            let status = err.status().unwrap_or(0);
            let location = match (
                status,
                err.response().and_then(|r| r.header_str("location")),
            ) {
                // A proxy's redirect is not the server's: not followed.
                (301 | 302 | 303 | 307 | 308, Some(l)) if !err.is_proxy() => l.to_string(),
                _ => return Err(err.with_url(&url)),
            };
            if hop == MAX_REDIRECTS {
                return Err(Error::msg(
                    ErrorKind::Redirect,
                    format!("too many redirects (more than {MAX_REDIRECTS})"),
                )
                .with_url(&url));
            }
            let next = redirect_target(&url, &location)
                .map_err(|why| Error::msg(ErrorKind::Redirect, why).with_url(&url))?;
            if same_origin(&url, &next) == Some(false) {
                cross_origin = true;
                // websockets drops Authorization, Cookie and
                // Proxy-Authorization; we drop every header we would redact
                // (X-Api-Key, X-Auth-Token..., and the names registered with
                // `sensitive_header`): a credential for one origin is no
                // business of another.
                let secret: Vec<http::HeaderName> = headers
                    .keys()
                    .filter(|n| self.sensitive.contains(n.as_str()))
                    .cloned()
                    .collect();
                for h in secret {
                    headers.remove(h);
                }
            }
            permanent &= matches!(status, 301 | 308);
            tracing::info!(
                status,
                from = %tether_proto::redact::redact_url(&url),
                to = %tether_proto::redact::redact_url(&next),
                "following redirect"
            );
            url = next;
        }
        unreachable!("the loop returns")
    }

    async fn open(&self, target: &Target, headers: &HeaderMap) -> Result<(WebSocket, Response)> {
        let tcp = crate::proxy::connect(
            &self.proxy,
            &target.host,
            target.port,
            target.tls,
            self.user_agent.as_deref(),
        )
        .await?;
        let io = if target.tls {
            crate::tls::connect(&self.tls, tcp, &target.host).await?
        } else {
            MaybeTlsStream::Tcp(tcp)
        };
        self.handshake(io, target, headers).await
    }

    pub(crate) fn request(&self, target: &Target, headers: &HeaderMap) -> ClientRequest {
        let mut headers = headers.clone();
        // Credentials in the URL become Basic auth, unless an explicit
        // Authorization header was given: never two Authorization headers.
        if let Some(auth) = &target.basic_auth {
            if !headers.contains_key(http::header::AUTHORIZATION) {
                if let Ok(v) = HeaderValue::from_str(auth) {
                    headers.insert(http::header::AUTHORIZATION, v);
                }
            }
        }
        ClientRequest {
            host: target.host_header.clone(),
            target: target.resource.clone(),
            origin: self.origin.clone(),
            subprotocols: self.subprotocols.clone(),
            headers,
            user_agent: self.user_agent.clone(),
            compression: self.config.compression,
        }
    }

    /// The upgrade over `io`: the request, then the server's answer.
    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut io: S,
        target: &Target,
        headers: &HeaderMap,
    ) -> Result<(WebSocket<S>, Response)> {
        let mut key = [0u8; 16];
        getrandom::getrandom(&mut key).map_err(|e| {
            Error::msg(
                ErrorKind::Io,
                format!("no randomness for the handshake key: {e}"),
            )
        })?;
        let request = self.request(target, headers);
        // The last guard: the provider's headers and a redirect's target
        // were not seen by `validate`.
        request.validate()?;
        // A refusal's body is shown in errors: a server that echoes the
        // request back must not make our secrets appear there.
        let mut secrets = target.secrets.clone();
        secrets.add_headers(&request.headers, &self.sensitive);
        // -v: the request as sent, credentials redacted (the URL's query,
        // the default sensitive headers and the user's own).
        tracing::debug!(
            target: "tether::handshake",
            host = %request.host,
            resource = %tether_proto::redact::redact_url(&request.target),
            origin = ?request.origin,
            subprotocols = ?request.subprotocols,
            headers = ?self.sensitive.show(&request.headers),
            "upgrade request"
        );
        let mut hs = ClientHandshake::new(&request, key);
        io.write_all(hs.request()).await.map_err(|e| {
            Error::io(ErrorKind::Connect, e)
                .with_message("connection lost while sending the upgrade request")
        })?;
        let mut buf = BytesMut::with_capacity(4096);
        let accepted = loop {
            buf.clear();
            let n = io.read_buf(&mut buf).await.map_err(|e| {
                // A TLS alert here (TLS 1.3 servers refuse a client
                // certificate after the handshake) is ErrorKind::Tls.
                crate::tls::refusal(e, &target.host).unwrap_or_else(|e| {
                    Error::io(ErrorKind::Connect, e)
                        .with_message("connection lost during the opening handshake")
                })
            })?;
            let progress = if n == 0 {
                hs.receive_eof()
            } else {
                hs.receive(&buf)
            };
            let progress = progress.map_err(|e| {
                let e = Error::from(e).redact_body(&secrets);
                if let Some(r) = e.response() {
                    tracing::debug!(
                        target: "tether::handshake",
                        status = r.status,
                        headers = ?self.sensitive.show(&r.headers),
                        "upgrade refused"
                    );
                }
                e
            })?;
            match progress {
                Progress::NeedMore => continue,
                Progress::Done(a) => break a,
            }
        };
        tracing::debug!(
            target: "tether::handshake",
            status = accepted.response.status,
            headers = ?self.sensitive.show(&accepted.response.headers),
            "upgrade response"
        );
        let mut conn = Connection::client(self.config.proto(), mask_source());
        conn.set_negotiated(accepted.negotiated);
        let mut ws =
            WebSocket::from_parts(io, conn, accepted.leftover, Arc::new(self.config.clone()));
        ws.set_subprotocol(accepted.subprotocol);
        Ok((ws, accepted.response))
    }
}

/// The most redirects followed in one attempt (as websockets).
pub(crate) const MAX_REDIRECTS: usize = 10;

/// A connection, and where redirects led it.
pub(crate) struct Connected {
    pub(crate) ws: WebSocket,
    pub(crate) response: Response,
    pub(crate) redirected: Option<Redirected>,
}

/// The URL a connection was redirected to.
#[derive(Debug, Clone)]
pub(crate) struct Redirected {
    pub(crate) url: String,
    /// True when every hop was permanent (301 or 308).
    pub(crate) permanent: bool,
    /// True when a hop changed the origin (credentials were dropped on it).
    pub(crate) cross_origin: bool,
}
