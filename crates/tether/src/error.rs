//! The error type of `tether`, built so that a retry policy can decide with
//! one `match` on [`Error::kind`] and the facts attached: the HTTP status and
//! response, `Retry-After`, the close code, the I/O error kind.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
pub(crate) use tether_proto::handshake::Response;
use tether_proto::{CloseCode, CloseFrame};

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarsely: enough to decide whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URL is invalid or its scheme is not supported.
    InvalidUrl,
    /// The host name could not be resolved.
    Dns,
    /// The TCP connection could not be made, or the peer closed or reset it
    /// during the opening handshake.
    Connect,
    /// TLS failed (certificate or host name verification, alerts).
    Tls,
    /// The open timeout (or another deadline) expired.
    Timeout,
    /// The server answered the upgrade with an HTTP status other than 101.
    HttpStatus,
    /// A redirect could not be followed (too many, unsafe, invalid).
    Redirect,
    /// The handshake response (or request) was invalid.
    Handshake,
    /// The peer broke the WebSocket protocol or crossed a limit; the close
    /// frame with the matching code was sent.
    Protocol,
    /// The connection is closed: by a close frame, or abnormally.
    Closed,
    /// The peer stopped answering keepalive pings.
    KeepaliveTimeout,
    /// Another I/O error on an established connection.
    Io,
    /// Invalid configuration or argument.
    Config,
    /// The credentials provider failed to produce headers.
    Credentials,
    /// The reconnect policy's cap on attempts or on time was reached;
    /// [`Error::last_error`] is the last failure, [`Error::attempts`] the count.
    Exhausted,
    /// The reconnect hook stopped with an error of the user's
    /// ([`std::error::Error::source`]).
    Stopped,
    /// A hub's backend (Redis) is unreachable or failed: a publish reached
    /// this process's members only, or a history could not be read.
    Backend,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidUrl => "invalid URL",
            ErrorKind::Dns => "DNS resolution failed",
            ErrorKind::Connect => "connection failed",
            ErrorKind::Tls => "TLS error",
            ErrorKind::Timeout => "timed out",
            ErrorKind::HttpStatus => "HTTP status",
            ErrorKind::Redirect => "redirect refused",
            ErrorKind::Handshake => "invalid handshake",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Closed => "connection closed",
            ErrorKind::KeepaliveTimeout => "keepalive timeout",
            ErrorKind::Io => "I/O error",
            ErrorKind::Config => "invalid configuration",
            ErrorKind::Credentials => "credentials provider failed",
            ErrorKind::Exhausted => "gave up reconnecting",
            ErrorKind::Stopped => "stopped by the reconnect policy",
            ErrorKind::Backend => "hub backend unavailable",
        })
    }
}

/// Who closed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// This end.
    Local,
    /// The peer.
    Remote,
}

/// The error type of `tether`: one type for every operation, with a
/// [`kind`](Error::kind) to match on and the facts a retry policy needs, so
/// that deciding "retry or stop" is one `match`, never string parsing:
///
/// ```
/// use tether::{Error, ErrorKind};
/// use std::time::Duration;
/// fn worth_retrying(e: &Error) -> Option<Duration> {
///     match e.kind() {
///         ErrorKind::Connect | ErrorKind::Dns | ErrorKind::Timeout
///         | ErrorKind::KeepaliveTimeout => Some(Duration::from_secs(1)),
///         ErrorKind::HttpStatus => match e.status() {
///             Some(429 | 500 | 502 | 503 | 504) => {
///                 Some(e.retry_after().unwrap_or(Duration::from_secs(1)))
///             }
///             _ => None, // 401, 403, 404...: a retry cannot fix these
///         },
///         ErrorKind::Closed => match e.close_code().map(u16::from) {
///             Some(1008 | 1003) => None,
///             _ => Some(Duration::from_secs(1)),
///         },
///         _ => None,
///     }
/// }
/// ```
///
/// [`Error::is_retryable`] applies tether's default table (see
/// [`crate::reconnect`]); the reconnect loops call it for you. The HTTP
/// response of a refused upgrade is kept ([`Error::response`]: status,
/// headers, up to 4 KiB of body) with credentials scrubbed, and
/// [`Error::io_kind`] gives the I/O error kind when there is one.
///
/// As in hyper, `Display` describes this error only, in one level; its cause
/// (an I/O error, the protocol error, the last failure before giving up...)
/// is reached through [`std::error::Error::source`], and may have a cause of
/// its own. To show a person everything, print the chain:
///
/// ```
/// fn report(e: &tether::Error) -> String {
///     let mut text = e.to_string();
///     let mut cause = std::error::Error::source(e);
///     while let Some(c) = cause {
///         text = format!("{text}: {c}");
///         cause = c.source();
///     }
///     text
/// }
/// ```
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: Option<String>,
    /// Shared, so that [`Error::duplicate`] keeps the cause.
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    response: Option<Response>,
    /// `Retry-After`, parsed once when the response arrived: an HTTP date
    /// is relative to that moment, so every reader sees the same delay.
    retry_after: Option<Duration>,
    close: Option<(Option<CloseFrame>, Initiator)>,
    url: Option<String>,
    attempts: Option<u32>,
    last: Option<Error>,
    proxy: ProxyMark,
}

/// Whether an error came from a proxy ([`Error::is_proxy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyMark {
    No,
    Yes,
    /// The proxy refused the credentials (HTTP 407, SOCKS5 authentication).
    AuthRefused,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error(Box::new(Inner {
            kind,
            message: None,
            source: None,
            response: None,
            retry_after: None,
            close: None,
            url: None,
            attempts: None,
            last: None,
            proxy: ProxyMark::No,
        }))
    }

    pub(crate) fn msg(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::new(kind).with_message(message)
    }

    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Self {
        self.0.message = Some(message.into());
        self
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(Arc::from(source.into()));
        self
    }

    pub(crate) fn with_response(mut self, response: Response) -> Self {
        self.0.retry_after = response
            .header_str("retry-after")
            .and_then(|v| parse_retry_after(v.trim(), SystemTime::now()));
        self.0.response = Some(response);
        self
    }

    pub(crate) fn with_close(mut self, frame: Option<CloseFrame>, by: Initiator) -> Self {
        self.0.close = Some((frame, by));
        self
    }

    /// Attaches the URL, redacted.
    pub(crate) fn with_url(mut self, url: &str) -> Self {
        self.0.url = Some(tether_proto::redact::redact_url(url));
        self
    }

    /// The error for a reconnect policy that gave up after `attempts`.
    pub(crate) fn exhausted(last: Error, attempts: u32, why: &str) -> Self {
        // The last error is the source, not part of the message.
        let mut e = Error::msg(
            ErrorKind::Exhausted,
            format!("gave up after {attempts} attempts ({why})"),
        );
        e.0.response = last.0.response.clone();
        e.0.retry_after = last.0.retry_after;
        e.0.close = last.0.close.clone();
        e.0.proxy = last.0.proxy;

        e.0.attempts = Some(attempts);
        e.0.last = Some(last);
        e
    }

    /// Marks the error as coming from a proxy; `auth_refused` when the proxy
    /// refused the credentials.
    pub(crate) fn with_proxy(mut self, auth_refused: bool) -> Self {
        self.0.proxy = if auth_refused {
            ProxyMark::AuthRefused
        } else {
            ProxyMark::Yes
        };
        self
    }

    /// Replaces, in the kept response (body, reason, header values), every
    /// secret the request carried by `<redacted>`: see [`crate::secrets`].
    pub(crate) fn redact_body(mut self, secrets: &crate::secrets::Secrets) -> Self {
        if let Some(resp) = &mut self.0.response {
            secrets.scrub_response(resp);
        }
        self
    }

    pub(crate) fn with_attempts(mut self, n: u32) -> Self {
        self.0.attempts = Some(n);
        self
    }

    /// A copy: the same kind, message, cause, response, close frame, URL
    /// and last error.
    pub(crate) fn duplicate(&self) -> Error {
        let i = &self.0;
        Error(Box::new(Inner {
            kind: i.kind,
            message: i.message.clone(),
            source: i.source.clone(),
            response: i.response.clone(),
            retry_after: i.retry_after,
            close: i.close.clone(),
            url: i.url.clone(),
            attempts: i.attempts,
            last: i.last.as_ref().map(Error::duplicate),
            proxy: i.proxy,
        }))
    }

    /// For [`ErrorKind::Exhausted`]: the last failure before giving up.
    pub fn last_error(&self) -> Option<&Error> {
        self.0.last.as_ref()
    }

    /// How many connection attempts the reconnect logic made before this
    /// error ended it, when it did.
    pub fn attempts(&self) -> Option<u32> {
        self.0.attempts
    }

    pub(crate) fn io(kind: ErrorKind, e: std::io::Error) -> Self {
        Error::new(kind).with_source(e)
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The HTTP status, for [`ErrorKind::HttpStatus`].
    pub fn status(&self) -> Option<u16> {
        self.0.response.as_ref().map(|r| r.status)
    }

    /// The HTTP response (status, headers, up to 4 KiB of body), for
    /// [`ErrorKind::HttpStatus`].
    pub fn response(&self) -> Option<&Response> {
        self.0.response.as_ref()
    }

    /// The delay asked for by the response's `Retry-After` header, in
    /// delta-seconds or as an HTTP date (RFC 9110 §10.2.3). A date in the past
    /// gives zero. A date is measured from when the response arrived, so
    /// the value does not change between calls.
    ///
    /// The reconnect policy never lets this shorten a wait below the
    /// backoff delay (see [the retry rules](crate::reconnect#retry-after)).
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// The close frame that ended the connection and who sent it, for
    /// [`ErrorKind::Closed`] and [`ErrorKind::Protocol`].
    pub fn close_frame(&self) -> Option<(Option<&CloseFrame>, Initiator)> {
        self.0.close.as_ref().map(|(f, i)| (f.as_ref(), *i))
    }

    /// The close code: the one received from the peer, or the one sent for a
    /// local failure. 1005 when a close frame had no code, 1006 when the
    /// connection dropped without one.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.0
            .close
            .as_ref()
            .map(|(f, _)| f.as_ref().map_or(CloseCode::NO_STATUS, |f| f.code))
    }

    /// Who closed the connection, when it was closed.
    pub fn initiator(&self) -> Option<Initiator> {
        self.0.close.as_ref().map(|(_, i)| *i)
    }

    /// The I/O error kind, when an I/O error caused this.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        let mut src: Option<&(dyn std::error::Error + 'static)> =
            self.0.source.as_deref().map(|e| e as _);
        while let Some(e) = src {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return Some(io.kind());
            }
            src = e.source();
        }
        None
    }

    /// The protocol error, for [`ErrorKind::Protocol`] and handshake errors.
    pub fn proto_error(&self) -> Option<&tether_proto::Error> {
        self.0
            .source
            .as_deref()
            .and_then(|e| e.downcast_ref::<tether_proto::Error>())
    }

    /// The URL this error is about, with credentials redacted.
    pub fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }

    /// True when the server refused the credentials (HTTP 401 or 403), or a
    /// proxy refused them (HTTP 407, or 401, from an HTTP proxy; a SOCKS5
    /// proxy's username/password refusal); [`Error::is_proxy`] tells which.
    pub fn is_auth_refused(&self) -> bool {
        match self.0.proxy {
            ProxyMark::No => matches!(self.status(), Some(401 | 403 | 407)),
            // A proxy's 403 (a destination it blocks) is not about credentials.
            ProxyMark::Yes => false,
            ProxyMark::AuthRefused => true,
        }
    }

    /// True when the error came from a proxy or from the way to it: the
    /// proxy could not be reached, refused the tunnel ([`Error::status`] and
    /// [`Error::response`] are then the proxy's), or answered invalidly; or
    /// the proxy URL is invalid. See [`crate::proxy`].
    pub fn is_proxy(&self) -> bool {
        self.0.proxy != ProxyMark::No
    }
}

/// Parses a `Retry-After` value relative to `now`.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `e` and its sources, `": "`-separated: everything a person should see
/// (each `Display` shows one level). A source whose text the previous level
/// already ends with is skipped, for errors that print their own source.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !more.is_empty() && !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.0;
        match (&i.message, &i.response) {
            (Some(m), _) => f.write_str(m)?,
            (None, Some(r)) => {
                if matches!(r.status, 401 | 403) {
                    write!(
                        f,
                        "server refused the credentials: HTTP {} {}",
                        r.status, r.reason
                    )?;
                } else {
                    write!(
                        f,
                        "server rejected the WebSocket upgrade: HTTP {} {}",
                        r.status, r.reason
                    )?;
                }
                let body = r.body_excerpt(200);
                let body = body.trim();
                if !body.is_empty() {
                    write!(f, ": {body:?}")?;
                }
            }
            (None, None) => write!(f, "{}", i.kind)?,
        }
        // The source is not printed: `source()` returns it.
        if let (None, None, Some((frame, by))) = (&i.message, &i.response, &i.close) {
            let by = match by {
                Initiator::Local => "locally",
                Initiator::Remote => "by the peer",
            };
            match frame {
                Some(fr) => write!(f, " {by} with {fr}")?,
                None => write!(f, " {by}")?,
            }
        }
        if let Some(url) = &i.url {
            write!(f, " ({url})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.0;
        let mut d = f.debug_struct("Error");
        d.field("kind", &i.kind);
        if let Some(m) = &i.message {
            d.field("message", m);
        }
        if let Some(r) = &i.response {
            d.field("response", r);
        }
        if let Some(c) = &i.close {
            d.field("close", c);
        }
        if let Some(u) = &i.url {
            d.field("url", u);
        }
        if let Some(s) = &i.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match (&self.0.last, &self.0.source) {
            (Some(l), _) => Some(l as _),
            (None, s) => s.as_deref().map(|e| e as _),
        }
    }
}

impl From<tether_proto::Error> for Error {
    fn from(e: tether_proto::Error) -> Self {
        use tether_proto::Error as P;
        match &e {
            P::Protocol(p) => {
                let frame = CloseFrame::new(p.close_code(), "");
                Error::new(ErrorKind::Protocol)
                    .with_close(Some(frame), Initiator::Local)
                    .with_source(e)
            }
            P::Handshake(tether_proto::HandshakeError::Status(r)) => {
                let r = (**r).clone();
                Error::new(ErrorKind::HttpStatus).with_response(r)
            }
            // Our own request: a value of the user's that cannot be sent.
            P::Handshake(tether_proto::HandshakeError::InvalidRequest(m)) => {
                Error::msg(ErrorKind::Config, m.clone())
            }
            P::Handshake(tether_proto::HandshakeError::UnexpectedEof) => {
                Error::new(ErrorKind::Connect)
                    .with_message("connection closed during the opening handshake")
            }
            P::Handshake(_) => Error::new(ErrorKind::Handshake).with_source(e),
            P::Closed => Error::msg(ErrorKind::Closed, "connection is closed"),
            P::InvalidInput(m) => Error::msg(ErrorKind::Config, *m),
            P::AbnormalClosure => Error::msg(
                ErrorKind::Closed,
                "connection closed without a close frame (1006)",
            )
            .with_close(
                Some(CloseFrame::new(CloseCode::ABNORMAL, "")),
                Initiator::Remote,
            ),
            P::Failed(code) => Error::new(ErrorKind::Closed)
                .with_close(Some(CloseFrame::new(*code, "")), Initiator::Local),
            _ => Error::new(ErrorKind::Protocol).with_source(e),
        }
    }
}

impl From<tether_proto::HandshakeError> for Error {
    fn from(e: tether_proto::HandshakeError) -> Self {
        tether_proto::Error::Handshake(e).into()
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind() {
            ErrorKind::Timeout | ErrorKind::KeepaliveTimeout => std::io::ErrorKind::TimedOut,
            ErrorKind::Closed => std::io::ErrorKind::ConnectionAborted,
            _ => e.io_kind().unwrap_or(std::io::ErrorKind::Other),
        };
        std::io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn display_is_one_level_and_the_chain_has_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let io_text = io.to_string();
        let e = Error::io(ErrorKind::Connect, io)
            .with_message("could not connect to h:1")
            .with_url("ws://h:1/");
        assert_eq!(e.to_string(), "could not connect to h:1 (ws://h:1/)");
        let src = std::error::Error::source(&e).expect("the I/O error");
        assert_eq!(src.to_string(), io_text);
        assert_eq!(
            chain(&e),
            format!("could not connect to h:1 (ws://h:1/): {io_text}")
        );

        let proto = tether_proto::Error::from(tether_proto::HandshakeError::BadAccept);
        let e = Error::from(proto);
        assert_eq!(e.to_string(), "invalid handshake");
        assert!(e.proto_error().is_some());
        assert_eq!(
            chain(&e),
            "invalid handshake: Sec-WebSocket-Accept does not match the key"
        );

        let last = Error::io(
            ErrorKind::Connect,
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        )
        .with_message("could not connect to h:1");
        let e = Error::exhausted(last, 3, "max_attempts 3 reached");
        assert_eq!(
            e.to_string(),
            "gave up after 3 attempts (max_attempts 3 reached)"
        );
        assert_eq!(
            chain(&e),
            format!(
                "gave up after 3 attempts (max_attempts 3 reached): \
                 could not connect to h:1: {io_text}"
            )
        );
    }

    #[test]
    fn a_duplicate_keeps_the_cause() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = Error::io(ErrorKind::Io, io).with_url("ws://h/");
        let d = e.duplicate();
        assert_eq!((d.kind(), d.to_string()), (e.kind(), e.to_string()));
        assert_eq!(d.io_kind(), Some(std::io::ErrorKind::ConnectionReset));
        assert_eq!(chain(&d), chain(&e));
        assert_eq!(d.url(), Some("ws://h/"));
    }

    #[test]
    fn chain_skips_a_cause_already_printed() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let m = format!("connection lost: {io}");
        let e = Error::io(ErrorKind::Closed, io).with_message(m.clone());
        assert_eq!(chain(&e), m);
    }

    #[test]
    fn credentials_echoed_in_a_refusal_body_are_redacted() {
        let body = "you sent: Authorization: Bearer hunter2tok; Cookie: sid=hunter3ck; lang=en";
        let e = Error::new(ErrorKind::HttpStatus).with_response(Response::with_body(401, body));
        let mut sent = http::HeaderMap::new();
        sent.insert("authorization", "Bearer hunter2tok".parse().unwrap());
        sent.insert("cookie", "sid=hunter3ck; lang=en".parse().unwrap());
        sent.insert("x-visible", "keep-me".parse().unwrap());
        let mut secrets = crate::secrets::Secrets::default();
        secrets.add_headers(&sent, &tether_proto::redact::SensitiveHeaders::new());
        let e = e.redact_body(&secrets);
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("you sent"), "{shown}");
    }

    #[test]
    fn status_error_shows_status_and_body_but_no_credentials() {
        let mut r = Response::with_body(401, "token expired");
        r.headers
            .insert("set-cookie", "sid=hunter2".parse().unwrap());
        let e = Error::new(ErrorKind::HttpStatus)
            .with_response(r)
            .with_url("ws://u:hunter3@h/?token=hunter4");
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("401"), "{shown}");
        assert!(shown.contains("token expired"), "{shown}");
        assert!(shown.contains("refused the credentials"), "{shown}");
        assert!(!shown.contains("hunter"), "{shown}");
    }
}
