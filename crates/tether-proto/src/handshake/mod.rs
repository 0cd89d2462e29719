//! The opening handshake (RFC 6455 §4): HTTP/1.1 upgrade requests and
//! responses, built and checked without I/O.

mod client;
mod response;
mod server;

pub use crate::http_message::{ReasonPhrase, Request, Response};
pub use client::{Accepted, ClientHandshake, ClientRequest, Progress, USER_AGENT};
pub use response::{ResponseProgress, ResponseReader};
pub use server::{ClientOffer, ServerHandshake};

use crate::error::HandshakeError;
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use sha1::{Digest, Sha1};

/// The GUID appended to the key (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The longest request line or header line accepted, in bytes (as websockets).
pub const MAX_LINE: usize = 8192;
/// The most header fields accepted (as websockets).
pub const MAX_HEADERS: usize = 128;
/// The most body bytes kept from a non-101 response.
pub const MAX_BODY_KEPT: usize = 4096;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
///
/// ```
/// use tether_proto::handshake::accept_key;
/// assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The headers both sides check (RFC 6455 §4.1, §4.2.1): `Upgrade`
/// containing `websocket` and `Connection` containing `upgrade`.
pub(crate) fn check_upgrade_headers(h: &HeaderMap) -> Result<(), HandshakeError> {
    for (name, shown, token) in [
        ("upgrade", "Upgrade", "websocket"),
        ("connection", "Connection", "upgrade"),
    ] {
        if !h.contains_key(name) {
            return Err(HandshakeError::MissingHeader(shown));
        }
        if !header_has_token(h, name, token) {
            return Err(HandshakeError::InvalidHeader(shown));
        }
    }
    Ok(())
}

/// True when the comma-separated header `name` contains `token`,
/// case-insensitively, in any of its field lines (RFC 7230 §7).
pub fn header_has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Checks the line-length and header-count limits over a request or
/// response head in `buf`. Returns `Ok(Some(len))` with the head's length
/// (including the blank line) when it is complete, `Ok(None)` when more bytes
/// are needed.
#[cfg(test)]
fn scan_head(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
    HeadScanner::default().scan(buf)
}

/// Finds the end of an HTTP head as its bytes arrive, checking the line
/// length and header count limits on the way. It resumes where the last
/// call stopped, so each byte is looked at once: a peer that sends a large
/// head in small pieces costs time linear in its size, not quadratic.
#[derive(Debug, Default, Clone)]
pub(crate) struct HeadScanner {
    /// Where the current (incomplete) line starts.
    line_start: usize,
    /// How far past `line_start` was already searched for a newline.
    searched: usize,
    /// Complete lines so far.
    line_no: usize,
}

impl HeadScanner {
    /// Scans `buf` (the same buffer as before, with bytes appended).
    /// `Ok(Some(len))`: the head is complete and `len` bytes long (with the
    /// blank line); `Ok(None)`: more bytes are needed.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
        let too_long = |line_no: usize| {
            if line_no == 0 {
                HandshakeError::LineTooLong
            } else {
                HandshakeError::HeadersTooLarge
            }
        };
        loop {
            let from = self.line_start + self.searched;
            let Some(nl) = buf[from..].iter().position(|&b| b == b'\n') else {
                self.searched = buf.len() - self.line_start;
                if self.searched > MAX_LINE {
                    return Err(too_long(self.line_no));
                }
                return Ok(None);
            };
            let line_len = self.searched + nl; // without the newline
            if line_len > MAX_LINE + 1 {
                return Err(too_long(self.line_no));
            }
            let line = &buf[self.line_start..self.line_start + line_len];
            let blank = line.is_empty() || line == b"\r";
            self.line_start += line_len + 1;
            self.searched = 0;
            if self.line_no > 0 && blank {
                return Ok(Some(self.line_start));
            }
            self.line_no += 1;
            if self.line_no > MAX_HEADERS + 1 {
                return Err(HandshakeError::HeadersTooLarge);
            }
        }
    }
}

fn to_header_map(headers: &[httparse::Header<'_>]) -> Result<HeaderMap, HandshakeError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HandshakeError::Malformed("invalid header name".into()))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| HandshakeError::Malformed("invalid header value".into()))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Scans `head` fed in pieces cut at `cuts`, as a reader would.
    fn scan_in_pieces(head: &[u8], cuts: &[usize]) -> Result<Option<usize>, HandshakeError> {
        let mut s = HeadScanner::default();
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (head.len() + 1)).collect();
        ends.push(head.len());
        ends.sort_unstable();
        for end in ends {
            if let Some(n) = s.scan(&head[..end])? {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    proptest! {
        /// Fed in any pieces, the scanner finds what one pass over the
        /// whole head finds: the same length, or the same error.
        #[test]
        fn scanning_in_pieces_matches_one_pass(
            lines in proptest::collection::vec("[ -~]{0,40}", 0..12),
            long in 0usize..3,
            crlf in any::<bool>(),
            complete in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut head = format!("GET / HTTP/1.1{nl}");
            for l in &lines {
                head.push_str(&format!("X-{l}: v{nl}"));
            }
            if long > 0 {
                head.push_str(&format!("X-Long: {}{nl}", "a".repeat(MAX_LINE * long)));
            }
            if complete {
                head.push_str(nl);
            }
            let whole = scan_head(head.as_bytes()).map_err(|e| e.to_string());
            let pieces = scan_in_pieces(head.as_bytes(), &cuts).map_err(|e| e.to_string());
            prop_assert_eq!(whole, pieces);
        }
    }

    #[test]
    fn rfc_accept_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn tokens_found_in_comma_lists_case_insensitively() {
        let mut h = HeaderMap::new();
        h.append("connection", "keep-alive, UpGrade".parse().unwrap());
        assert!(header_has_token(&h, "connection", "upgrade"));
        assert!(!header_has_token(&h, "connection", "close"));
        h.append("upgrade", "h2c".parse().unwrap());
        h.append("upgrade", "WebSocket".parse().unwrap());
        assert!(header_has_token(&h, "upgrade", "websocket"));
    }

    #[test]
    fn head_limits() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_LINE + 10));
        assert!(matches!(
            scan_head(long.as_bytes()),
            Err(HandshakeError::LineTooLong)
        ));
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("x-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert!(matches!(
            scan_head(many.as_bytes()),
            Err(HandshakeError::HeadersTooLarge)
        ));
        let ok = "GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        assert_eq!(scan_head(ok.as_bytes()).unwrap(), Some(ok.len() - 4));
        assert_eq!(scan_head(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap(), None);
    }
}
