//! The client side of the opening handshake (RFC 6455 §4.1).

use super::{
    accept_key, header_has_token, scan_head, to_header_map, Response, MAX_BODY_KEPT, MAX_HEADERS,
};
use crate::connection::Negotiated;
use crate::error::HandshakeError;
use crate::redact::RedactedHeaders;
use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use std::fmt;

/// What a client asks for in its upgrade request.
#[derive(Clone, Default)]
pub struct ClientRequest {
    /// The `Host` header value: host, and port when not the scheme's default.
    pub host: String,
    /// The request target: path and query.
    pub target: String,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// Subprotocols offered, in order of preference.
    pub subprotocols: Vec<String>,
    /// Extra headers (Authorization, cookies, ...). Headers that the
    /// handshake sets itself (Host, Upgrade, Connection, Sec-WebSocket-*)
    /// are ignored here.
    pub headers: HeaderMap,
    /// The `User-Agent` header; `None` sends none.
    pub user_agent: Option<String>,
    /// permessage-deflate to offer; `None` offers no extension.
    pub compression: Option<crate::deflate::DeflateConfig>,
}

impl fmt::Debug for ClientRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRequest")
            .field("host", &self.host)
            .field("target", &crate::redact::redact_url(&self.target))
            .field("origin", &self.origin)
            .field("subprotocols", &self.subprotocols)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("user_agent", &self.user_agent)
            .field("compression", &self.compression)
            .finish()
    }
}

/// The default `User-Agent`: `tether/<version>`.
pub const USER_AGENT: &str = concat!("tether/", env!("CARGO_PKG_VERSION"));

/// What [`ClientHandshake::receive`] found.
#[derive(Debug)]
pub enum Progress {
    /// The response is not complete yet.
    NeedMore,
    /// The server switched protocols.
    Done(Box<Accepted>),
}

/// A successful handshake.
#[derive(Debug)]
pub struct Accepted {
    /// The 101 response.
    pub response: Response,
    /// The subprotocol the server chose, if any.
    pub subprotocol: Option<String>,
    /// Extensions negotiated.
    pub negotiated: Negotiated,
    /// Bytes received after the response: the first frames. Feed them to the
    /// connection.
    pub leftover: Bytes,
}

#[derive(Debug)]
enum Phase {
    Head,
    Body {
        head: Response,
        remaining: Option<usize>,
        chunked: bool,
    },
    Done,
}

/// The client side of the handshake: build the request, then check the
/// response.
///
/// ```
/// use tether_proto::handshake::{ClientHandshake, ClientRequest, Progress};
/// let req = ClientRequest { host: "example.com".into(), target: "/chat".into(), ..Default::default() };
/// let mut hs = ClientHandshake::new(&req, [0; 16]);
/// let request_bytes = hs.request().to_vec(); // write these to the transport
/// # assert!(request_bytes.starts_with(b"GET /chat HTTP/1.1\r\n"));
/// let accept = tether_proto::handshake::accept_key("AAAAAAAAAAAAAAAAAAAAAA==");
/// let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
/// assert!(matches!(hs.receive(resp.as_bytes()), Ok(Progress::Done(_))));
/// ```
pub struct ClientHandshake {
    request: Vec<u8>,
    expected_accept: String,
    subprotocols: Vec<String>,
    compression: Option<crate::deflate::DeflateConfig>,
    buf: BytesMut,
    phase: Phase,
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Prepares the request. `key` must come from a CSPRNG (RFC 6455 §4.1);
    /// it is sent base64-encoded as `Sec-WebSocket-Key`.
    pub fn new(req: &ClientRequest, key: [u8; 16]) -> Self {
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let mut r = String::with_capacity(256);
        let target = if req.target.is_empty() {
            "/"
        } else {
            &req.target
        };
        r.push_str(&format!("GET {target} HTTP/1.1\r\nHost: {}\r\n", req.host));
        r.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\n");
        r.push_str(&format!(
            "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        ));
        if let Some(o) = &req.origin {
            r.push_str(&format!("Origin: {o}\r\n"));
        }
        if !req.subprotocols.is_empty() {
            r.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                req.subprotocols.join(", ")
            ));
        }
        if let Some(c) = &req.compression {
            r.push_str(&format!(
                "Sec-WebSocket-Extensions: {}\r\n",
                c.client_offer()
            ));
        }
        let mut request = r.into_bytes();
        for (name, value) in &req.headers {
            if is_reserved(name.as_str()) {
                continue;
            }
            request.extend_from_slice(name.as_str().as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        if let Some(ua) = &req.user_agent {
            if !req.headers.contains_key(http::header::USER_AGENT) {
                request.extend_from_slice(format!("User-Agent: {ua}\r\n").as_bytes());
            }
        }
        request.extend_from_slice(b"\r\n");
        ClientHandshake {
            request,
            expected_accept: accept_key(&key),
            subprotocols: req.subprotocols.clone(),
            compression: req.compression,
            buf: BytesMut::new(),
            phase: Phase::Head,
        }
    }

    /// The request bytes to write to the transport.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Feeds response bytes. Returns [`Progress::NeedMore`] until the
    /// response is complete.
    ///
    /// # Errors
    /// [`HandshakeError::Status`] for a status other than 101, once its body
    /// (up to [`MAX_BODY_KEPT`] bytes) has arrived; other variants for an
    /// invalid or malformed response.
    pub fn receive(&mut self, data: &[u8]) -> Result<Progress, HandshakeError> {
        self.buf.extend_from_slice(data);
        self.advance()
    }

    /// Tells the handshake that the transport reached EOF.
    ///
    /// # Errors
    /// [`HandshakeError::Status`] if a refusal's body was being read (EOF
    /// ends it); [`HandshakeError::UnexpectedEof`] otherwise.
    pub fn receive_eof(&mut self) -> Result<Progress, HandshakeError> {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Body {
                mut head, chunked, ..
            } => {
                head.body = finish_body(&self.buf, chunked);
                Err(HandshakeError::Status(Box::new(head)))
            }
            _ => Err(HandshakeError::UnexpectedEof),
        }
    }

    fn advance(&mut self) -> Result<Progress, HandshakeError> {
        if let Phase::Head = self.phase {
            let Some(head_len) = scan_head(&self.buf)? else {
                return Ok(Progress::NeedMore);
            };
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf[..head_len]) {
                Ok(httparse::Status::Complete(_)) => {}
                Ok(httparse::Status::Partial) => {
                    return Err(HandshakeError::Malformed("incomplete response head".into()))
                }
                Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
            }
            let response = Response {
                status: resp.code.unwrap_or(0),
                reason: resp.reason.unwrap_or("").to_string(),
                headers: to_header_map(resp.headers)?,
                body: Bytes::new(),
            };
            if resp.version != Some(1) {
                return Err(HandshakeError::Malformed("response is not HTTP/1.1".into()));
            }
            self.buf.advance(head_len);
            if response.status == 101 {
                self.phase = Phase::Done;
                return self.validate(response);
            }
            let chunked = header_has_token(&response.headers, "transfer-encoding", "chunked");
            let remaining = if chunked {
                None
            } else {
                response
                    .header_str("content-length")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            };
            self.phase = Phase::Body {
                head: response,
                remaining,
                chunked,
            };
        }
        if let Phase::Body {
            remaining, chunked, ..
        } = &self.phase
        {
            // The body is complete when its length is known and reached,
            // when a chunked body's last chunk arrived, or at the cap.
            let done = match remaining {
                Some(n) => self.buf.len() >= *n,
                None if *chunked => {
                    find(&self.buf, b"\r\n0\r\n\r\n").is_some()
                        || self.buf.starts_with(b"0\r\n\r\n")
                }
                None => false,
            } || self.buf.len() >= MAX_BODY_KEPT;
            if done {
                let chunked = *chunked;
                let Phase::Body {
                    mut head,
                    remaining,
                    ..
                } = std::mem::replace(&mut self.phase, Phase::Done)
                else {
                    unreachable!()
                };
                let body = &self.buf[..remaining.unwrap_or(usize::MAX).min(self.buf.len())];
                head.body = finish_body(body, chunked);
                return Err(HandshakeError::Status(Box::new(head)));
            }
            return Ok(Progress::NeedMore);
        }
        Err(HandshakeError::Malformed(
            "handshake already finished".into(),
        ))
    }

    /// RFC 6455 §4.1, the client's checks of a 101 response.
    fn validate(&mut self, response: Response) -> Result<Progress, HandshakeError> {
        let h = &response.headers;
        if !h.contains_key("upgrade") {
            return Err(HandshakeError::MissingHeader("Upgrade"));
        }
        if !header_has_token(h, "upgrade", "websocket") {
            return Err(HandshakeError::InvalidHeader("Upgrade"));
        }
        if !h.contains_key("connection") {
            return Err(HandshakeError::MissingHeader("Connection"));
        }
        if !header_has_token(h, "connection", "upgrade") {
            return Err(HandshakeError::InvalidHeader("Connection"));
        }
        let accept = h.get_all("sec-websocket-accept").iter().collect::<Vec<_>>();
        match accept.as_slice() {
            [] => return Err(HandshakeError::MissingHeader("Sec-WebSocket-Accept")),
            [one] if one.as_bytes() == self.expected_accept.as_bytes() => {}
            _ => return Err(HandshakeError::BadAccept),
        }
        // Only permessage-deflate can be offered; anything else, or deflate
        // when not offered, is an error (RFC 6455 §4.1, RFC 7692 §5).
        let values: Vec<&str> = h
            .get_all("sec-websocket-extensions")
            .iter()
            .map(|v| {
                v.to_str()
                    .map_err(|_| HandshakeError::InvalidHeader("Sec-WebSocket-Extensions"))
            })
            .collect::<Result<_, _>>()?;
        let deflate = match crate::deflate::client_accept(values, self.compression.as_ref()) {
            Ok(d) => d,
            Err(crate::deflate::ResponseError::Unoffered) => {
                return Err(HandshakeError::UnofferedExtension)
            }
            Err(crate::deflate::ResponseError::Invalid) => {
                return Err(HandshakeError::InvalidHeader("Sec-WebSocket-Extensions"))
            }
        };
        let protos = h
            .get_all("sec-websocket-protocol")
            .iter()
            .collect::<Vec<_>>();
        let subprotocol = match protos.as_slice() {
            [] => None,
            [one] => {
                let p = one
                    .to_str()
                    .map_err(|_| HandshakeError::InvalidHeader("Sec-WebSocket-Protocol"))?
                    .trim();
                if !self.subprotocols.iter().any(|o| o == p) {
                    return Err(HandshakeError::UnofferedSubprotocol);
                }
                Some(p.to_string())
            }
            _ => return Err(HandshakeError::InvalidHeader("Sec-WebSocket-Protocol")),
        };
        let leftover = self.buf.split().freeze();
        Ok(Progress::Done(Box::new(Accepted {
            response,
            subprotocol,
            negotiated: Negotiated {
                deflate,
                ..Negotiated::default()
            },
            leftover,
        })))
    }
}

fn is_reserved(name: &str) -> bool {
    [
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    ]
    .iter()
    .any(|r| name.eq_ignore_ascii_case(r))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Keeps at most [`MAX_BODY_KEPT`] bytes, decoding chunked encoding when it
/// parses (otherwise the raw bytes are kept).
fn finish_body(raw: &[u8], chunked: bool) -> Bytes {
    let raw = &raw[..raw.len().min(MAX_BODY_KEPT)];
    if chunked {
        let mut out = Vec::new();
        let mut rest = raw;
        while let Some(nl) = find(rest, b"\r\n") {
            let size_str = std::str::from_utf8(&rest[..nl]).unwrap_or("");
            let size_str = size_str.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size_str, 16) else {
                break;
            };
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            let take = size.min(rest.len());
            out.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if rest.starts_with(b"\r\n") {
                rest = &rest[2..];
            }
        }
        return Bytes::from(out);
    }
    Bytes::copy_from_slice(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_offers_deflate_only_when_configured() {
        let mut req = ClientRequest {
            host: "h".into(),
            target: "/".into(),
            ..Default::default()
        };
        let text = |req: &ClientRequest| {
            String::from_utf8(ClientHandshake::new(req, [0; 16]).request().to_vec()).unwrap()
        };
        assert!(!text(&req).contains("Sec-WebSocket-Extensions"));
        req.compression = Some(crate::deflate::DeflateConfig::default());
        assert!(text(&req)
            .contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"));
    }
}
