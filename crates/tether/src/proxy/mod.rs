//! Proxies: HTTP `CONNECT` and SOCKS5 tunnels, chosen as Python `websockets`
//! (15 and later) chooses them.
//!
//! A client connects through a proxy in one of three ways, set on the
//! [`ClientBuilder`](crate::ClientBuilder):
//!
//! - by default, the proxy comes from the environment ([`from_env`]);
//! - [`ClientBuilder::proxy`](crate::ClientBuilder::proxy) names one
//!   explicitly (used for every target, `no_proxy` does not apply);
//! - [`ClientBuilder::no_proxy`](crate::ClientBuilder::no_proxy) connects
//!   directly, whatever the environment says.
//!
//! # Proxy URLs
//!
//! | URL | protocol |
//! |---|---|
//! | `http://[user:password@]host[:port]` (port 80 by default) | HTTP `CONNECT host:port`, with `Proxy-Authorization: Basic` when the URL has credentials |
//! | `socks5h://[user:password@]host[:port]` (port 1080 by default) | SOCKS5 (RFC 1928); the target's name is sent to the proxy, which resolves it |
//! | `socks5://[user:password@]host[:port]` | SOCKS5; the target's name is resolved here and its address sent, as curl and websockets (`python-socks` with `rdns=False`) do |
//! | `host:port` (no scheme) | `http://`, or `socks5h://` in `socks_proxy` |
//!
//! SOCKS5 credentials use RFC 1929 username/password authentication.
//! `https://` (TLS to the proxy) and SOCKS4 are not supported: such a URL
//! is an [`ErrorKind::InvalidUrl`] error.
//!
//! # Which proxy the environment chooses
//!
//! The order is websockets' `get_proxy()` (`websockets/proxy.py`, 17.4),
//! over `urllib.request.getproxies()`:
//!
//! 1. `no_proxy`: when the target matches it, no proxy (see below);
//! 2. `ws_proxy` for `ws://`, `wss_proxy` for `wss://`;
//! 3. `socks_proxy` (a value `http://host:port` there means
//!    `socks5h://host:port`, as in websockets);
//! 4. `https_proxy` (for `ws://` and `wss://`);
//! 5. `http_proxy` (for `ws://` only);
//! 6. `all_proxy`: a tether addition (curl's convention), used last;
//!    websockets ignores it.
//!
//! Each variable is looked up in lower case first, then in upper case, as
//! urllib does: a lower-case variable wins, even an empty one (an empty value
//! means "none"). As in urllib (CVE-2016-1000110, "httpoxy"), upper-case
//! `HTTP_PROXY` is ignored when `REQUEST_METHOD` is set (a CGI program,
//! where a client's `Proxy:` header becomes `HTTP_PROXY`).
//!
//! `no_proxy` is a comma-separated list, as in urllib's
//! `proxy_bypass_environment`: `*` alone bypasses every host; `example.com`
//! (or `.example.com`) matches that host and every name under it; an entry
//! may carry a port (`example.com:8080`, `[::1]:9001`), and then matches
//! only that port. Two additions: IP literals match only exactly (urllib
//! would let `0.0.1` match `127.0.0.1` by suffix), and `10.0.0.0/8`-style
//! CIDR blocks match the addresses they contain.
//!
//! Loopback targets (`localhost`, `*.localhost`, `127.0.0.0/8`, `::1`) are
//! never sent to a proxy found in the environment: a proxy elsewhere would
//! reach its own loopback, not ours. This differs from websockets on Linux,
//! where urllib bypasses only what `no_proxy` lists; it is what Go's
//! `net/http` does. An explicit [`ClientBuilder::proxy`](crate::ClientBuilder::proxy)
//! is used for loopback targets too.
//!
//! # Errors
//!
//! Every error that comes from a proxy, or from the way to it, says so in its
//! message and in [`Error::is_proxy`]:
//!
//! | failure | kind | retried by default |
//! |---|---|---|
//! | the proxy cannot be reached (refused, reset, unreachable) | [`ErrorKind::Connect`] ([`ErrorKind::Dns`] for its name) | yes |
//! | the HTTP proxy answers the `CONNECT` with a non-2xx status | [`ErrorKind::HttpStatus`], with the proxy's response (status, headers, up to 4 KiB of body) | by status: 500, 502, 503, 504, 408, 429 yes; others no |
//! | 407 from the HTTP proxy, or a SOCKS5 username/password refusal | as above / [`ErrorKind::Handshake`]; [`Error::is_auth_refused`] is true | no |
//! | SOCKS5 reply "general failure", "network unreachable", "host unreachable", "connection refused", "TTL expired" | [`ErrorKind::Connect`] | yes |
//! | SOCKS5 reply "not allowed by ruleset", "command not supported", "address type not supported", no acceptable authentication method | [`ErrorKind::Handshake`] | no |
//! | the proxy closes the connection in the middle of its handshake | [`ErrorKind::Connect`] | yes |
//! | an invalid answer (not HTTP, head over 8 KiB, not SOCKS5) | [`ErrorKind::Handshake`] | no |
//! | an invalid proxy URL, explicit or from the environment | [`ErrorKind::InvalidUrl`] | no |
//! | a user name or password with a control character (RFC 7617 §2); an explicit proxy's fails [`ClientBuilder::validate`](crate::ClientBuilder::validate), before any attempt | [`ErrorKind::Config`] | no |
//!
//! Proxy credentials never appear in `Debug` output, error messages or logs,
//! nor in a refusal's body that echoes them (the base64 token, the decoded
//! `user:password` and the password are scrubbed from it).

mod env;
mod http;
#[cfg(test)]
mod scripted;
mod socks;

use env::select_for;
pub use env::{from_env, select};
pub use http::MAX_CONNECT_HEAD;

use crate::error::{Error, ErrorKind, Result};
use crate::transport::connect_tcp;
use crate::userinfo::{check_no_controls, decode_userinfo};
use std::fmt;
use tether_proto::redact::REDACTED;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The protocol spoken with a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyScheme {
    /// `http://`: an HTTP proxy, asked for a tunnel with `CONNECT host:port`.
    Http,
    /// `socks5://`: SOCKS5; the target's name is resolved locally and its
    /// address sent to the proxy.
    Socks5,
    /// `socks5h://`: SOCKS5; the target's name is sent to the proxy, which
    /// resolves it.
    Socks5h,
}

impl ProxyScheme {
    /// The URL scheme: `"http"`, `"socks5"` or `"socks5h"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyScheme::Http => "http",
            ProxyScheme::Socks5 => "socks5",
            ProxyScheme::Socks5h => "socks5h",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            ProxyScheme::Http => 80,
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => 1080,
        }
    }
}

/// A parsed proxy URL. `Debug` and `Display` never show the password.
///
/// ```
/// use tether::proxy::{Proxy, ProxyScheme};
/// let p = Proxy::parse("socks5h://alice:s3cret@proxy.example:1080")?;
/// assert_eq!(p.scheme(), ProxyScheme::Socks5h);
/// assert_eq!((p.host(), p.port()), ("proxy.example", 1080));
/// assert_eq!(p.to_string(), "socks5h://alice:<redacted>@proxy.example:1080");
/// # Ok::<(), tether::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    scheme: ProxyScheme,
    /// A name or an IP literal (IPv6 without brackets).
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, REDACTED)),
            )
            .finish()
    }
}

/// The URL with the password replaced by `<redacted>`.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if let Some((user, _)) = &self.credentials {
            write!(f, "{user}:{REDACTED}@")?;
        }
        write!(f, "{}", authority(&self.host, self.port))
    }
}

impl Proxy {
    /// Parses a proxy URL: `http://`, `socks5://` or `socks5h://`, with
    /// optional percent-encoded `user:password@`; a URL without a scheme is
    /// `http://`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidUrl`] (with [`Error::is_proxy`]) for an invalid
    /// URL, an unsupported scheme (`https://`, SOCKS4), a path, query or
    /// fragment, or a user name without a password.
    pub fn parse(url: &str) -> Result<Proxy> {
        Proxy::parse_with_default(url, ProxyScheme::Http)
    }

    fn parse_with_default(raw: &str, default: ProxyScheme) -> Result<Proxy> {
        let raw = raw.trim();
        let invalid = |why: &str| {
            Error::msg(
                ErrorKind::InvalidUrl,
                format!(
                    "invalid proxy URL {}: {why}",
                    tether_proto::redact::redact_url(raw)
                ),
            )
            .with_proxy(false)
        };
        let with_scheme;
        let text = if raw.contains("://") {
            raw
        } else {
            with_scheme = format!("{}://{raw}", default.as_str());
            &with_scheme
        };
        let url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
        let scheme = match url.scheme() {
            "http" => ProxyScheme::Http,
            "socks5" => ProxyScheme::Socks5,
            "socks5h" => ProxyScheme::Socks5h,
            "https" => {
                return Err(invalid(
                    "https:// proxies (TLS to the proxy) are not supported; use http://",
                ))
            }
            "socks4" | "socks4a" => {
                return Err(invalid(
                    "SOCKS4 is not supported; use socks5:// or socks5h://",
                ))
            }
            other => {
                return Err(invalid(&format!(
                    "unsupported scheme {other:?}; use http://, socks5:// or socks5h://"
                )))
            }
        };
        if !matches!(url.path(), "" | "/") {
            return Err(invalid("a proxy URL has no path"));
        }
        if url.query().is_some() {
            return Err(invalid("a proxy URL has no query"));
        }
        if url.fragment().is_some() {
            return Err(invalid("a proxy URL has no fragment"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(invalid("no host")),
        };
        let port = url.port().unwrap_or(scheme.default_port());
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (_, None) => return Err(invalid("a user name without a password")),
            (user, Some(pass)) => {
                let user = decode_userinfo(user)
                    .map_err(|_| invalid("the user name is not UTF-8 once decoded"))?;
                let pass = decode_userinfo(pass)
                    .map_err(|_| invalid("the password is not UTF-8 once decoded"))?;
                check_no_controls(&user, &pass).map_err(|why| {
                    let url = tether_proto::redact::redact_url(raw);
                    Error::msg(ErrorKind::Config, format!("invalid proxy URL {url}: {why}"))
                        .with_proxy(false)
                })?;
                Some((user, pass))
            }
        };
        Ok(Proxy {
            scheme,
            host,
            port,
            credentials,
        })
    }

    /// The protocol spoken with the proxy.
    pub fn scheme(&self) -> ProxyScheme {
        self.scheme
    }

    /// The proxy's host: a name, or an IP literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name, when the URL has credentials.
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(u, _)| u.as_str())
    }

    /// Whether the URL has credentials.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Opens a TCP connection to the proxy and a tunnel through it to
    /// `host:port`; what is written to the returned stream reaches the
    /// target (TLS, if any, goes on top).
    pub(crate) async fn tunnel(
        &self,
        host: &str,
        port: u16,
        user_agent: Option<&str>,
    ) -> Result<TcpStream> {
        tracing::debug!(proxy = %self, target = %authority(host, port), "connecting through a proxy");
        let stream = connect_tcp(&self.host, self.port).await.map_err(|e| {
            let message = format!("could not connect to the proxy {self}");
            let message = match e.kind() {
                ErrorKind::Dns => format!("could not resolve the proxy's host ({self})"),
                _ => message,
            };
            e.with_message(message).with_proxy(false)
        })?;
        self.tunnel_over(stream, host, port, user_agent).await
    }

    /// Asks the proxy for a tunnel to `host:port` over `stream`, a
    /// connection to the proxy already open: the `CONNECT` exchange or the
    /// SOCKS5 handshake. Returns the stream, read up to the end of the
    /// proxy's answer, with the errors of [`tunnel`](Self::tunnel) less those
    /// of connecting.
    ///
    /// Not part of the stable API: it is public for the fuzz targets in
    /// `fuzz/`, which feed it hostile answers from an in-memory stream.
    #[doc(hidden)]
    pub async fn tunnel_over<S>(
        &self,
        stream: S,
        host: &str,
        port: u16,
        user_agent: Option<&str>,
    ) -> Result<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match self.scheme {
            ProxyScheme::Http => self.http_connect(stream, host, port, user_agent).await,
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => self.socks5(stream, host, port).await,
        }
    }
}

/// `host:port`, with brackets around an IPv6 literal.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

// --- Choosing a proxy ------------------------------------------------------

/// How a [`ClientBuilder`](crate::ClientBuilder) chooses its proxy.
#[derive(Clone, Default)]
pub(crate) enum ProxySetting {
    /// From the environment, per target ([`from_env`]).
    #[default]
    Env,
    /// Never.
    Off,
    /// This proxy URL, for every target.
    Url(String),
}

impl fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySetting::Env => f.write_str("FromEnvironment"),
            ProxySetting::Off => f.write_str("None"),
            ProxySetting::Url(u) => f
                .debug_tuple("Url")
                .field(&tether_proto::redact::redact_url(u))
                .finish(),
        }
    }
}

impl ProxySetting {
    /// The proxy for `host:port`, if any.
    pub(crate) fn resolve(&self, host: &str, port: u16, secure: bool) -> Result<Option<Proxy>> {
        match self {
            ProxySetting::Off => Ok(None),
            ProxySetting::Url(u) => Proxy::parse(u).map(Some),
            ProxySetting::Env => select_for(host, port, secure, &|name| std::env::var(name).ok()),
        }
    }
}

/// Connects to `host:port`, through the proxy that `setting` chooses, if any.
/// What is written to the returned stream reaches the target.
pub(crate) async fn connect(
    setting: &ProxySetting,
    host: &str,
    port: u16,
    secure: bool,
    user_agent: Option<&str>,
) -> Result<TcpStream> {
    match setting.resolve(host, port, secure)? {
        Some(proxy) => proxy.tunnel(host, port, user_agent).await,
        None => connect_tcp(host, port).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("http://al%40ice:p%3Ass@Proxy.Example:3128/").unwrap();
        assert_eq!(p.scheme(), ProxyScheme::Http);
        assert_eq!((p.host(), p.port()), ("proxy.example", 3128));
        assert_eq!(p.credentials, Some(("al@ice".into(), "p:ss".into())));
        assert_eq!(p.username(), Some("al@ice"));
        let shown = format!("{p} {p:?}");
        assert!(
            !shown.contains("p:ss") && !shown.contains("p%3Ass"),
            "{shown}"
        );
        assert_eq!(Proxy::parse("http://p").unwrap().port(), 80);
        assert_eq!(Proxy::parse("p:8080").unwrap().scheme(), ProxyScheme::Http);
        assert_eq!(Proxy::parse("socks5://p").unwrap().port(), 1080);
        let p = Proxy::parse("socks5h://[::1]:1081").unwrap();
        assert_eq!((p.host(), p.port()), ("::1", 1081));
        assert_eq!(p.to_string(), "socks5h://[::1]:1081");
        assert!(Proxy::parse("http://:pw@p").unwrap().has_credentials());
        for bad in [
            "https://p:3128",
            "socks4://p",
            "socks4a://p",
            "ftp://p",
            "http://p/path",
            "http://p/?q=1",
            "http://p/#f",
            "http://user@p",
            "http://",
            "http://u:%ff@p",
            "not a url at all",
        ] {
            let e = Proxy::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{bad}");
            assert!(e.is_proxy(), "{bad}");
        }
        for bad in ["http://u:p%0D%0Ax@p", "socks5://u%0A:p@p"] {
            let e = Proxy::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
            assert!(e.is_proxy(), "{bad}");
            assert!(e.to_string().contains("control character"), "{e}");
        }
        let e = Proxy::parse("https://u:hunter2@p").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[tokio::test]
    async fn unreachable_proxy_is_a_retryable_connect_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        for scheme in ["http", "socks5h"] {
            let p = Proxy::parse(&format!("{scheme}://u:hunter2@127.0.0.1:{port}")).unwrap();
            let e = p.tunnel("example.com", 80, None).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Connect, "{e}");
            assert!(e.is_proxy());
            assert_eq!(e.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
            let shown = e.to_string();
            assert!(shown.contains("could not connect to the proxy"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}
