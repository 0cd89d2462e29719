//! Opening client connections: [`connect`] and [`ClientBuilder`].
//!
//! - `mod.rs`: the builder and its settings;
//! - `open.rs`: opening a connection (TCP, TLS, proxies, the upgrade,
//!   redirects, the open timeout);
//! - `request.rs`: [`IntoClientRequest`], what a connection is opened to
//!   (a URL, or an `http::Request` with its headers);
//! - `url.rs`: `ws://` URLs and redirect targets;
//! - `tls.rs`: the TLS options (feature `tls`).

mod open;
mod request;
#[cfg(feature = "rustls")]
mod tls;
mod url;

pub(crate) use open::Connected;
pub use request::IntoClientRequest;
use url::parse_url;

use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::socket::{WebSocket, WebSocketConfig};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tether_proto::handshake::{ClientRequest, USER_AGENT};
use tether_proto::redact::SensitiveHeaders;

/// Opens a WebSocket connection with the default settings to `request`: a
/// URL (`&str`, `String`, `url::Url`, `http::Uri`) or an
/// `http::Request<()>` whose headers are sent (see [`IntoClientRequest`]).
///
/// # Errors
/// See [`ClientBuilder::connect`].
///
/// # Cancel safety
/// Cancelling drops the connection attempt.
pub async fn connect(request: impl IntoClientRequest) -> Result<WebSocket> {
    ClientBuilder::new(request).connect().await
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
/// The setters are chainable and take values as they come; what cannot be
/// sent is refused before anything is: a value with a control character
/// (CR, LF, NUL...) in [`origin`](ClientBuilder::origin),
/// [`user_agent`](ClientBuilder::user_agent) or a header, a
/// [`subprotocol`](ClientBuilder::subprotocol) that is not a token. Such a
/// value makes [`connect`](ClientBuilder::connect) fail with
/// [`ErrorKind::Config`] before any connection is opened, and
/// [`reconnecting`](ClientBuilder::reconnecting) and
/// [`session`](ClientBuilder::session) stop with that error before their
/// first attempt. [`ClientBuilder::validate`] runs the same checks at once.
/// ([`ClientBuilder::header`] parses its name and value, so it returns its
/// error at once.)
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
    /// Why the request given to `new` cannot be sent (an `http::Request`
    /// with another method than GET...): reported by `validate`, so by
    /// `connect` before anything is opened, as an invalid header value is.
    invalid: Option<(ErrorKind, String)>,
    provider: Option<Arc<HeadersProvider>>,
    origin: Option<String>,
    subprotocols: Vec<String>,
    headers: HeaderMap,
    /// Headers whose values are secrets: never shown, scrubbed from echoes.
    sensitive: SensitiveHeaders,
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
            .field("invalid", &self.invalid)
            .field("origin", &self.origin)
            .field("subprotocols", &self.subprotocols)
            .field("headers", &self.sensitive.show(&self.headers))
            .field("sensitive_headers", &self.sensitive)
            .field("open_timeout", &self.open_timeout)
            .field("config", &self.config)
            .field("tls", &self.tls)
            .field("proxy", &self.proxy)
            .finish()
    }
}

impl ClientBuilder {
    /// Settings for `request`, with the defaults: open timeout 10 s, max
    /// message 1 MiB, close timeout 10 s, `User-Agent: tether/<version>`.
    ///
    /// `request` is a URL (`&str`, `String`, [`url::Url`], [`http::Uri`])
    /// or an [`http::Request<()>`](http::Request), whose headers and
    /// subprotocols are sent (see [`IntoClientRequest`]). An invalid URL or
    /// request is reported by [`connect`](ClientBuilder::connect) (and by
    /// [`validate`](ClientBuilder::validate)), before any connection is
    /// opened.
    pub fn new(request: impl IntoClientRequest) -> Self {
        request.into_client_builder()
    }

    /// The defaults, for `url`.
    fn for_url(url: String) -> Self {
        ClientBuilder {
            url,
            invalid: None,
            provider: None,
            origin: None,
            subprotocols: Vec::new(),
            headers: HeaderMap::new(),
            sensitive: SensitiveHeaders::new(),
            user_agent: Some(USER_AGENT.to_string()),
            open_timeout: Some(Duration::from_secs(10)),
            config: WebSocketConfig::default(),
            tls: Default::default(),
            proxy: Default::default(),
        }
    }

    /// Records why the request cannot be sent (the first reason is kept).
    fn invalid_request(&mut self, kind: ErrorKind, why: impl Into<String>) {
        self.invalid.get_or_insert((kind, why.into()));
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

    /// Treats the header `name` (any case) as carrying a secret, besides the
    /// headers the default rule covers (Authorization, Proxy-Authorization,
    /// Cookie, Set-Cookie, and names with `auth`, `token`, `key`, `secret`,
    /// `session`...: see [`tether_proto::redact`]). Its value is never
    /// shown in `Debug` output, and is scrubbed from a refusal's body that
    /// echoes it ([`Error::response`](crate::Error::response), the error's
    /// `Display`, the reconnect events, the logs). Repeatable.
    ///
    /// ```
    /// let b = tether::ClientBuilder::new("ws://127.0.0.1:9001/")
    ///     .header("X-Tenant-Pin", "4321")?
    ///     .sensitive_header("X-Tenant-Pin");
    /// assert!(!format!("{b:?}").contains("4321"));
    /// # Ok::<(), tether::Error>(())
    /// ```
    pub fn sensitive_header(mut self, name: &str) -> Self {
        self.sensitive.add(name);
        self
    }

    /// Checks, without connecting, what [`connect`](ClientBuilder::connect)
    /// checks before it opens a connection: the URL, the values that go into
    /// the upgrade request (`Origin`, `User-Agent`, header values: no
    /// control character but tab, RFC 9110 §5.5; subprotocols: tokens,
    /// each offered once, RFC 6455 §4.1), the credentials of the URL and of
    /// an explicit [`proxy`](ClientBuilder::proxy) (no control character,
    /// RFC 7617 §2), the `http::Request` given to [`ClientBuilder::new`]
    /// (see [`IntoClientRequest`]), and that a
    /// [`tls_config`](ClientBuilder::tls_config) is not combined with
    /// tether's own trust and client-certificate options.
    ///
    /// ```
    /// use tether::{ClientBuilder, ErrorKind};
    /// let b = ClientBuilder::new("ws://127.0.0.1:9001/").origin("https://a.example\r\nX-Injected: 1");
    /// assert_eq!(b.validate().unwrap_err().kind(), ErrorKind::Config);
    /// assert!(ClientBuilder::new("ws://127.0.0.1:9001/").subprotocol("chat.v1").validate().is_ok());
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a value that cannot be sent (the message
    /// names it; a header's value is never shown), [`ErrorKind::InvalidUrl`]
    /// for the URL.
    pub fn validate(&self) -> Result<()> {
        self.validate_settings()?;
        parse_url(&self.url)?;
        Ok(())
    }

    /// What [`ClientBuilder::validate`] checks but the URL.
    fn validate_settings(&self) -> Result<()> {
        if let Some((kind, why)) = &self.invalid {
            return Err(Error::msg(*kind, why.clone()));
        }
        let request = ClientRequest {
            origin: self.origin.clone(),
            subprotocols: self.subprotocols.clone(),
            headers: self.headers.clone(),
            user_agent: self.user_agent.clone(),
            ..ClientRequest::default()
        };
        request.validate()?;
        self.tls.validate()?;
        // Only the proxy's credentials here: an otherwise invalid proxy URL
        // fails the attempt, as one from the environment does.
        if let crate::proxy::ProxySetting::Url(u) = &self.proxy {
            match crate::proxy::Proxy::parse(u) {
                Err(e) if e.kind() == ErrorKind::Config => return Err(e),
                _ => {}
            }
        }
        Ok(())
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

    /// Replaces all extra request headers (those of an `http::Request`
    /// given to [`ClientBuilder::new`] too). (A `HeaderMap` holds only
    /// valid values; [`ClientBuilder::validate`] checks them again.)
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the `Origin` header. A value with a control character (CR, LF,
    /// NUL...) is never sent: connecting fails with [`ErrorKind::Config`]
    /// (see [`ClientBuilder::validate`]).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Offers a subprotocol (repeatable, in order of preference). It must be
    /// a token (letters, digits and ``!#$%&'*+-.^_`|~``), offered once
    /// (RFC 6455 §4.1); otherwise connecting fails with
    /// [`ErrorKind::Config`] (see [`ClientBuilder::validate`]).
    pub fn subprotocol(mut self, p: impl Into<String>) -> Self {
        self.subprotocols.push(p.into());
        self
    }

    /// Sets the `User-Agent` header; `None` sends none. A value with a
    /// control character is never sent: connecting fails with
    /// [`ErrorKind::Config`] (see [`ClientBuilder::validate`]).
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
