//! The server side of the opening handshake (RFC 6455 §4.2).

use super::{
    accept_key, check_upgrade_headers, to_header_map, HeadScanner, Request, Response, MAX_HEADERS,
};
use crate::error::HandshakeError;
use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use http::HeaderValue;

/// Reads an upgrade request with the limits of websockets: request line and
/// header lines up to 8 KiB, 128 headers.
///
/// ```
/// use tether_proto::handshake::ServerHandshake;
/// let mut hs = ServerHandshake::new();
/// let req = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
/// Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// let (request, _leftover) = hs.receive(req).unwrap().unwrap();
/// let offer = ServerHandshake::validate(&request).unwrap();
/// let response = offer.accept(None);
/// assert_eq!(response.status, 101);
/// ```
#[derive(Debug, Default)]
pub struct ServerHandshake {
    buf: BytesMut,
    scan: HeadScanner,
}

/// A valid upgrade request, ready to be accepted.
#[derive(Debug, Clone)]
pub struct ClientOffer {
    /// The `Sec-WebSocket-Key`.
    pub key: String,
    /// The subprotocols the client offered, in its order.
    pub subprotocols: Vec<String>,
    /// The extension offers, one entry per comma-separated item.
    pub extensions: Vec<String>,
    /// The raw `Sec-WebSocket-Extensions` field values.
    pub extensions_header: Vec<String>,
}

impl ClientOffer {
    /// The 101 response, choosing `subprotocol` (which must be one the
    /// client offered).
    pub fn accept(&self, subprotocol: Option<&str>) -> Response {
        let mut r = Response::new(101)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", &accept_key(&self.key));
        if let Some(p) = subprotocol {
            r = r.header("sec-websocket-protocol", p);
        }
        r
    }

    /// The 101 response, choosing `subprotocol` and answering the agreed
    /// permessage-deflate parameters (from [`ClientOffer::negotiate_deflate`]).
    pub fn accept_with(
        &self,
        subprotocol: Option<&str>,
        deflate: Option<&crate::deflate::DeflateParams>,
    ) -> Response {
        let r = self.accept(subprotocol);
        match deflate {
            Some(p) => r.header("sec-websocket-extensions", &p.to_header()),
            None => r,
        }
    }

    /// Picks the first acceptable permessage-deflate offer (RFC 7692 §5).
    /// `None` when compression is off, or no offer is acceptable.
    pub fn negotiate_deflate(
        &self,
        config: Option<&crate::deflate::DeflateConfig>,
    ) -> Option<crate::deflate::DeflateParams> {
        crate::deflate::server_negotiate(self.extensions_header.iter().map(String::as_str), config?)
    }

    /// The first of the server's `supported` subprotocols, in the client's
    /// order of preference, that the client offered.
    pub fn select_subprotocol<'a>(&self, supported: &'a [String]) -> Option<&'a str> {
        self.subprotocols
            .iter()
            .find_map(|o| supported.iter().find(|s| *s == o).map(|s| s.as_str()))
    }
}

impl ServerHandshake {
    /// A handshake waiting for the request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds request bytes. Returns `Ok(None)` until the request head is
    /// complete, then the request and any bytes that followed it.
    ///
    /// # Errors
    /// [`HandshakeError::LineTooLong`] (answer 414),
    /// [`HandshakeError::HeadersTooLarge`] (431),
    /// [`HandshakeError::VersionNotSupported`] (505),
    /// [`HandshakeError::Malformed`] (400). Answer with
    /// [`ServerHandshake::reject`].
    pub fn receive(&mut self, data: &[u8]) -> Result<Option<(Request, Bytes)>, HandshakeError> {
        self.buf.extend_from_slice(data);
        // A request starts with a method token; anything else (a TLS
        // ClientHello, binary garbage) fails at once instead of waiting for
        // a blank line that will never come.
        if self.buf.first().is_some_and(|b| !b.is_ascii_uppercase()) {
            return Err(HandshakeError::Malformed("not an HTTP request".into()));
        }
        let Some(head_len) = self.scan.scan(&self.buf)? else {
            return Ok(None);
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&self.buf[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(HandshakeError::Malformed("incomplete request".into()))
            }
            Err(httparse::Error::Version) => return Err(HandshakeError::VersionNotSupported),
            Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
        }
        if req.version != Some(1) {
            return Err(HandshakeError::VersionNotSupported);
        }
        let request = Request {
            method: req.method.unwrap_or("").to_string(),
            target: req.path.unwrap_or("/").to_string(),
            headers: to_header_map(req.headers)?,
        };
        self.buf.advance(head_len);
        Ok(Some((request, self.buf.split().freeze())))
    }

    /// Checks an upgrade request (RFC 6455 §4.2.1).
    ///
    /// # Errors
    /// [`HandshakeError::NotWebSocket`] (426) when the `Upgrade` header does
    /// not name `websocket`, [`HandshakeError::MethodNotAllowed`] (405),
    /// [`HandshakeError::UnsupportedVersion`] (426), or a missing or invalid
    /// header of an upgrade request (400).
    pub fn validate(req: &Request) -> Result<ClientOffer, HandshakeError> {
        // Not an upgrade at all (a browser, a health check, curl): 426 with
        // `Upgrade: websocket` (RFC 9110 §15.5.22) says what this endpoint
        // speaks, where a 400 would suggest a broken request. Checked first,
        // so that any method without the header gets the same answer.
        if !super::header_has_token(&req.headers, "upgrade", "websocket") {
            return Err(HandshakeError::NotWebSocket);
        }
        if req.method != "GET" {
            return Err(HandshakeError::MethodNotAllowed(req.method.clone()));
        }
        let h = &req.headers;
        // RFC 9112 §3.2: 400 for no Host, more than one, or an invalid one;
        // a WebSocket request's Host names the server (RFC 6455 §4.2.1), so
        // an empty one is invalid.
        let hosts: Vec<&HeaderValue> = h.get_all("host").iter().collect();
        match hosts.as_slice() {
            [] => return Err(HandshakeError::MissingHeader("Host")),
            [one] if !one.as_bytes().trim_ascii().is_empty() => {}
            _ => return Err(HandshakeError::InvalidHeader("Host")),
        }
        check_upgrade_headers(h)?;
        let keys: Vec<&HeaderValue> = h.get_all("sec-websocket-key").iter().collect();
        let key = match keys.as_slice() {
            [] => return Err(HandshakeError::MissingHeader("Sec-WebSocket-Key")),
            [k] => k
                .to_str()
                .map_err(|_| HandshakeError::InvalidHeader("Sec-WebSocket-Key"))?
                .trim(),
            _ => return Err(HandshakeError::InvalidHeader("Sec-WebSocket-Key")),
        };
        // §4.2.1: the key is base64 of 16 bytes.
        match base64::engine::general_purpose::STANDARD.decode(key) {
            Ok(raw) if raw.len() == 16 => {}
            _ => return Err(HandshakeError::InvalidHeader("Sec-WebSocket-Key")),
        }
        let versions: Vec<&HeaderValue> = h.get_all("sec-websocket-version").iter().collect();
        match versions.as_slice() {
            [] => return Err(HandshakeError::UnsupportedVersion),
            [v] if v.as_bytes() == b"13" => {}
            _ => return Err(HandshakeError::UnsupportedVersion),
        }
        let list = |name: &str| -> Vec<String> {
            h.get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|s| s.split(','))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Ok(ClientOffer {
            key: key.to_string(),
            subprotocols: list("sec-websocket-protocol"),
            extensions: list("sec-websocket-extensions"),
            extensions_header: h
                .get_all("sec-websocket-extensions")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .collect(),
        })
    }

    /// The HTTP response for a failed handshake: the status from
    /// [`HandshakeError::http_status`], a short plain-text reason, and
    /// `Upgrade: websocket` and `Sec-WebSocket-Version: 13` with 426 (RFC
    /// 6455 §4.4, RFC 9110 §15.5.22). [`HandshakeError::Status`] holds the
    /// response to send already: it is returned as it is.
    pub fn reject(err: &HandshakeError) -> Response {
        if let HandshakeError::Status(r) = err {
            return (**r).clone();
        }
        let status = err.http_status();
        let mut text = format!("Failed to open a WebSocket connection: {err}.\n");
        if matches!(err, HandshakeError::NotWebSocket) {
            text.push_str(
                "\nThis is a WebSocket endpoint: connect to it with a WebSocket client \
                 (ws:// or wss://), not with a browser or a plain HTTP client.\n",
            );
        }
        let mut r = Response::with_body(status, text);
        if status == 426 {
            r = r
                .header("sec-websocket-version", "13")
                .header("upgrade", "websocket");
        }
        r.header("connection", "close")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse(s: &str) -> Result<ClientOffer, HandshakeError> {
        let (req, _) = ServerHandshake::new()
            .receive(s.as_bytes())?
            .expect("complete");
        ServerHandshake::validate(&req)
    }

    #[test]
    fn valid_request_is_accepted_with_rfc_accept() {
        let offer = parse(GOOD).unwrap();
        let r = offer.accept(None);
        assert_eq!(
            r.header_str("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }

    #[test]
    fn partial_request_needs_more_and_leftover_kept() {
        let mut hs = ServerHandshake::new();
        assert!(hs.receive(&GOOD.as_bytes()[..20]).unwrap().is_none());
        let mut rest = GOOD.as_bytes()[20..].to_vec();
        rest.extend_from_slice(b"\x81\x80");
        let (_, left) = hs.receive(&rest).unwrap().unwrap();
        assert_eq!(&left[..], b"\x81\x80");
    }

    #[test]
    fn non_http_bytes_fail_at_once() {
        // The first bytes of a TLS ClientHello.
        let e = ServerHandshake::new()
            .receive(&[0x16, 0x03, 0x01])
            .unwrap_err();
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn post_is_405() {
        let e = parse(&GOOD.replace("GET", "POST")).unwrap_err();
        assert_eq!(e.http_status(), 405);
    }

    #[test]
    fn http_1_0_is_505() {
        let e = parse(&GOOD.replace("HTTP/1.1", "HTTP/1.0")).unwrap_err();
        assert_eq!(e.http_status(), 505);
    }

    #[test]
    fn wrong_version_is_426_with_header() {
        let e = parse(&GOOD.replace("Version: 13", "Version: 8")).unwrap_err();
        assert_eq!(e.http_status(), 426);
        let r = ServerHandshake::reject(&e);
        assert_eq!(r.header_str("sec-websocket-version"), Some("13"));
    }

    #[test]
    fn missing_or_bad_headers_are_400() {
        for (from, to) in [
            ("Connection: Upgrade\r\n", ""),
            ("Connection: Upgrade", "Connection: close"),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            ("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
            ("Host: server.example.com\r\n", ""),
        ] {
            let e = parse(&GOOD.replace(from, to)).unwrap_err();
            assert_eq!(e.http_status(), 400, "{from:?} -> {to:?}: {e}");
        }
    }

    #[test]
    fn a_request_that_is_no_upgrade_is_426_naming_websocket() {
        for (from, to) in [
            ("Upgrade: websocket\r\n", ""),
            ("Upgrade: websocket", "Upgrade: h2c"),
        ] {
            let e = parse(&GOOD.replace(from, to)).unwrap_err();
            assert!(matches!(e, HandshakeError::NotWebSocket), "{from:?}: {e}");
            let r = ServerHandshake::reject(&e);
            assert_eq!(r.status, 426, "{from:?}");
            assert_eq!(r.header_str("upgrade"), Some("websocket"));
            assert_eq!(r.header_str("sec-websocket-version"), Some("13"));
            let body = String::from_utf8_lossy(&r.body);
            assert!(body.contains("This is a WebSocket endpoint"), "{body}");
        }
        // Any method: a plain POST is not an upgrade either.
        let plain = "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        let e = parse(plain).unwrap_err();
        assert_eq!(e.http_status(), 426, "{e}");
    }

    #[test]
    fn reject_returns_a_status_error_response_as_it_is() {
        let resp = Response::with_body(403, "no\n").header("x-why", "hook");
        let r = ServerHandshake::reject(&HandshakeError::Status(Box::new(resp)));
        assert_eq!(r.status, 403);
        assert_eq!(r.header_str("x-why"), Some("hook"));
        assert_eq!(&r.body[..], b"no\n");
        assert!(r.header_str("connection").is_none());
    }

    #[test]
    fn two_hosts_or_an_empty_host_are_400() {
        for host in [
            "Host: server.example.com\r\nHost: other.example\r\n",
            "Host: server.example.com\r\nHost: server.example.com\r\n",
            "Host:\r\n",
            "Host: \r\n",
        ] {
            let req = GOOD.replace("Host: server.example.com\r\n", host);
            let e = parse(&req).unwrap_err();
            assert!(
                matches!(e, HandshakeError::InvalidHeader("Host")),
                "{host:?}: {e}"
            );
            assert_eq!(ServerHandshake::reject(&e).status, 400, "{host:?}");
        }
    }

    #[test]
    fn tokens_in_lists_are_accepted() {
        let req = GOOD
            .replace("Connection: Upgrade", "Connection: keep-alive, upgrade")
            .replace("Upgrade: websocket", "Upgrade: WebSocket");
        parse(&req).unwrap();
    }

    #[test]
    fn limits_are_414_and_431() {
        let long_target = GOOD.replace("/chat", &format!("/{}", "a".repeat(9000)));
        assert_eq!(parse(&long_target).unwrap_err().http_status(), 414);
        let long_header = GOOD.replace(
            "Host: server.example.com",
            &format!("Host: {}", "a".repeat(9000)),
        );
        assert_eq!(parse(&long_header).unwrap_err().http_status(), 431);
        let mut many = GOOD.trim_end_matches("\r\n").to_string();
        for i in 0..130 {
            many.push_str(&format!("\r\nX-{i}: v"));
        }
        many.push_str("\r\n\r\n");
        assert_eq!(parse(&many).unwrap_err().http_status(), 431);
    }

    #[test]
    fn subprotocol_selection_follows_client_order() {
        let req = GOOD.replace(
            "Version: 13\r\n",
            "Version: 13\r\nSec-WebSocket-Protocol: b, a\r\n",
        );
        let offer = parse(&req).unwrap();
        let supported = vec!["a".to_string(), "b".to_string()];
        assert_eq!(offer.select_subprotocol(&supported), Some("b"));
    }
}
