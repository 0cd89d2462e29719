//! Opening client connections: [`connect`] and [`ClientBuilder`].

use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::socket::{mask_source, WebSocket, WebSocketConfig};
use crate::transport::Stream;
use crate::userinfo::decode_userinfo;
use base64::Engine as _;
use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tether_proto::handshake::{ClientHandshake, ClientRequest, Progress, Response, USER_AGENT};
use tether_proto::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Opens a WebSocket connection to `url` with the default settings.
///
/// # Errors
/// See [`ClientBuilder::connect`].
///
/// # Cancel safety
/// Cancelling drops the connection attempt.
pub async fn connect(url: &str) -> Result<WebSocket> {
    ClientBuilder::new(url).connect().await
}

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `wss://`: TLS before the upgrade.
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) host_header: String,
    pub(crate) resource: String,
    pub(crate) basic_auth: Option<String>,
}

pub(crate) fn parse_url(raw: &str) -> Result<Target> {
    let invalid =
        |why: &str| Error::msg(ErrorKind::InvalidUrl, format!("invalid URL: {why}")).with_url(raw);
    let url = url::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    let (tls, default_port) = match url.scheme() {
        "ws" => (false, 80),
        "wss" if cfg!(feature = "rustls") => (true, 443),
        "wss" => {
            return Err(invalid(
                "wss:// needs TLS: build tether with its `tls` feature",
            ))
        }
        other => {
            return Err(invalid(&format!(
                "unsupported scheme {other:?}; use ws:// or wss://"
            )))
        }
    };
    if url.fragment().is_some() {
        return Err(invalid("a WebSocket URL has no fragment"));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(invalid("no host")),
    };
    let port = url.port().unwrap_or(default_port);
    let host_part = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        _ => host.clone(),
    };
    let host_header = if port == default_port {
        host_part
    } else {
        format!("{host_part}:{port}")
    };
    let mut resource = url.path().to_string();
    if let Some(q) = url.query() {
        resource.push('?');
        resource.push_str(q);
    }
    let basic_auth = if !url.username().is_empty() || url.password().is_some() {
        // Invalid UTF-8 is sent as U+FFFD rather than refused.
        let lossy =
            |e: std::string::FromUtf8Error| String::from_utf8_lossy(e.as_bytes()).into_owned();
        let user = decode_userinfo(url.username()).unwrap_or_else(lossy);
        let pass = decode_userinfo(url.password().unwrap_or("")).unwrap_or_else(lossy);
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ))
    } else {
        None
    };
    Ok(Target {
        tls,
        host,
        port,
        host_header,
        resource,
        basic_auth,
    })
}

/// What a credentials provider is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CredentialsRequest {
    /// The number of the attempt about to be made (from 1).
    pub attempt: u32,
    /// True when the previous attempt was refused with 401 or 403: the
    /// provider should refresh its token rather than return a cached one.
    pub refresh: bool,
}

type HeadersProvider = dyn Fn(
        CredentialsRequest,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<HeaderMap, BoxError>> + Send>>
    + Send
    + Sync;

/// Settings for opening a client connection.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use std::time::Duration;
/// let ws = tether::ClientBuilder::new("ws://127.0.0.1:9001/chat")
///     .subprotocol("chat.v1")
///     .header("authorization", "Bearer s3cret")?
///     .open_timeout(Some(Duration::from_secs(5)))
///     .max_message_size(Some(4 << 20))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ClientBuilder {
    url: String,
    provider: Option<Arc<HeadersProvider>>,
    origin: Option<String>,
    subprotocols: Vec<String>,
    headers: HeaderMap,
    user_agent: Option<String>,
    open_timeout: Option<Duration>,
    config: WebSocketConfig,
    /// TLS settings for `wss://` (set in `crate::tls`).
    pub(crate) tls: crate::tls::ClientTls,
    proxy: crate::proxy::ProxySetting,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &tether_proto::redact::redact_url(&self.url))
            .field("origin", &self.origin)
            .field("subprotocols", &self.subprotocols)
            .field(
                "headers",
                &tether_proto::redact::RedactedHeaders(&self.headers),
            )
            .field("open_timeout", &self.open_timeout)
            .field("config", &self.config)
            .field("tls", &self.tls)
            .field("proxy", &self.proxy)
            .finish()
    }
}

impl ClientBuilder {
    /// Settings for `url`, with the defaults: open timeout 10 s, max message
    /// 1 MiB, close timeout 10 s, `User-Agent: tether/<version>`.
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            url: url.into(),
            provider: None,
            origin: None,
            subprotocols: Vec::new(),
            headers: HeaderMap::new(),
            user_agent: Some(USER_AGENT.to_string()),
            open_timeout: Some(Duration::from_secs(10)),
            config: WebSocketConfig::default(),
            tls: Default::default(),
            proxy: Default::default(),
        }
    }

    /// The URL, with credentials redacted.
    pub fn url_redacted(&self) -> String {
        tether_proto::redact::redact_url(&self.url)
    }

    /// Adds a request header (repeatable). An explicit `Authorization`
    /// header replaces credentials in the URL.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for an invalid header name or value.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self> {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::msg(ErrorKind::Config, format!("invalid header name {name:?}")))?;
        let v = HeaderValue::from_str(value).map_err(|_| {
            Error::msg(
                ErrorKind::Config,
                format!("invalid value for header {name}"),
            )
        })?;
        self.headers.append(n, v);
        Ok(self)
    }

    /// An async provider of request headers, called before each attempt, so
    /// that a token can be refreshed between attempts. Its headers replace
    /// the builder's headers of the same name. With a provider, a 401 or 403
    /// in the reconnect loop triggers one refresh and one immediate retry.
    ///
    /// ```
    /// use tether::{ClientBuilder, CredentialsRequest};
    /// let builder = ClientBuilder::new("ws://127.0.0.1:9001/").headers_provider(|req: CredentialsRequest| async move {
    ///     let token = if req.refresh { "fresh-token" } else { "cached-token" };
    ///     let mut h = http::HeaderMap::new();
    ///     h.insert("authorization", format!("Bearer {token}").parse()?);
    ///     Ok(h)
    /// });
    /// ```
    pub fn headers_provider<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(CredentialsRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<HeaderMap, BoxError>> + Send + 'static,
    {
        self.provider = Some(Arc::new(move |r| Box::pin(f(r))));
        self
    }

    pub(crate) fn has_headers_provider(&self) -> bool {
        self.provider.is_some()
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn set_url(&mut self, url: String) {
        self.url = url;
    }

    /// The headers for an attempt: the builder's, overlaid with the
    /// provider's. `None` when there is no provider.
    pub(crate) async fn provided_headers(
        &self,
        attempt: u32,
        refresh: bool,
    ) -> Result<Option<HeaderMap>> {
        let Some(p) = &self.provider else {
            return Ok(None);
        };
        let extra = p(CredentialsRequest { attempt, refresh })
            .await
            .map_err(|e| Error::new(ErrorKind::Credentials).with_source(e))?;
        let mut headers = self.headers.clone();
        let mut last = None;
        for (name, value) in extra {
            // `HeaderMap::into_iter` gives the name once per group.
            if let Some(n) = name {
                headers.remove(&n);
                last = Some(n);
            }
            if let Some(n) = &last {
                headers.append(n.clone(), value);
            }
        }
        Ok(Some(headers))
    }

    /// Replaces all extra request headers.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Offers a subprotocol (repeatable, in order of preference).
    pub fn subprotocol(mut self, p: impl Into<String>) -> Self {
        self.subprotocols.push(p.into());
        self
    }

    /// Sets the `User-Agent` header; `None` sends none.
    pub fn user_agent(mut self, ua: Option<String>) -> Self {
        self.user_agent = ua;
        self
    }

    /// Connects through this proxy (`http://`, `socks5://` or `socks5h://`,
    /// with optional `user:password@`), for every target, instead of the
    /// one the environment chooses. The URL is checked when connecting: an
    /// invalid one fails the attempt with [`ErrorKind::InvalidUrl`]. See
    /// [`crate::proxy`].
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = crate::proxy::ProxySetting::Url(url.into());
        self
    }

    /// Connects directly, ignoring the proxy variables of the environment
    /// (`https_proxy`, `http_proxy`...) and any earlier [`ClientBuilder::proxy`].
    /// By default the environment chooses ([`crate::proxy::from_env`]).
    pub fn no_proxy(mut self) -> Self {
        self.proxy = crate::proxy::ProxySetting::Off;
        self
    }

    /// Bounds DNS, TCP, TLS and the HTTP upgrade together (default 10 s).
    pub fn open_timeout(mut self, t: Option<Duration>) -> Self {
        self.open_timeout = t;
        self
    }

    crate::socket::socket_setters!();

    /// Opens the connection: resolves the host, races its addresses (Happy
    /// Eyeballs, RFC 8305), performs the TLS handshake for `wss://`, then
    /// the upgrade, all within the open timeout.
    ///
    /// # Errors
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
        let headers = self.provided_headers(1, false).await?;
        let c = self.connect_full(headers).await?;
        Ok((c.ws, c.response))
    }

    /// Connects, following redirects, within the open timeout. `headers`
    /// replaces the builder's extra headers (a credentials provider's).
    pub(crate) async fn connect_full(&self, headers: Option<HeaderMap>) -> Result<Connected> {
        let headers = headers.unwrap_or_else(|| self.headers.clone());
        let attempt = self.follow_redirects(headers);
        let result = match self.open_timeout {
            Some(t) => match tokio::time::timeout(t, attempt).await {
                Ok(r) => r,
                Err(_) => Err(Error::msg(
                    ErrorKind::Timeout,
                    format!("timed out opening the connection after {t:?}"),
                )),
            },
            None => attempt.await,
        };
        result.map_err(|e| {
            if e.url().is_none() {
                e.with_url(&self.url)
            } else {
                e
            }
        })
    }

    /// Follows 301, 302, 303, 307 and 308 with a Location, at most
    /// [`MAX_REDIRECTS`] hops; never from `wss://` to `ws://`; drops
    /// credentials when the origin changes (as websockets does).
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
                for h in [
                    http::header::AUTHORIZATION,
                    http::header::COOKIE,
                    http::header::PROXY_AUTHORIZATION,
                ] {
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
            Stream::Tcp(tcp)
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

    async fn handshake(
        &self,
        mut io: Stream,
        target: &Target,
        headers: &HeaderMap,
    ) -> Result<(WebSocket, Response)> {
        let mut key = [0u8; 16];
        getrandom::getrandom(&mut key).map_err(|e| {
            Error::msg(
                ErrorKind::Io,
                format!("no randomness for the handshake key: {e}"),
            )
        })?;
        let request = self.request(target, headers);
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
            // A refusal's body is shown in errors: a server that echoes the
            // request back must not make our credentials appear there.
            match progress.map_err(|e| Error::from(e).redact_body(&request.headers))? {
                Progress::NeedMore => continue,
                Progress::Done(a) => break a,
            }
        };
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

/// Resolves a Location against the current URL; maps http(s) to ws(s);
/// refuses a downgrade from wss to ws.
fn redirect_target(current: &str, location: &str) -> std::result::Result<String, String> {
    let base = url::Url::parse(current).map_err(|e| e.to_string())?;
    let mut next = base
        .join(location)
        .map_err(|e| format!("invalid redirect location: {e}"))?;
    let scheme = match next.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => return Err(format!("redirect to unsupported scheme {other:?}")),
    };
    if base.scheme() == "wss" && scheme == "ws" {
        return Err("refusing to follow a redirect from wss:// to ws://".into());
    }
    if next.scheme() != scheme {
        // Url::set_scheme refuses some special-to-special changes; rebuild.
        let s = next.as_str().replacen(next.scheme(), scheme, 1);
        next = url::Url::parse(&s).map_err(|e| e.to_string())?;
    }
    Ok(next.to_string())
}

/// Whether two URLs share scheme, host and port.
fn same_origin(a: &str, b: &str) -> Option<bool> {
    let (a, b) = (url::Url::parse(a).ok()?, url::Url::parse(b).ok()?);
    Some(
        a.scheme() == b.scheme()
            && a.host_str() == b.host_str()
            && a.port_or_known_default() == b.port_or_known_default(),
    )
}

/// TLS options of the client (feature `tls`, on by default): thin calls into
/// `crate::tls`, which holds the rustls code.
#[cfg(feature = "rustls")]
impl ClientBuilder {
    /// Trusts the CA certificates of a PEM file (one or more
    /// `-----BEGIN CERTIFICATE-----` sections) for `wss://`, besides the
    /// built-in roots.
    ///
    /// ```no_run
    /// # async fn run() -> tether::Result<()> {
    /// let ws = tether::ClientBuilder::new("wss://internal.example:8443/feed")
    ///     .add_root_certificate_pem_file("ca.pem")?
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the file cannot be read or holds no
    /// valid certificate.
    pub fn add_root_certificate_pem_file(
        mut self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<Self> {
        self.tls.add_roots_pem_file(path.as_ref())?;
        Ok(self)
    }

    /// Trusts the CA certificates of a PEM text, besides the built-in
    /// roots. See [`ClientBuilder::add_root_certificate_pem_file`].
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the text holds no valid certificate.
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Result<Self> {
        self.tls.add_roots_pem(pem, "root certificates")?;
        Ok(self)
    }

    /// Trusts a CA certificate in DER form, besides the built-in roots.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when it is not a valid certificate.
    pub fn add_root_certificate_der(mut self, der: impl Into<Vec<u8>>) -> Result<Self> {
        self.tls.add_root_der(der.into())?;
        Ok(self)
    }

    /// Whether the built-in roots are trusted (default `true`): the
    /// platform's certificate store with the `tls` feature, Mozilla's
    /// roots with the `webpki-roots` feature. With `false`, only the
    /// certificates added with `add_root_certificate_*` are trusted
    /// (pinning a private CA).
    pub fn tls_built_in_roots(mut self, enabled: bool) -> Self {
        self.tls.set_built_in_roots(enabled);
        self
    }

    /// A client certificate for servers that ask for one (mutual TLS):
    /// the certificate chain (leaf first) and the private key, each from a
    /// PEM file.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when a file cannot be read, holds no
    /// certificate or key, or the key does not match the certificate.
    pub fn client_certificate_pem_file(
        mut self,
        cert_path: impl AsRef<std::path::Path>,
        key_path: impl AsRef<std::path::Path>,
    ) -> Result<Self> {
        self.tls
            .client_auth_pem_files(cert_path.as_ref(), key_path.as_ref())?;
        Ok(self)
    }

    /// A client certificate from PEM texts: the chain (leaf first) and the
    /// private key (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// As [`ClientBuilder::client_certificate_pem_file`].
    pub fn client_certificate_pem(mut self, cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        self.tls.client_auth_pem(cert_chain_pem, key_pem)?;
        Ok(self)
    }

    /// A client certificate in DER form: the chain (leaf first) and the
    /// private key (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// As [`ClientBuilder::client_certificate_pem_file`].
    pub fn client_certificate_der(
        mut self,
        cert_chain: Vec<Vec<u8>>,
        key: Vec<u8>,
    ) -> Result<Self> {
        self.tls.client_auth_der(cert_chain, key)?;
        Ok(self)
    }

    /// **For tests only.** Accepts any server certificate: self-signed,
    /// expired, issued for another name, issued by anyone. The connection
    /// is still encrypted, but to whoever answered: anyone on the path can
    /// read and change it. Never use this in production; trust a private
    /// CA with [`ClientBuilder::add_root_certificate_pem_file`] instead.
    /// A warning is logged on each connection that uses it.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls.set_accept_invalid_certs(accept);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let t = parse_url("ws://example.com/chat?x=1").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.host_header.as_str(),
                t.resource.as_str()
            ),
            ("example.com", 80, "example.com", "/chat?x=1")
        );
        let t = parse_url("ws://[::1]:9000").unwrap();
        assert_eq!(
            (t.host_header.as_str(), t.resource.as_str()),
            ("[::1]:9000", "/")
        );
        assert_eq!(
            parse_url("http://x/").unwrap_err().kind(),
            ErrorKind::InvalidUrl
        );
        assert_eq!(
            parse_url("not a url").unwrap_err().kind(),
            ErrorKind::InvalidUrl
        );
        assert_eq!(
            parse_url("ws://x/#frag").unwrap_err().kind(),
            ErrorKind::InvalidUrl
        );
    }

    #[test]
    fn url_credentials_become_one_basic_header() {
        let b = ClientBuilder::new("ws://al%40ice:p%3Ass@h/");
        let t = parse_url("ws://al%40ice:p%3Ass@h/").unwrap();
        let req = b.request(&t, &b.headers);
        let v = req
            .headers
            .get_all("authorization")
            .iter()
            .collect::<Vec<_>>();
        assert_eq!(v.len(), 1);
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("al@ice:p:ss")
        );
        assert_eq!(v[0], expected.as_str());
        // An explicit header wins, still only one.
        let b = ClientBuilder::new("ws://u:p@h/")
            .header("Authorization", "Bearer t")
            .unwrap();
        let req = b.request(&parse_url("ws://u:p@h/").unwrap(), &b.headers);
        let v = req
            .headers
            .get_all("authorization")
            .iter()
            .collect::<Vec<_>>();
        assert_eq!(v, vec!["Bearer t"]);
    }

    #[test]
    fn redirect_targets() {
        assert_eq!(redirect_target("ws://a/x", "/y").unwrap(), "ws://a/y");
        assert_eq!(
            redirect_target("ws://a/x", "http://b:81/z").unwrap(),
            "ws://b:81/z"
        );
        assert_eq!(
            redirect_target("ws://a/x", "https://b/z").unwrap(),
            "wss://b/z"
        );
        assert!(redirect_target("wss://a/x", "ws://a/y")
            .unwrap_err()
            .contains("wss:// to ws://"));
        assert!(redirect_target("wss://a/x", "http://a/y").is_err());
        assert!(redirect_target("ws://a/x", "ftp://a/y").is_err());
        assert_eq!(same_origin("ws://a/x", "ws://a:80/y"), Some(true));
        assert_eq!(same_origin("ws://a/x", "ws://a:81/y"), Some(false));
        assert_eq!(same_origin("ws://a/x", "ws://b/y"), Some(false));
    }

    #[test]
    fn debug_redacts_credentials() {
        let b = ClientBuilder::new("ws://u:hunter2@h/?token=hunter3")
            .header("cookie", "hunter4")
            .unwrap();
        let s = format!("{b:?}");
        assert!(!s.contains("hunter"), "{s}");
    }

    #[test]
    fn builder_debug_redacts_the_proxy() {
        let b = ClientBuilder::new("ws://h/").proxy("http://u:hunter5@p:3128");
        let shown = format!("{b:?}");
        assert!(shown.contains("p:3128"), "{shown}");
        assert!(!shown.contains("hunter5"), "{shown}");
        let b = ClientBuilder::new("ws://h/").no_proxy();
        assert!(format!("{b:?}").contains("proxy: None"));
        let b = ClientBuilder::new("ws://h/");
        assert!(format!("{b:?}").contains("proxy: FromEnvironment"));
    }
}
