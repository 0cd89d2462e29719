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
//!
//! Proxy credentials never appear in `Debug` output, error messages or logs.

use crate::error::{Error, ErrorKind, Result};
use crate::transport::connect_tcp;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;
use tether_proto::handshake::{Response, MAX_BODY_KEPT};
use tether_proto::redact::REDACTED;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest response head accepted from an HTTP proxy, in bytes.
pub const MAX_CONNECT_HEAD: usize = 8192;
/// The most header fields accepted in an HTTP proxy's response.
const MAX_CONNECT_HEADERS: usize = 64;
/// How long the body of a proxy's refusal is read, at most, before the
/// refusal is reported with what arrived.
const REFUSAL_BODY_WAIT: Duration = Duration::from_secs(2);

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
                let user = percent_decode(user)
                    .ok_or_else(|| invalid("the user name is not UTF-8 once decoded"))?;
                let pass = percent_decode(pass)
                    .ok_or_else(|| invalid("the password is not UTF-8 once decoded"))?;
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
        match self.scheme {
            ProxyScheme::Http => self.http_connect(stream, host, port, user_agent).await,
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => self.socks5(stream, host, port).await,
        }
    }

    // --- HTTP CONNECT ---------------------------------------------------

    fn connect_request(&self, host: &str, port: u16, user_agent: Option<&str>) -> Vec<u8> {
        let target = authority(host, port);
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        // A User-Agent with a line break would inject headers: left out.
        if let Some(ua) = user_agent.filter(|ua| !ua.chars().any(|c| c.is_control())) {
            req.push_str("User-Agent: ");
            req.push_str(ua);
            req.push_str("\r\n");
        }
        if let Some((user, pass)) = &self.credentials {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            req.push_str("Proxy-Authorization: Basic ");
            req.push_str(&token);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.into_bytes()
    }

    async fn http_connect(
        &self,
        mut s: TcpStream,
        host: &str,
        port: u16,
        user_agent: Option<&str>,
    ) -> Result<TcpStream> {
        let target = authority(host, port);
        s.write_all(&self.connect_request(host, port, user_agent))
            .await
            .map_err(|e| {
                Error::io(ErrorKind::Connect, e)
                    .with_message(format!(
                        "connection to the proxy {self} lost while sending the CONNECT"
                    ))
                    .with_proxy(false)
            })?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        let head = loop {
            match parse_head(&buf) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(why) => return Err(self.bad_answer(&why)),
            }
            if buf.len() >= MAX_CONNECT_HEAD {
                return Err(self.bad_answer(&format!(
                    "its response head is longer than {MAX_CONNECT_HEAD} bytes"
                )));
            }
            let room = (MAX_CONNECT_HEAD - buf.len()).min(chunk.len());
            let n = s.read(&mut chunk[..room]).await.map_err(|e| {
                Error::io(ErrorKind::Connect, e)
                    .with_message(format!(
                        "connection to the proxy {self} lost while waiting for its answer to the CONNECT"
                    ))
                    .with_proxy(false)
            })?;
            if n == 0 {
                return Err(Error::msg(
                    ErrorKind::Connect,
                    format!("the proxy {self} closed the connection without answering the CONNECT"),
                )
                .with_proxy(false));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if (200..300).contains(&head.status) {
            if buf.len() > head.len {
                return Err(self.bad_answer(&format!(
                    "it sent {} bytes after its {} answer, before the tunnel was used",
                    buf.len() - head.len,
                    head.status
                )));
            }
            tracing::debug!(proxy = %self, target = %target, status = head.status, "proxy tunnel open");
            return Ok(s);
        }
        let mut response = Response::new(head.status);
        response.reason = head.reason;
        response.headers = head.headers;
        let body_start = buf.len().min(head.len);
        response.body = read_refusal_body(&mut s, buf.split_off(body_start), &response).await;
        // 407 is the proxy's "credentials needed or refused"; some proxies
        // (tinyproxy) answer wrong credentials with 401.
        let auth = matches!(head.status, 401 | 407);
        let mut message = format!(
            "proxy {self} refused the CONNECT to {target}: HTTP {} {}",
            response.status, response.reason
        );
        if auth {
            message.push_str(if self.credentials.is_some() {
                "; the proxy refused the credentials (check the user:password of the proxy URL)"
            } else {
                "; the proxy asks for credentials (put user:password in the proxy URL)"
            });
        } else if response
            .header_str("content-type")
            .is_some_and(|t| t.trim_start().starts_with("text/plain"))
        {
            let body = response.body_excerpt(200);
            let body = body.trim();
            if !body.is_empty() {
                message.push_str(&format!(": {body:?}"));
            }
        }
        tracing::debug!(proxy = %self, target = %target, status = head.status, "proxy refused the CONNECT");
        Err(Error::msg(ErrorKind::HttpStatus, message)
            .with_response(response)
            .with_proxy(auth))
    }

    fn bad_answer(&self, why: &str) -> Error {
        Error::msg(
            ErrorKind::Handshake,
            format!("invalid answer from the proxy {self}: {why}"),
        )
        .with_proxy(false)
    }

    // --- SOCKS5 (RFC 1928, RFC 1929) -------------------------------------

    async fn socks5(&self, mut s: TcpStream, host: &str, port: u16) -> Result<TcpStream> {
        let target = authority(host, port);
        let address = self.socks_address(host, port).await?;
        let lost = |e: std::io::Error| {
            let message = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format!("the SOCKS5 proxy {self} closed the connection during its handshake")
            } else {
                format!("connection to the SOCKS5 proxy {self} lost during its handshake")
            };
            Error::io(ErrorKind::Connect, e)
                .with_message(message)
                .with_proxy(false)
        };
        let fatal = |why: String| {
            Error::msg(ErrorKind::Handshake, format!("SOCKS5 proxy {self}: {why}"))
                .with_proxy(false)
        };

        // Method selection (RFC 1928 §3).
        let greeting: &[u8] = if self.credentials.is_some() {
            &[5, 2, 0x00, 0x02]
        } else {
            &[5, 1, 0x00]
        };
        s.write_all(greeting).await.map_err(lost)?;
        let mut two = [0u8; 2];
        s.read_exact(&mut two).await.map_err(lost)?;
        if two[0] != 5 {
            return Err(fatal(format!(
                "not a SOCKS5 proxy (version byte {} in its answer)",
                two[0]
            )));
        }
        match (two[1], &self.credentials) {
            (0x00, _) => {}
            (0x02, Some((user, pass))) => {
                // Username/password (RFC 1929 §2).
                if user.len() > 255 || pass.len() > 255 {
                    return Err(Error::msg(
                        ErrorKind::Config,
                        format!("SOCKS5 proxy {self}: the user name and the password are limited to 255 bytes each"),
                    )
                    .with_proxy(false));
                }
                let mut auth = Vec::with_capacity(3 + user.len() + pass.len());
                auth.push(1);
                auth.push(user.len() as u8);
                auth.extend_from_slice(user.as_bytes());
                auth.push(pass.len() as u8);
                auth.extend_from_slice(pass.as_bytes());
                s.write_all(&auth).await.map_err(lost)?;
                s.read_exact(&mut two).await.map_err(lost)?;
                if two[0] != 1 {
                    return Err(fatal(format!(
                        "invalid authentication answer (version byte {})",
                        two[0]
                    )));
                }
                if two[1] != 0 {
                    return Err(Error::msg(
                        ErrorKind::Handshake,
                        format!(
                            "SOCKS5 proxy {self} refused the credentials (status {}; check the user:password of the proxy URL)",
                            two[1]
                        ),
                    )
                    .with_proxy(true));
                }
            }
            (0xFF, None) => {
                return Err(Error::msg(
                    ErrorKind::Handshake,
                    format!("SOCKS5 proxy {self} requires authentication (put user:password in the proxy URL)"),
                )
                .with_proxy(true))
            }
            (0xFF, Some(_)) => {
                return Err(fatal(
                    "no acceptable authentication method (offered: none, username/password)"
                        .into(),
                ))
            }
            (m, _) => {
                return Err(fatal(format!(
                    "chose authentication method {m:#04x}, which was not offered"
                )))
            }
        }

        // The CONNECT request (RFC 1928 §4) and its reply (§6).
        let mut req = Vec::with_capacity(6 + address.len());
        req.extend_from_slice(&[5, 1, 0]);
        req.extend_from_slice(&address);
        req.extend_from_slice(&port.to_be_bytes());
        s.write_all(&req).await.map_err(lost)?;
        s.read_exact(&mut two).await.map_err(lost)?;
        if two[0] != 5 {
            return Err(fatal(format!("invalid reply (version byte {})", two[0])));
        }
        if two[1] != 0 {
            let (retryable, what) = socks_reply(two[1]);
            let kind = if retryable {
                ErrorKind::Connect
            } else {
                ErrorKind::Handshake
            };
            return Err(Error::msg(
                kind,
                format!(
                    "SOCKS5 proxy {self} could not connect to {target}: {what} (reply {})",
                    two[1]
                ),
            )
            .with_proxy(false));
        }
        // The rest of the reply: RSV, ATYP, BND.ADDR, BND.PORT.
        s.read_exact(&mut two).await.map_err(lost)?;
        let skip = match two[1] {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => {
                let mut len = [0u8; 1];
                s.read_exact(&mut len).await.map_err(lost)?;
                usize::from(len[0]) + 2
            }
            other => return Err(fatal(format!("invalid address type {other} in its reply"))),
        };
        let mut rest = [0u8; 257];
        s.read_exact(&mut rest[..skip]).await.map_err(lost)?;
        tracing::debug!(proxy = %self, target = %target, "SOCKS5 tunnel open");
        Ok(s)
    }

    /// ATYP and DST.ADDR for `host`: an IP literal as such; a name as such
    /// for `socks5h://`, resolved here for `socks5://`.
    async fn socks_address(&self, host: &str, port: u16) -> Result<Vec<u8>> {
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) if self.scheme == ProxyScheme::Socks5h => {
                if host.len() > 255 {
                    return Err(Error::msg(
                        ErrorKind::InvalidUrl,
                        "a host name longer than 255 bytes cannot be sent to a SOCKS5 proxy",
                    )
                    .with_proxy(false));
                }
                let mut a = Vec::with_capacity(2 + host.len());
                a.push(3);
                a.push(host.len() as u8);
                a.extend_from_slice(host.as_bytes());
                return Ok(a);
            }
            Err(_) => {
                let resolved = tokio::net::lookup_host((host, port)).await.map_err(|e| {
                    Error::io(ErrorKind::Dns, e)
                        .with_message(format!(
                            "could not resolve {host} (for the socks5:// proxy {self}; with socks5h:// the proxy resolves it)"
                        ))
                        .with_proxy(false)
                })?;
                let Some(addr) = resolved.into_iter().next() else {
                    return Err(Error::msg(ErrorKind::Dns, format!("{host} has no address"))
                        .with_proxy(false));
                };
                addr.ip()
            }
        };
        Ok(match ip {
            IpAddr::V4(v4) => [&[1u8][..], &v4.octets()].concat(),
            IpAddr::V6(v6) => [&[4u8][..], &v6.octets()].concat(),
        })
    }
}

/// Whether a SOCKS5 failure reply can be fixed by a retry, and what it says.
fn socks_reply(code: u8) -> (bool, &'static str) {
    match code {
        1 => (true, "general SOCKS server failure"),
        2 => (false, "connection not allowed by ruleset"),
        3 => (true, "network unreachable"),
        4 => (true, "host unreachable"),
        5 => (true, "connection refused"),
        6 => (true, "TTL expired"),
        7 => (false, "command not supported"),
        8 => (false, "address type not supported"),
        _ => (false, "unknown reply code"),
    }
}

/// A parsed response head.
struct Head {
    len: usize,
    status: u16,
    reason: String,
    headers: HeaderMap,
}

/// Parses an HTTP/1.0 or HTTP/1.1 response head; `None` while incomplete.
fn parse_head(buf: &[u8]) -> std::result::Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_CONNECT_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!(
                "its response has more than {MAX_CONNECT_HEADERS} header fields"
            ))
        }
        Err(e) => return Err(format!("not an HTTP response ({e})")),
    };
    let status = resp.code.unwrap_or(0);
    let mut map = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| "an invalid header name in its response".to_string())?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| "an invalid header value in its response".to_string())?;
        map.append(name, value);
    }
    Ok(Some(Head {
        len,
        status,
        reason: resp.reason.unwrap_or("").to_string(),
        headers: map,
    }))
}

/// Reads the body of a proxy's refusal: up to [`MAX_BODY_KEPT`] bytes, until
/// its length is reached, EOF, or [`REFUSAL_BODY_WAIT`]. Chunked bodies are
/// decoded as far as they parse.
async fn read_refusal_body(s: &mut TcpStream, mut body: Vec<u8>, head: &Response) -> Bytes {
    let no_body = matches!(head.status, 100..=199 | 204 | 304);
    let chunked = head
        .header_str("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length = if chunked {
        None
    } else {
        head.header_str("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    let complete = |b: &[u8]| match length {
        Some(n) => b.len() >= n,
        None => chunked && find(b, b"0\r\n\r\n").is_some(),
    };
    if !no_body {
        let deadline = tokio::time::Instant::now() + REFUSAL_BODY_WAIT;
        let mut chunk = [0u8; 2048];
        while body.len() < MAX_BODY_KEPT && !complete(&body) {
            match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
    } else {
        body.clear();
    }
    if let Some(n) = length {
        body.truncate(n);
    }
    body.truncate(MAX_BODY_KEPT);
    if chunked {
        body = dechunk(&body);
    }
    Bytes::from(body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body as far as it parses.
fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(nl) = find(rest, b"\r\n") {
        let line = std::str::from_utf8(&rest[..nl]).unwrap_or("");
        let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        rest = &rest[nl + 2..];
        if size == 0 {
            break;
        }
        let take = size.min(rest.len());
        out.extend_from_slice(&rest[..take]);
        rest = rest[take..].strip_prefix(b"\r\n").unwrap_or(&rest[take..]);
    }
    out
}

/// `host:port`, with brackets around an IPv6 literal.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Strict percent-decoding: `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
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

/// The proxy that the environment chooses for a connection to `url`
/// (`ws://` or `wss://`), by the rules of this module, or `None` for a
/// direct connection.
///
/// # Errors
/// [`ErrorKind::InvalidUrl`] when `url` is not a `ws://` or `wss://` URL, or
/// the chosen variable holds an invalid proxy URL (the error names the
/// variable).
pub fn from_env(url: &str) -> Result<Option<Proxy>> {
    select(url, |name| std::env::var(name).ok())
}

/// As [`from_env`], reading variables through `lookup` instead of the
/// process environment (for tests, or another source of settings).
///
/// ```
/// use tether::proxy::select;
/// let env = |name: &str| match name {
///     "https_proxy" => Some("http://proxy.example:3128".to_string()),
///     "NO_PROXY" => Some(".internal.example".to_string()),
///     _ => None,
/// };
/// let p = select("wss://feed.example/", env)?.expect("a proxy");
/// assert_eq!(p.host(), "proxy.example");
/// assert!(select("ws://chat.internal.example/", env)?.is_none());
/// # Ok::<(), tether::Error>(())
/// ```
///
/// # Errors
/// As [`from_env`].
pub fn select<F>(url: &str, lookup: F) -> Result<Option<Proxy>>
where
    F: Fn(&str) -> Option<String>,
{
    let invalid =
        |why: &str| Error::msg(ErrorKind::InvalidUrl, format!("invalid URL: {why}")).with_url(url);
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    let secure = match parsed.scheme() {
        "ws" => false,
        "wss" => true,
        other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
    };
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(invalid("no host")),
    };
    let port = parsed.port().unwrap_or(if secure { 443 } else { 80 });
    select_for(&host, port, secure, &lookup)
}

/// The variable `<scheme>_proxy` as urllib reads it: lower case first (even
/// empty, which means none), then upper case; `HTTP_PROXY` is ignored in a
/// CGI program. Returns the variable's name and its value.
fn env_var(lookup: &dyn Fn(&str) -> Option<String>, scheme: &str) -> Option<(String, String)> {
    let lower = format!("{scheme}_proxy");
    if let Some(v) = lookup(&lower) {
        return (!v.trim().is_empty()).then_some((lower, v));
    }
    if scheme == "http" && lookup("REQUEST_METHOD").is_some() {
        return None;
    }
    let upper = lower.to_ascii_uppercase();
    let v = lookup(&upper)?;
    (!v.trim().is_empty()).then_some((upper, v))
}

/// The environment's proxy for `host:port` (`host` without brackets).
pub(crate) fn select_for(
    host: &str,
    port: u16,
    secure: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>> {
    if let Some((_, list)) = env_var(lookup, "no") {
        if no_proxy_matches(&list, host, port) {
            return Ok(None);
        }
    }
    if is_loopback(host) {
        return Ok(None);
    }
    // websockets' get_proxy(): ["wss", "socks", "https"] for wss://,
    // ["ws", "socks", "https", "http"] for ws:// (websockets/proxy.py, 17.4);
    // "all" is tether's addition.
    let order: &[&str] = if secure {
        &["wss", "socks", "https", "all"]
    } else {
        &["ws", "socks", "https", "http", "all"]
    };
    for scheme in order {
        let Some((name, value)) = env_var(lookup, scheme) else {
            continue;
        };
        let parsed = if *scheme == "socks" {
            // websockets: a socks_proxy of http://host:port means socks5h.
            let v = value.trim();
            match v.strip_prefix("http://") {
                Some(rest) => {
                    Proxy::parse_with_default(&format!("socks5h://{rest}"), ProxyScheme::Socks5h)
                }
                None => Proxy::parse_with_default(v, ProxyScheme::Socks5h),
            }
        } else {
            Proxy::parse_with_default(&value, ProxyScheme::Http)
        };
        return parsed.map(Some).map_err(|e| {
            let m = format!("{e} (from the environment variable {name})");
            e.with_message(m)
        });
    }
    Ok(None)
}

/// Whether `host` is a loopback name or address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

/// Whether a `no_proxy` list matches `host:port` (see the module
/// documentation).
pub(crate) fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let host_ip = host.parse::<IpAddr>().ok();
    for entry in list.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return true;
        }
        let (name, entry_port) = split_port(entry);
        if entry_port.is_some_and(|p| p != port) {
            continue;
        }
        let name = name.trim_start_matches('.');
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        match host_ip {
            Some(ip) => {
                if let Some((net, bits)) = name.split_once('/') {
                    if cidr_contains(net, bits, ip) {
                        return true;
                    }
                } else if name.parse::<IpAddr>().ok() == Some(ip) {
                    return true;
                }
            }
            None => {
                if host == name
                    || (host.len() > name.len()
                        && host.ends_with(name.as_str())
                        && host.as_bytes()[host.len() - name.len() - 1] == b'.')
                {
                    return true;
                }
            }
        }
    }
    false
}

/// Splits an optional port off a `no_proxy` entry: `[::1]:80`, `::1`,
/// `host:80`, `1.2.3.4:80`, `10.0.0.0/8`.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (entry, None),
        };
    }
    if entry.parse::<IpAddr>().is_ok() || entry.matches(':').count() > 1 {
        return (entry, None);
    }
    match entry.rsplit_once(':') {
        Some((name, p)) => match p.parse::<u16>() {
            Ok(p) => (name, Some(p)),
            // An invalid port: an entry that matches nothing.
            Err(_) => ("", None),
        },
        None => (entry, None),
    }
}

fn cidr_contains(net: &str, bits: &str, ip: IpAddr) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::net::TcpListener;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    /// The proxy host chosen for `url` (`None`: direct).
    fn chosen(url: &str, vars: &[(&str, &str)]) -> Option<String> {
        select(url, env(vars))
            .unwrap()
            .map(|p| format!("{}://{}", p.scheme().as_str(), p.host()))
    }

    const ALL: [(&str, &str); 6] = [
        ("ws_proxy", "http://ws-proxy"),
        ("wss_proxy", "http://wss-proxy"),
        ("socks_proxy", "socks5://socks-proxy"),
        ("https_proxy", "http://https-proxy"),
        ("http_proxy", "http://http-proxy"),
        ("all_proxy", "http://all-proxy"),
    ];

    /// `vars` without the variables named in `drop`.
    fn without(drop: &[&str]) -> Vec<(&'static str, &'static str)> {
        ALL.iter()
            .filter(|(k, _)| !drop.contains(k))
            .copied()
            .collect()
    }

    #[test]
    fn order_for_ws_is_ws_socks_https_http_all() {
        let url = "ws://example.com/";
        let mut gone = vec![];
        for (var, expected) in [
            ("ws_proxy", "http://ws-proxy"),
            ("socks_proxy", "socks5://socks-proxy"),
            ("https_proxy", "http://https-proxy"),
            ("http_proxy", "http://http-proxy"),
            ("all_proxy", "http://all-proxy"),
        ] {
            assert_eq!(
                chosen(url, &without(&gone)).as_deref(),
                Some(expected),
                "{var}"
            );
            gone.push(var);
        }
        gone.push("wss_proxy");
        assert_eq!(chosen(url, &without(&gone)), None);
    }

    #[test]
    fn order_for_wss_is_wss_socks_https_all_never_http() {
        let url = "wss://example.com/";
        let mut gone = vec![];
        for (var, expected) in [
            ("wss_proxy", "http://wss-proxy"),
            ("socks_proxy", "socks5://socks-proxy"),
            ("https_proxy", "http://https-proxy"),
            ("all_proxy", "http://all-proxy"),
        ] {
            assert_eq!(
                chosen(url, &without(&gone)).as_deref(),
                Some(expected),
                "{var}"
            );
            gone.push(var);
        }
        // http_proxy and ws_proxy are left: neither applies to wss://.
        assert_eq!(chosen(url, &without(&gone)), None);
    }

    #[test]
    fn lower_case_wins_and_empty_lower_case_means_none() {
        let url = "ws://example.com/";
        assert_eq!(
            chosen(url, &[("HTTPS_PROXY", "http://upper")]).as_deref(),
            Some("http://upper")
        );
        assert_eq!(
            chosen(
                url,
                &[
                    ("HTTPS_PROXY", "http://upper"),
                    ("https_proxy", "http://lower")
                ]
            )
            .as_deref(),
            Some("http://lower")
        );
        // An empty lower-case variable hides the upper-case one; the next
        // variable in the order applies.
        assert_eq!(
            chosen(
                url,
                &[
                    ("HTTPS_PROXY", "http://upper"),
                    ("https_proxy", ""),
                    ("HTTP_PROXY", "http://plain")
                ]
            )
            .as_deref(),
            Some("http://plain")
        );
        assert_eq!(chosen(url, &[("HTTPS_PROXY", "")]), None);
    }

    #[test]
    fn cgi_ignores_upper_case_http_proxy() {
        let url = "ws://example.com/";
        let cgi = [("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "http://evil")];
        assert_eq!(chosen(url, &cgi), None);
        let cgi = [("REQUEST_METHOD", "GET"), ("http_proxy", "http://ok")];
        assert_eq!(chosen(url, &cgi).as_deref(), Some("http://ok"));
        assert_eq!(
            chosen(url, &[("HTTP_PROXY", "http://fine")]).as_deref(),
            Some("http://fine")
        );
    }

    #[test]
    fn socks_proxy_http_means_socks5h_and_no_scheme_defaults() {
        let url = "ws://example.com/";
        assert_eq!(
            chosen(url, &[("socks_proxy", "http://s:1080")]).as_deref(),
            Some("socks5h://s")
        );
        assert_eq!(
            chosen(url, &[("socks_proxy", "s:1080")]).as_deref(),
            Some("socks5h://s")
        );
        assert_eq!(
            chosen(url, &[("https_proxy", "corp-proxy:3128")]).as_deref(),
            Some("http://corp-proxy")
        );
        let p = select(url, env(&[("ALL_PROXY", "socks5://u:p@s")]))
            .unwrap()
            .unwrap();
        assert_eq!((p.scheme(), p.port()), (ProxyScheme::Socks5, 1080));
    }

    #[test]
    fn no_proxy_comes_first() {
        let vars = [("ws_proxy", "http://p"), ("no_proxy", "example.com")];
        assert_eq!(chosen("ws://example.com/", &vars), None);
        assert_eq!(chosen("ws://a.example.com:81/", &vars), None);
        assert_eq!(
            chosen("ws://other.com/", &vars).as_deref(),
            Some("http://p")
        );
        let vars = [("HTTPS_PROXY", "http://p"), ("NO_PROXY", "*")];
        assert_eq!(chosen("wss://example.com/", &vars), None);
        // An empty lower-case no_proxy hides NO_PROXY.
        let vars = [
            ("HTTPS_PROXY", "http://p"),
            ("NO_PROXY", "*"),
            ("no_proxy", ""),
        ];
        assert_eq!(
            chosen("wss://example.com/", &vars).as_deref(),
            Some("http://p")
        );
    }

    #[test]
    fn loopback_is_never_proxied_from_the_environment() {
        let vars = [("http_proxy", "http://p")];
        for url in [
            "ws://localhost/",
            "ws://LOCALHOST:9001/",
            "ws://app.localhost/",
            "ws://127.0.0.1:9001/",
            "ws://127.1.2.3/",
            "ws://[::1]:9001/",
        ] {
            assert_eq!(chosen(url, &vars), None, "{url}");
        }
        assert_eq!(chosen("ws://10.0.0.1/", &vars).as_deref(), Some("http://p"));
    }

    #[test]
    fn invalid_proxy_in_the_environment_names_the_variable() {
        let e = select(
            "ws://example.com/",
            env(&[("HTTPS_PROXY", "ftp://u:hunter2@p/")]),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidUrl);
        assert!(e.is_proxy());
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("HTTPS_PROXY"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn no_proxy_matching() {
        let m = no_proxy_matches;
        // Names and suffixes, leading dots, case, trailing dots.
        assert!(m("example.com", "example.com", 80));
        assert!(m("example.com", "a.b.example.com", 80));
        assert!(m(".example.com", "example.com", 80));
        assert!(m(".example.com", "a.example.com", 80));
        assert!(m("EXAMPLE.com", "a.Example.COM", 80));
        assert!(m("example.com.", "example.com", 80));
        assert!(!m("example.com", "badexample.com", 80));
        assert!(!m("example.com", "example.com.evil", 80));
        assert!(!m("a.example.com", "example.com", 80));
        // Lists, spaces, empty entries, `*`.
        assert!(m(" foo.org , , example.com ", "example.com", 80));
        assert!(m("*", "anything", 1));
        assert!(m("foo.org,*", "anything", 1));
        assert!(!m("", "example.com", 80));
        assert!(!m(" , ", "example.com", 80));
        // Ports.
        assert!(m("example.com:8080", "example.com", 8080));
        assert!(!m("example.com:8080", "example.com", 80));
        assert!(m(".example.com:8080", "a.example.com", 8080));
        assert!(!m("example.com:bad", "example.com", 80));
        // IP literals: exact, never by suffix.
        assert!(m("10.1.2.3", "10.1.2.3", 80));
        assert!(!m("1.2.3", "10.1.2.3", 80));
        assert!(!m("0.0.1", "127.0.0.1", 80));
        assert!(m("10.1.2.3:9001", "10.1.2.3", 9001));
        assert!(!m("10.1.2.3:9001", "10.1.2.3", 9002));
        assert!(m("::1", "::1", 80));
        assert!(m("[::1]", "::1", 80));
        assert!(m("[::1]:9001", "[::1]", 9001));
        assert!(!m("[::1]:9001", "::1", 9002));
        assert!(m("fe80::1", "FE80::1", 80));
        assert!(!m("10.1.2.3", "example.com", 80));
        // CIDR blocks.
        assert!(m("10.0.0.0/8", "10.200.3.4", 80));
        assert!(!m("10.0.0.0/8", "11.0.0.1", 80));
        assert!(m("192.168.1.0/24", "192.168.1.77", 80));
        assert!(m("0.0.0.0/0", "8.8.8.8", 80));
        assert!(m("fd00::/8", "fd12::1", 80));
        assert!(!m("fd00::/8", "fe80::1", 80));
        assert!(!m("10.0.0.0/33", "10.0.0.1", 80));
        assert!(!m("10.0.0.0/8", "fd00::1", 80));
        assert!(!m("10.0.0.0/8", "ten.example", 80));
    }

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
        let e = Proxy::parse("https://u:hunter2@p").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn builder_debug_redacts_the_proxy() {
        let b = crate::ClientBuilder::new("ws://h/").proxy("http://u:hunter5@p:3128");
        let shown = format!("{b:?}");
        assert!(shown.contains("p:3128"), "{shown}");
        assert!(!shown.contains("hunter5"), "{shown}");
        let b = crate::ClientBuilder::new("ws://h/").no_proxy();
        assert!(format!("{b:?}").contains("proxy: None"));
        let b = crate::ClientBuilder::new("ws://h/");
        assert!(format!("{b:?}").contains("proxy: FromEnvironment"));
    }

    #[test]
    fn connect_request_bytes() {
        let p = Proxy::parse("http://alice:s3cret@p:3128").unwrap();
        let req = String::from_utf8(p.connect_request("::1", 9001, Some("tether/x"))).unwrap();
        assert_eq!(
            req,
            "CONNECT [::1]:9001 HTTP/1.1\r\nHost: [::1]:9001\r\nUser-Agent: tether/x\r\n\
             Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n"
        );
        let p = Proxy::parse("http://p:3128").unwrap();
        let req = String::from_utf8(p.connect_request("h", 80, Some("a\r\nX-Evil: 1"))).unwrap();
        assert_eq!(req, "CONNECT h:80 HTTP/1.1\r\nHost: h:80\r\n\r\n");
    }

    #[test]
    fn chunked_bodies_decode_as_far_as_they_parse() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
        assert_eq!(dechunk(b"5\r\nhel"), b"hel");
        assert_eq!(dechunk(b"zz\r\nhello"), b"");
        assert_eq!(dechunk(b"ffffffffffffffffffff\r\nx"), b"");
    }

    // --- Hostile proxies: scripted answers on a loopback listener ---------

    /// A one-connection proxy that reads what the client sends first, then
    /// writes `answer` (in pieces, to exercise partial reads) and, if
    /// `close`, closes.
    async fn scripted(answer: Vec<u8>, close: bool) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = vec![0u8; 4096];
            let n = s.read(&mut got).await.unwrap_or(0);
            got.truncate(n);
            for piece in answer.chunks(7) {
                if s.write_all(piece).await.is_err() {
                    break;
                }
            }
            if !close {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            got
        });
        (format!("127.0.0.1:{}", addr.port()), task)
    }

    async fn through(scheme: &str, answer: &[u8], close: bool) -> Result<TcpStream> {
        let (addr, _task) = scripted(answer.to_vec(), close).await;
        let p = Proxy::parse(&format!("{scheme}://{addr}")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), p.tunnel("example.com", 80, None))
            .await
            .expect("a bounded answer")
    }

    #[tokio::test]
    async fn http_connect_success_with_http_1_0() {
        through(
            "http",
            b"HTTP/1.0 200 Connection established\r\nProxy-agent: x\r\n\r\n",
            false,
        )
        .await
        .unwrap();
        through("http", b"HTTP/1.1 204 OK\r\n\r\n", false)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn http_connect_refusals_keep_the_response() {
        let e = through(
            "http",
            b"HTTP/1.1 503 Busy\r\nRetry-After: 3\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\ntoo busy!extra",
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::HttpStatus);
        assert_eq!(e.status(), Some(503));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(&e.response().unwrap().body[..], b"too busy!");
        assert!(e.is_proxy() && !e.is_auth_refused());
        let shown = e.to_string();
        assert!(shown.contains("refused the CONNECT"), "{shown}");
        assert!(shown.contains("too busy!"), "{shown}");

        let e = through(
            "http",
            b"HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n<html>",
            true,
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), Some(407));
        assert!(e.is_auth_refused() && e.is_proxy());
        assert_eq!(&e.response().unwrap().body[..], b"<html>");
        assert!(e.to_string().contains("asks for credentials"), "{e}");

        let e = through(
            "http",
            b"HTTP/1.1 502 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(&e.response().unwrap().body[..], b"abc");
    }

    #[tokio::test]
    async fn http_connect_hostile_answers() {
        // A head that never ends.
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        while long.len() < 3 * MAX_CONNECT_HEAD {
            long.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let e = through("http", &long, false).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Handshake, "{e}");
        let e = through("http", &[b'x'; 3 * MAX_CONNECT_HEAD], false)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Handshake, "{e}");
        // Too many headers.
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let e = through("http", &many, false).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Handshake, "{e}");
        // Not HTTP, binary garbage, HTTP/2.
        for junk in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            &[0u8, 159, 255, 13, 10, 13, 10][..],
            &b"HTTP/2 200\r\n\r\n"[..],
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
        ] {
            let e = through("http", junk, false).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Handshake, "{junk:?}: {e}");
            assert!(e.is_proxy());
        }
        // Bytes after a 200 head.
        let e = through("http", b"HTTP/1.1 200 OK\r\n\r\nsurprise", false)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Handshake, "{e}");
        // Closed before answering, or in the middle of the head: retryable.
        for partial in [&b""[..], &b"HTTP/1.1 200 OK\r\nX-"[..]] {
            let e = through("http", partial, true).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Connect, "{e}");
            assert!(e.is_proxy());
        }
        // A refusal whose body never ends is reported after a bounded wait.
        let e = through(
            "http",
            b"HTTP/1.1 500 Oops\r\nContent-Length: 100000\r\n\r\nabc",
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), Some(500));
        assert_eq!(&e.response().unwrap().body[..], b"abc");
    }

    #[tokio::test]
    async fn socks5_replies() {
        // Success: method "none", then a reply with a domain-name address.
        let mut ok = vec![5, 0, 5, 0, 0, 3, 4];
        ok.extend_from_slice(b"host\x00\x50");
        let (addr, task) = scripted(ok, false).await;
        let p = Proxy::parse(&format!("socks5h://{addr}")).unwrap();
        p.tunnel("example.com", 80, None).await.unwrap();
        // The greeting was read alone (the script answers after the first
        // read); the request follows the method choice.
        assert_eq!(task.await.unwrap(), vec![5, 1, 0]);

        for (code, kind) in [
            (1, ErrorKind::Connect),
            (2, ErrorKind::Handshake),
            (3, ErrorKind::Connect),
            (4, ErrorKind::Connect),
            (5, ErrorKind::Connect),
            (6, ErrorKind::Connect),
            (7, ErrorKind::Handshake),
            (8, ErrorKind::Handshake),
            (9, ErrorKind::Handshake),
            (255, ErrorKind::Handshake),
        ] {
            let e = through("socks5h", &[5, 0, 5, code], true)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), kind, "reply {code}: {e}");
            assert!(e.is_proxy() && !e.is_auth_refused(), "{code}");
            assert!(e.to_string().contains(&format!("reply {code}")), "{e}");
        }
        // No acceptable method, without credentials: the proxy wants some.
        let e = through("socks5h", &[5, 0xFF], true).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Handshake);
        assert!(e.is_auth_refused(), "{e}");
        // Hostile: not SOCKS5, a method not offered, an unknown address
        // type, EOF at every step.
        for (answer, kind) in [
            (&b"HTTP/1.1 400 Bad\r\n\r\n"[..], ErrorKind::Handshake),
            (&[5, 2][..], ErrorKind::Handshake),
            (&[5, 0x80][..], ErrorKind::Handshake),
            (&[5, 0, 5, 0, 0, 9, 0, 0][..], ErrorKind::Handshake),
            (&[4, 0, 0x5a][..], ErrorKind::Handshake),
            (&[][..], ErrorKind::Connect),
            (&[5][..], ErrorKind::Connect),
            (&[5, 0, 5][..], ErrorKind::Connect),
            (&[5, 0, 5, 0, 0, 1, 127][..], ErrorKind::Connect),
            (&[5, 0, 5, 0, 0, 3, 200, b'a'][..], ErrorKind::Connect),
        ] {
            let e = through("socks5h", answer, true).await.unwrap_err();
            assert_eq!(e.kind(), kind, "{answer:?}: {e}");
            assert!(e.is_proxy());
        }
    }

    #[tokio::test]
    async fn socks5_credentials() {
        let (addr, _t) = scripted(vec![5, 2, 1, 1], true).await;
        let p = Proxy::parse(&format!("socks5h://alice:hunter2@{addr}")).unwrap();
        let e = p.tunnel("example.com", 80, None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Handshake);
        assert!(e.is_auth_refused() && e.is_proxy(), "{e}");
        assert!(e.to_string().contains("refused the credentials"), "{e}");
        assert!(!format!("{e} {e:?}").contains("hunter2"));

        let long = "x".repeat(256);
        let (addr, _t) = scripted(vec![5, 2], true).await;
        let p = Proxy::parse(&format!("socks5h://{long}:pw@{addr}")).unwrap();
        let e = p.tunnel("example.com", 80, None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    }

    #[tokio::test]
    async fn socks5_addresses() {
        let h = Proxy::parse("socks5h://p").unwrap();
        assert_eq!(
            h.socks_address("example.com", 80).await.unwrap(),
            b"\x03\x0bexample.com"
        );
        assert_eq!(
            h.socks_address("10.1.2.3", 80).await.unwrap(),
            [1, 10, 1, 2, 3]
        );
        let mut v6 = vec![4];
        v6.extend_from_slice(&"::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(h.socks_address("::1", 80).await.unwrap(), v6);
        assert!(h.socks_address(&"a".repeat(256), 80).await.is_err());
        // socks5:// resolves here.
        let local = Proxy::parse("socks5://p").unwrap();
        let a = local.socks_address("localhost", 80).await.unwrap();
        assert!(a[0] == 1 || a[0] == 4, "{a:?}");
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
