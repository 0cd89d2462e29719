//! Accepting connections: [`accept`], [`ServerBuilder`] and [`serve`].
//!
//! - `mod.rs`: the settings and the entry points;
//! - `hooks.rs`: `process_request`, `select_subprotocol`,
//!   `process_response`;
//! - `handshake.rs`: reading, refusing and accepting the upgrade request;
//! - `listen.rs`: the accept loop and the [`Server`] handle.

mod handshake;
mod hooks;
mod listen;

#[cfg(feature = "hyper")]
pub(crate) use handshake::Upgrade;
pub use listen::Server;
use listen::{accept_loop, Serving, Slot};

use crate::error::{Error, ErrorKind, Result};
use crate::socket::{WebSocket, WebSocketConfig};
use hooks::{ProcessRequest, ProcessResponse, SelectSubprotocol};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_util::sync::CancellationToken;

/// Accepts a WebSocket connection on `io` with the default settings.
///
/// # Errors
/// See [`ServerBuilder::accept`].
///
/// # Cancel safety
/// Cancelling drops the connection.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> Result<WebSocket<S>> {
    ServerBuilder::new().accept(io).await
}

/// Settings for accepting connections.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use tether::{Message, Response, ServerBuilder};
/// let server = ServerBuilder::new()
///     .subprotocols(["chat.v1"])
///     // Sees every request: a health check on the same port, and clients
///     // without a token refused, as websockets' process_request does.
///     .process_request(|req| {
///         match (req.path(), req.header("authorization")) {
///             ("/health", _) => Some(Response::with_body(200, "ok\n")),
///             (_, Some("Bearer let-me-in")) => None,
///             _ => Some(Response::with_body(401, "missing or invalid token\n")
///                 .header("www-authenticate", "Bearer")),
///         }
///     })
///     .serve("127.0.0.1:9001", |mut ws| async move {
///         while let Some(Ok(msg)) = ws.recv().await {
///             if msg.is_data() && ws.send(msg).await.is_err() {
///                 break;
///             }
///         }
///     })
///     .await?;
/// println!("listening on {}", server.local_addr());
/// server.shutdown().await; // every client gets close 1001
/// # Ok(()) }
/// ```
///
/// # The order of a handshake
///
/// For each connection, [`ServerBuilder::serve`] and
/// [`ServerBuilder::accept_tcp`] do this, all within the open timeout:
///
/// 1. the TLS handshake, when the server has a certificate;
/// 2. read the request head; one that cannot be read (not HTTP/1.1, a line
///    over 8 KiB, more than 128 headers) is answered 400, 505, 414 or 431
///    at once, and no hook sees it;
/// 3. during a graceful shutdown ([`Server::shutdown`]): 503;
/// 4. [`process_request`](ServerBuilder::process_request), with every
///    request: a response it returns is sent (a health check, a 401);
/// 5. validation as a WebSocket upgrade (RFC 6455 §4.2.1): a request
///    that is not one at all (no `Upgrade: websocket`) gets **426 Upgrade
///    Required** with `Upgrade: websocket` and `Sec-WebSocket-Version: 13`;
///    a broken one gets 400 (a bad key, a missing `Connection: Upgrade` or
///    `Host`), 405 (not `GET`) or 426 (a version other than 13);
/// 6. [`max_connections`](ServerBuilder::max_connections): 503 with
///    `Retry-After: 5` beyond it (after the hook, so a health check still
///    answers at capacity);
/// 7. the subprotocol: [`select_subprotocol`](ServerBuilder::select_subprotocol),
///    else the [`subprotocols`](ServerBuilder::subprotocols) rule;
/// 8. permessage-deflate, with the [`compression`](ServerBuilder::compression)
///    settings;
/// 9. the 101 is built and given to
///    [`process_response`](ServerBuilder::process_response), which may add
///    headers or answer with another status instead;
/// 10. the 101 is sent, and the connection handed to the handler.
///
/// [`ServerBuilder::accept`] does steps 2 to 5 and 7 to 10 on the stream it
/// is given. Every response other than the 101 has a `Content-Length` and
/// `Connection: close`, and the connection is closed after it.
#[derive(Clone)]
#[must_use]
pub struct ServerBuilder {
    config: WebSocketConfig,
    subprotocols: Vec<String>,
    process_request: Option<Arc<ProcessRequest>>,
    select_subprotocol: Option<Arc<SelectSubprotocol>>,
    process_response: Option<Arc<ProcessResponse>>,
    open_timeout: Option<Duration>,
    max_connections: Option<usize>,
    max_handshakes: usize,
    /// The certificate and key for TLS (set in `crate::tls`).
    pub(crate) tls: Option<crate::tls::ServerTls>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("subprotocols", &self.subprotocols)
            .field("process_request", &self.process_request.is_some())
            .field("select_subprotocol", &self.select_subprotocol.is_some())
            .field("process_response", &self.process_response.is_some())
            .field("open_timeout", &self.open_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_handshakes", &self.max_handshakes)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerBuilder {
    /// The defaults: open timeout 10 s, max message 1 MiB, close timeout 10 s.
    pub fn new() -> Self {
        let config = WebSocketConfig::server();
        ServerBuilder {
            config,
            subprotocols: Vec::new(),
            process_request: None,
            select_subprotocol: None,
            process_response: None,
            open_timeout: Some(Duration::from_secs(10)),
            max_connections: None,
            max_handshakes: 256,
            tls: None,
        }
    }

    /// The subprotocols this server supports; the first one the client
    /// offered (in the client's order) is chosen. See also
    /// [`ServerBuilder::select_subprotocol`] for another rule.
    pub fn subprotocols<I: IntoIterator<Item = T>, T: Into<String>>(mut self, protos: I) -> Self {
        self.subprotocols = protos.into_iter().map(Into::into).collect();
        self
    }

    /// Bounds the time a client has to complete the TLS handshake (with a
    /// certificate) and send its upgrade request, and the hooks have to
    /// answer it (default 10 s).
    pub fn open_timeout(mut self, t: Option<Duration>) -> Self {
        self.open_timeout = t;
        self
    }

    /// With [`ServerBuilder::serve`]: the most upgraded connections open at
    /// once (default: no limit but the process's file descriptors). Beyond
    /// it, an upgrade request is answered with 503 and `Retry-After: 5`, so
    /// reconnecting clients (tether's among them) back off instead of
    /// hammering a full server.
    pub fn max_connections(mut self, n: Option<usize>) -> Self {
        self.max_connections = n;
        self
    }

    /// With [`ServerBuilder::serve`]: the most connections accepted but not
    /// yet upgraded (TLS and HTTP handshakes in flight; default 256). At
    /// the limit the server stops accepting until one finishes, so clients
    /// that open connections and send nothing (or send slowly) cannot hold
    /// more than this many request buffers, each for at most the open
    /// timeout.
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.max_handshakes = n.max(1);
        self
    }

    crate::socket::socket_setters!();

    /// Performs the server handshake on `io`, as it is: the TLS settings
    /// (`ServerBuilder::tls_pem`) do not apply here (`io` may already be a
    /// TLS stream of yours); [`ServerBuilder::accept_tcp`] applies them.
    ///
    /// The hooks run as described under [`ServerBuilder`]; a request that
    /// is not a valid upgrade is answered with 400, 405, 414, 426, 431 or
    /// 505 before the error is returned.
    ///
    /// # Errors
    /// [`ErrorKind::Handshake`] for an invalid request, [`ErrorKind::HttpStatus`]
    /// when a hook answered instead (the error holds that response),
    /// [`ErrorKind::Connect`] when the client went away,
    /// [`ErrorKind::Timeout`] past the open timeout.
    ///
    /// # Cancel safety
    /// Cancelling drops the connection.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S) -> Result<WebSocket<S>> {
        // Boxed: the handshake's state (buffers, the request being parsed)
        // is freed when it is done, instead of sizing the caller's future
        // (often a task that lives as long as the connection) for it.
        let (ws, _) = Box::pin(self.within_open_timeout(self.handshake(io, None))).await?;
        Ok(ws)
    }

    /// Runs `fut` (a TLS handshake and an upgrade) within the open timeout.
    async fn within_open_timeout<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        match self.open_timeout {
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
                Err(Error::msg(
                    ErrorKind::Timeout,
                    "client did not complete the handshake in time",
                ))
            }),
            None => fut.await,
        }
    }

    /// Accepts a WebSocket connection on a TCP connection from a listener of
    /// yours, as [`ServerBuilder::serve`] does: the TLS handshake first when
    /// the server has a certificate (`ServerBuilder::tls_pem`), then the
    /// upgrade, both within the open timeout.
    ///
    /// # Errors
    /// As [`ServerBuilder::accept`], and [`ErrorKind::Tls`] when the TLS
    /// handshake fails (the client refused the certificate, or does not
    /// speak TLS).
    ///
    /// # Cancel safety
    /// Cancelling drops the connection.
    pub async fn accept_tcp(&self, tcp: TcpStream) -> Result<WebSocket> {
        let (ws, _) = self.accept_tcp_inner(tcp, None).await?;
        Ok(ws)
    }

    async fn accept_tcp_inner(
        &self,
        tcp: TcpStream,
        serving: Option<&Serving>,
    ) -> Result<(WebSocket, Option<Slot>)> {
        // Boxed, as in `accept`: TLS and the upgrade take about 3 KiB of
        // state that a long-lived task should not keep.
        Box::pin(self.within_open_timeout(async {
            let io = crate::tls::accept(self.tls.as_ref(), tcp).await?;
            self.handshake(io, serving).await
        }))
        .await
    }

    /// Listens on `addr` and runs `handler` on a task for each connection.
    /// With a certificate (`ServerBuilder::tls_pem`) every connection is
    /// TLS first, and the handler's socket is over
    /// [`MaybeTlsStream::Tls`](crate::MaybeTlsStream).
    ///
    /// Returns once listening; the [`Server`] handle gives the address and a
    /// graceful [`Server::shutdown`].
    ///
    /// # Errors
    /// [`ErrorKind::Io`] when the address cannot be bound.
    ///
    /// # Cancel safety
    /// Cancel-safe: nothing is listening until it returns.
    pub async fn serve<A, H, F>(self, addr: A, handler: H) -> Result<Server>
    where
        A: ToSocketAddrs,
        H: Fn(WebSocket) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(ErrorKind::Io, e).with_message("could not listen"))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io(ErrorKind::Io, e))?;
        let token = CancellationToken::new();
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::new(self),
            Arc::new(handler),
            token.clone(),
        ));
        tracing::info!(%local_addr, "WebSocket server listening");
        Ok(Server {
            local_addr,
            token,
            task,
        })
    }
}

/// Listens on `addr` with the default settings and runs `handler` for each
/// connection. See [`ServerBuilder::serve`].
///
/// # Errors
/// [`ErrorKind::Io`] when the address cannot be bound.
///
/// # Cancel safety
/// Cancel-safe.
pub async fn serve<A, H, F>(addr: A, handler: H) -> Result<Server>
where
    A: ToSocketAddrs,
    H: Fn(WebSocket) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    ServerBuilder::new().serve(addr, handler).await
}

/// TLS options of the server (feature `tls`, on by default): thin calls into
/// `crate::tls`, which holds the rustls code.
#[cfg(feature = "rustls")]
impl ServerBuilder {
    /// Serves TLS (`wss://`) with the certificate chain (leaf first) and
    /// private key of two PEM files: [`ServerBuilder::serve`] and
    /// [`ServerBuilder::accept_tcp`] then perform the TLS handshake before
    /// the upgrade, both within the open timeout. Clients are offered
    /// ALPN `http/1.1`.
    ///
    /// ```no_run
    /// # async fn run() -> tether::Result<()> {
    /// let server = tether::ServerBuilder::new()
    ///     .tls_pem("cert.pem", "key.pem")?
    ///     .serve("0.0.0.0:443", |mut ws| async move {
    ///         while let Some(Ok(msg)) = ws.recv().await {
    ///             if msg.is_data() && ws.send(msg).await.is_err() {
    ///                 break;
    ///             }
    ///         }
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when a file cannot be read, holds no
    /// certificate or key, or the key does not match the certificate.
    pub fn tls_pem(
        mut self,
        cert_chain_path: impl AsRef<std::path::Path>,
        key_path: impl AsRef<std::path::Path>,
    ) -> Result<Self> {
        self.tls = Some(crate::tls::ServerTls::from_pem_files(
            cert_chain_path.as_ref(),
            key_path.as_ref(),
        )?);
        Ok(self)
    }

    /// As [`ServerBuilder::tls_pem`], from PEM texts in memory.
    ///
    /// # Errors
    /// As [`ServerBuilder::tls_pem`].
    pub fn tls_pem_bytes(mut self, cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        self.tls = Some(crate::tls::ServerTls::from_pem(cert_chain_pem, key_pem)?);
        Ok(self)
    }

    /// Serves TLS with a rustls configuration of yours, used as it is by
    /// [`ServerBuilder::serve`] and [`ServerBuilder::accept_tcp`]: your
    /// certificate resolver (SNI, rotation), client authentication, crypto
    /// provider, protocol versions, session cache and key log.
    ///
    /// One field is set: ALPN. A tether server speaks WebSocket over
    /// HTTP/1.1 (RFC 6455; WebSocket over HTTP/2, RFC 8441, is not
    /// supported), so the server accepts exactly `http/1.1`. A client
    /// that offers `h2` as well gets `http/1.1`; one that offers no ALPN at
    /// all is served too; one that offers only `h2` is refused during the
    /// TLS handshake (alert `no_application_protocol`, RFC 7301 §3.2)
    /// instead of talking HTTP/2 to an HTTP/1.1 server. When `config`
    /// listed other protocols (a configuration shared with an HTTP/2
    /// server), a copy is made without them, sharing everything else, and
    /// a warning is logged once here; `config` itself is not changed.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use tether::rustls; // the version tether uses
    /// # fn run(config: rustls::ServerConfig) {
    /// // `config` built by you: rustls::ServerConfig::builder()...
    /// let builder = tether::ServerBuilder::new().tls_config(Arc::new(config));
    /// # }
    /// ```
    pub fn tls_config(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(crate::tls::ServerTls::from_config(config));
        self
    }

    /// As [`ServerBuilder::tls_pem`], from DER: the certificate chain
    /// (leaf first) and the private key (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// As [`ServerBuilder::tls_pem`].
    pub fn tls_der(mut self, cert_chain: Vec<Vec<u8>>, key: Vec<u8>) -> Result<Self> {
        self.tls = Some(crate::tls::ServerTls::from_der(cert_chain, key)?);
        Ok(self)
    }
}
