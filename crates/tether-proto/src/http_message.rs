//! The HTTP/1.1 messages of the opening handshake (RFC 6455 §4): the
//! upgrade request and the server's response, as plain data. Re-exported by
//! [`crate::handshake`]; a module of its own so that [`crate::error`] can
//! name a refusal's response without depending on the handshake logic.

use crate::redact::{redact_url, RedactedHeaders};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

/// An HTTP request (the upgrade request).
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
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", self.status, self.reason).as_bytes());
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
