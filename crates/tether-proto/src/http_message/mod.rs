//! The HTTP/1.1 messages of the opening handshake (RFC 6455 §4): the
//! upgrade request and the server's response, as plain data. Re-exported by
//! [`crate::handshake`]; a module of its own so that [`crate::error`] can
//! name a refusal's response without depending on the handshake logic.
//!
//! - `mod.rs`: [`Request`] and [`Response`];
//! - `convert.rs`: conversions to and from the `http` crate's types.

mod convert;

pub use convert::ReasonPhrase;

use crate::redact::{redact_url, RedactedHeaders};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

/// An HTTP/1.1 request: the upgrade request, or any request a tether
/// server reads (its `process_request` hook sees them all).
///
/// Converts to and from [`http::Request<()>`] (and from the
/// [`http::request::Parts`] of a hyper or axum request):
///
/// ```
/// use tether_proto::handshake::Request;
/// let req = http::Request::get("/chat?room=1")
///     .header("host", "example.com")
///     .body(())
///     .unwrap();
/// let ours = Request::from(req);
/// assert_eq!((ours.method.as_str(), ours.path()), ("GET", "/chat"));
/// let back = http::Request::try_from(ours).unwrap();
/// assert_eq!(back.uri(), "/chat?room=1");
/// ```
#[derive(Clone)]
pub struct Request {
    /// The method, `GET` for a valid upgrade.
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// The header fields.
    pub headers: HeaderMap,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &redact_url(&self.target))
            .field("headers", &RedactedHeaders(&self.headers))
            .finish()
    }
}

impl Request {
    /// The request path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A header's value as a string, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP response: the 101 that completes the handshake, or a refusal.
///
/// Converts to and from [`http::Response`] (the body as [`Bytes`]); a
/// reason phrase other than the status's standard one travels in the
/// extensions as a [`ReasonPhrase`]:
///
/// ```
/// use tether_proto::handshake::Response;
/// let ours = Response::with_body(401, "token expired\n").header("www-authenticate", "Bearer");
/// let theirs = http::Response::<bytes::Bytes>::try_from(ours).unwrap();
/// assert_eq!(theirs.status(), http::StatusCode::UNAUTHORIZED);
/// let back = Response::from(theirs);
/// assert_eq!((back.status, back.reason.as_str()), (401, "Unauthorized"));
/// ```
#[derive(Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The header fields.
    pub headers: HeaderMap,
    /// The body (a client keeps at most
    /// [`MAX_BODY_KEPT`](crate::handshake::MAX_BODY_KEPT) bytes).
    pub body: Bytes,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("body", &body_excerpt(&self.body, 200))
            .finish()
    }
}

impl Response {
    /// A response with `status`, its standard reason phrase, no headers and
    /// no body.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            reason: http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_string(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// A response with a plain-text body (sets Content-Type).
    pub fn with_body(status: u16, body: impl Into<Bytes>) -> Self {
        let mut r = Response::new(status);
        r.body = body.into();
        r.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }

    /// Adds a header (panics on names or values that are not valid HTTP,
    /// which only static strings from the caller can cause).
    #[must_use]
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.append(HeaderName::from_static(name), v);
        }
        self
    }

    /// A header's value as a string, if present and visible ASCII.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first `max` bytes of the body as lossy UTF-8, for messages.
    pub fn body_excerpt(&self, max: usize) -> String {
        body_excerpt(&self.body, max)
    }

    /// Serialises the response; adds Content-Length for a non-101 response.
    /// A reason phrase that could not be sent as it is (a CR or LF in it, or
    /// another control character; RFC 9112 §4) is replaced with the
    /// status's standard one.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        // RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ).
        let sendable = self
            .reason
            .bytes()
            .all(|b| b == b'\t' || b == b' ' || (b >= 0x21 && b != 0x7f));
        let reason = if sendable {
            self.reason.as_str()
        } else {
            http::StatusCode::from_u16(self.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
        };
        out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", self.status).as_bytes());
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.status != 101 && !self.headers.contains_key(http::header::CONTENT_LENGTH) {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn body_excerpt(body: &[u8], max: usize) -> String {
    let cut = &body[..body.len().min(max)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if body.len() > max {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_with_a_line_break_is_not_sent() {
        let mut r = Response::new(403);
        r.reason = "Forbidden\r\nSet-Cookie: evil=1".into();
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text:?}");
        assert!(!text.contains("evil"), "{text:?}");
        r.reason = "Nope, not\there".into();
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 403 Nope, not\there\r\n"),
            "{text:?}"
        );
    }
}
