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

impl ClientRequest {
    /// Checks that the request can be written as it is, before anything is
    /// sent: [`ClientHandshake::new`] writes the values unchanged, so a line
    /// break in an `Origin` would start a header line of its own (header
    /// injection).
    ///
    /// - `Host`, `Origin`, `User-Agent` and the extra headers' values have no
    ///   control character but tab: no CR, LF or NUL (RFC 9110 §5.5: a field
    ///   value is made of VCHAR, obs-text, SP and HTAB);
    /// - the target has no control character and no space (RFC 9112 §3.2);
    /// - the subprotocols are tokens (RFC 9110 §5.6.2), each offered once
    ///   (RFC 6455 §4.1).
    ///
    /// The error names the field; it shows the `Origin`, `User-Agent`,
    /// `Host` or subprotocol value (escaped), never an extra header's value.
    ///
    /// ```
    /// use tether_proto::handshake::ClientRequest;
    /// let mut req = ClientRequest { host: "example.com".into(), ..Default::default() };
    /// assert!(req.validate().is_ok());
    /// req.origin = Some("https://a.example\r\nX-Injected: 1".into());
    /// let e = req.validate().unwrap_err();
    /// assert!(e.to_string().starts_with("invalid Origin value"), "{e}");
    /// ```
    ///
    /// # Errors
    /// [`HandshakeError::InvalidRequest`], for the first invalid value.
    pub fn validate(&self) -> Result<(), HandshakeError> {
        check_value("Host", self.host.as_bytes(), true)?;
        if let Some(i) = self.target.bytes().position(|b| b <= b' ' || b == 0x7f) {
            return Err(HandshakeError::InvalidRequest(format!(
                "invalid request target {:?}: a space or a control character at byte {i} (RFC 9112 §3.2)",
                self.target
            )));
        }
        if let Some(o) = &self.origin {
            check_value("Origin", o.as_bytes(), true)?;
        }
        if let Some(ua) = &self.user_agent {
            check_value("User-Agent", ua.as_bytes(), true)?;
        }
        for (i, p) in self.subprotocols.iter().enumerate() {
            if !is_token(p) {
                return Err(HandshakeError::InvalidRequest(format!(
                    "invalid subprotocol {p:?}: a subprotocol is a token, made of letters, \
                     digits and !#$%&'*+-.^_`|~ only: no space, comma or control character \
                     (RFC 6455 §4.1, RFC 9110 §5.6.2)"
                )));
            }
            if self.subprotocols[..i].contains(p) {
                return Err(HandshakeError::InvalidRequest(format!(
                    "subprotocol {p:?} offered twice (RFC 6455 §4.1)"
                )));
            }
        }
        for (name, value) in &self.headers {
            check_value(name.as_str(), value.as_bytes(), false)?;
        }
        Ok(())
    }
}

/// Refuses a header value with a control character other than tab
/// (RFC 9110 §5.5). `show`: whether the message may show the value.
fn check_value(name: &str, value: &[u8], show: bool) -> Result<(), HandshakeError> {
    let Some(i) = value
        .iter()
        .position(|&b| (b < b' ' && b != b'\t') || b == 0x7f)
    else {
        return Ok(());
    };
    let what = if show {
        format!("{name} value {:?}", String::from_utf8_lossy(value))
    } else {
        format!("value for header {name}")
    };
    let byte = match value[i] {
        b'\r' => "CR".to_string(),
        b'\n' => "LF".to_string(),
        0 => "NUL".to_string(),
        b => format!("{b:#04x}"),
    };
    Err(HandshakeError::InvalidRequest(format!(
        "invalid {what}: control character {byte} at byte {i} (a header value may \
         contain no CR, LF, NUL or other control character but tab: RFC 9110 §5.5)"
    )))
}

/// An RFC 9110 §5.6.2 token: one or more tchar.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
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
    /// it is sent base64-encoded as `Sec-WebSocket-Key`. The values of `req`
    /// are written as they are: check them first with
    /// [`ClientRequest::validate`].
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

    #[test]
    fn validate_refuses_control_characters_and_non_tokens() {
        let good = ClientRequest {
            host: "h:1".into(),
            target: "/chat?x=1".into(),
            origin: Some("https://\u{e9}.example".into()),
            subprotocols: vec!["chat.v1".into(), "x-y_z~".into()],
            user_agent: Some("agent/1 (tab\tok)".into()),
            ..Default::default()
        };
        good.validate().unwrap();
        let bad = |f: &dyn Fn(&mut ClientRequest)| {
            let mut r = good.clone();
            f(&mut r);
            match r.validate() {
                Err(HandshakeError::InvalidRequest(m)) => m,
                other => panic!("{other:?}"),
            }
        };
        for c in ['\r', '\n', '\0', '\x1b', '\x7f'] {
            let m = bad(&|r| r.origin = Some(format!("https://a{c}b")));
            assert!(m.starts_with("invalid Origin value"), "{m}");
            assert!(m.contains("RFC 9110"), "{m}");
            let m = bad(&|r| r.user_agent = Some(format!("a{c}b")));
            assert!(m.starts_with("invalid User-Agent value"), "{m}");
            let m = bad(&|r| r.host = format!("h{c}"));
            assert!(m.starts_with("invalid Host value"), "{m}");
        }
        let m = bad(&|r| r.target = "/a b".into());
        assert!(m.contains("request target"), "{m}");
        for p in ["", "a b", "a,b", "a\r\nX: 1", "caf\u{e9}", "a/b", "a\"b"] {
            let m = bad(&|r| r.subprotocols.push(p.into()));
            assert!(m.starts_with("invalid subprotocol"), "{p:?}: {m}");
        }
        let m = bad(&|r| r.subprotocols.push("chat.v1".into()));
        assert!(m.contains("offered twice"), "{m}");
        // An extra header's value is never shown: it may be a secret (and
        // `http` refuses such a value already).
        let m = check_value("x-api-key", b"hunter\r\n", false)
            .unwrap_err()
            .to_string();
        assert!(m.starts_with("invalid value for header x-api-key"), "{m}");
        assert!(!m.contains("hunter"), "{m}");
    }
}
