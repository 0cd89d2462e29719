//! The client side of the opening handshake (RFC 6455 §4.1).

use super::{accept_key, check_upgrade_headers, Response, ResponseProgress, ResponseReader};
use crate::connection::Negotiated;
use crate::error::HandshakeError;
use crate::redact::RedactedHeaders;
use base64::Engine;
use bytes::Bytes;
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
    reader: ResponseReader,
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("reader", &self.reader)
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
            reader: ResponseReader::new(),
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
    /// (up to [`MAX_BODY_KEPT`](super::MAX_BODY_KEPT) bytes) has arrived;
    /// other variants for an invalid or malformed response.
    pub fn receive(&mut self, data: &[u8]) -> Result<Progress, HandshakeError> {
        let progress = self.reader.receive(data)?;
        self.advance(progress)
    }

    /// Tells the handshake that the transport reached EOF.
    ///
    /// # Errors
    /// [`HandshakeError::Status`] if a refusal's body was being read (EOF
    /// ends it); [`HandshakeError::UnexpectedEof`] otherwise.
    pub fn receive_eof(&mut self) -> Result<Progress, HandshakeError> {
        let progress = self.reader.receive_eof()?;
        self.advance(progress)
    }

    fn advance(&mut self, progress: ResponseProgress) -> Result<Progress, HandshakeError> {
        match progress {
            ResponseProgress::NeedMore => Ok(Progress::NeedMore),
            ResponseProgress::Head(head) if head.status == 101 => self.validate(head),
            // A refusal: its body is kept for the error.
            ResponseProgress::Head(head) => {
                let progress = self.reader.read_body(head);
                self.advance(progress)
            }
            ResponseProgress::Complete(refusal) => Err(HandshakeError::Status(Box::new(refusal))),
        }
    }

    /// RFC 6455 §4.1, the client's checks of a 101 response.
    fn validate(&mut self, response: Response) -> Result<Progress, HandshakeError> {
        let h = &response.headers;
        check_upgrade_headers(h)?;
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
        let leftover = self.reader.take_leftover();
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
