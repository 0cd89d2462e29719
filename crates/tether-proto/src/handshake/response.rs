//! Reading an HTTP/1.x response without I/O (RFC 9112): its head, within
//! limits, then, for a response the caller does not take, a bounded body.
//!
//! The client handshake reads the server's answer to the upgrade with it;
//! the `tether` crate reads an HTTP proxy's answer to `CONNECT` with it.

use super::{header_has_token, to_header_map, HeadScanner, Response, MAX_BODY_KEPT, MAX_HEADERS};
use crate::error::HandshakeError;
use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

/// What [`ResponseReader::receive`] found.
#[derive(Debug)]
pub enum ResponseProgress {
    /// The response is not complete yet.
    NeedMore,
    /// The head is complete (its body is empty). The bytes after it wait in
    /// the reader: [`ResponseReader::take_leftover`] takes them, to use the
    /// connection; [`ResponseReader::read_body`] reads them as the body of a
    /// refusal.
    Head(Response),
    /// A refusal with its body (at most [`MAX_BODY_KEPT`] bytes).
    Complete(Response),
}

/// How the body of a response ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// 1xx, 204 and 304 have no body.
    Empty,
    Length(usize),
    Chunked,
    UntilEof,
}

#[derive(Debug)]
enum Phase {
    Head,
    Body {
        response: Response,
        framing: Framing,
    },
    Done,
}

/// Reads one HTTP/1.x response from the bytes fed to it: the head, then, if
/// the caller asks, the body, keeping at most [`MAX_BODY_KEPT`] bytes of it.
///
/// ```
/// use tether_proto::handshake::{ResponseProgress, ResponseReader};
/// let mut reader = ResponseReader::new().max_head(8192).accept_http_1_0();
/// let head = match reader.receive(b"HTTP/1.0 403 Forbidden\r\nContent-Length: 4\r\n\r\nno")? {
///     ResponseProgress::Head(head) => head,
///     _ => unreachable!(),
/// };
/// assert_eq!(head.status, 403);
/// // Not a success: read its body.
/// assert!(matches!(reader.read_body(head), ResponseProgress::NeedMore));
/// let ResponseProgress::Complete(refusal) = reader.receive(b"pe")? else { unreachable!() };
/// assert_eq!(&refusal.body[..], b"nope");
/// # Ok::<(), tether_proto::HandshakeError>(())
/// ```
pub struct ResponseReader {
    buf: BytesMut,
    max_head: usize,
    max_headers: usize,
    http_1_0: bool,
    phase: Phase,
    scan: HeadScanner,
}

impl fmt::Debug for ResponseReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Head => "head",
            Phase::Body { .. } => "body",
            Phase::Done => "done",
        };
        f.debug_struct("ResponseReader")
            .field("phase", &phase)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader::new()
    }
}

impl ResponseReader {
    /// A reader for an HTTP/1.1 response whose head has at most
    /// [`MAX_HEADERS`] fields and lines of at most
    /// [`MAX_LINE`](super::MAX_LINE) bytes: the opening handshake's limits.
    pub fn new() -> Self {
        ResponseReader {
            buf: BytesMut::new(),
            max_head: usize::MAX,
            max_headers: MAX_HEADERS,
            http_1_0: false,
            scan: HeadScanner::default(),
            phase: Phase::Head,
        }
    }

    /// Also bounds the whole head (status line, fields and the blank line)
    /// to `max` bytes.
    #[must_use]
    pub fn max_head(mut self, max: usize) -> Self {
        self.max_head = max;
        self
    }

    /// Accepts at most `max` header fields (and never more than
    /// [`MAX_HEADERS`]).
    #[must_use]
    pub fn max_headers(mut self, max: usize) -> Self {
        self.max_headers = max.min(MAX_HEADERS);
        self
    }

    /// Accepts HTTP/1.0 responses too, as from a proxy answering `CONNECT`
    /// (RFC 9110 §9.3.6 does not require HTTP/1.1 of it).
    #[must_use]
    pub fn accept_http_1_0(mut self) -> Self {
        self.http_1_0 = true;
        self
    }

    /// Feeds response bytes.
    ///
    /// # Errors
    /// While reading the head: [`HandshakeError::LineTooLong`] or
    /// [`HandshakeError::HeadersTooLarge`] over the limits,
    /// [`HandshakeError::Malformed`] for a head that is not an HTTP/1.1
    /// response (or HTTP/1.0, when accepted). Reading a body never fails.
    pub fn receive(&mut self, data: &[u8]) -> Result<ResponseProgress, HandshakeError> {
        self.buf.extend_from_slice(data);
        match self.phase {
            Phase::Head => self.head(),
            Phase::Body { .. } => Ok(self.body()),
            Phase::Done => Err(HandshakeError::Malformed(
                "the response was already read".into(),
            )),
        }
    }

    /// Tells the reader that the transport reached EOF.
    ///
    /// # Errors
    /// [`HandshakeError::UnexpectedEof`] unless a body was being read (EOF
    /// ends it, and the response is [`ResponseProgress::Complete`]).
    pub fn receive_eof(&mut self) -> Result<ResponseProgress, HandshakeError> {
        match self.phase {
            Phase::Body { .. } => Ok(self.finish_body()),
            _ => Err(HandshakeError::UnexpectedEof),
        }
    }

    /// Reads the body of the response whose head
    /// [`ResponseProgress::Head`] gave, from the bytes already received and
    /// those [`receive`](Self::receive) will get: until its length (RFC 9112
    /// §6.3), EOF, or [`MAX_BODY_KEPT`] bytes.
    pub fn read_body(&mut self, head: Response) -> ResponseProgress {
        let framing = if matches!(head.status, 100..=199 | 204 | 304) {
            Framing::Empty
        } else if header_has_token(&head.headers, "transfer-encoding", "chunked") {
            Framing::Chunked
        } else {
            match head
                .header_str("content-length")
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                Some(n) => Framing::Length(n),
                None => Framing::UntilEof,
            }
        };
        self.phase = Phase::Body {
            response: head,
            framing,
        };
        self.body()
    }

    /// The bytes received after the head, which belong to the connection
    /// (the first WebSocket frames, or a tunnel's first bytes).
    pub fn take_leftover(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    fn head(&mut self) -> Result<ResponseProgress, HandshakeError> {
        let head_len = match self.scan.scan(&self.buf)? {
            Some(n) if n <= self.max_head => n,
            None if self.buf.len() < self.max_head => return Ok(ResponseProgress::NeedMore),
            _ => return Err(HandshakeError::HeadersTooLarge),
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers[..self.max_headers]);
        match resp.parse(&self.buf[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(HandshakeError::Malformed("incomplete response head".into()))
            }
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadersTooLarge),
            Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
        }
        let response = Response {
            status: resp.code.unwrap_or(0),
            reason: resp.reason.unwrap_or("").to_string(),
            headers: to_header_map(resp.headers)?,
            body: Bytes::new(),
        };
        match resp.version {
            Some(1) => {}
            Some(0) if self.http_1_0 => {}
            _ if self.http_1_0 => {
                return Err(HandshakeError::Malformed(
                    "response is not HTTP/1.0 or HTTP/1.1".into(),
                ))
            }
            _ => return Err(HandshakeError::Malformed("response is not HTTP/1.1".into())),
        }
        // RFC 9110 §15: status codes run from 100 to 599, and a client must
        // know a code's class from its first digit; httparse takes any three
        // digits. "000" or "999" is no answer to act on: not HTTP.
        if !(100..=599).contains(&response.status) {
            return Err(HandshakeError::Malformed(format!(
                "invalid status code {:03}",
                response.status
            )));
        }
        self.buf.advance(head_len);
        self.phase = Phase::Done;
        Ok(ResponseProgress::Head(response))
    }

    fn body(&mut self) -> ResponseProgress {
        let Phase::Body { framing, .. } = self.phase else {
            return ResponseProgress::NeedMore;
        };
        let raw = &self.buf[..];
        let done = raw.len() >= MAX_BODY_KEPT
            || match framing {
                Framing::Empty => true,
                Framing::Length(n) => raw.len() >= n,
                Framing::Chunked => decode_chunked(raw).1,
                Framing::UntilEof => false,
            };
        if done {
            self.finish_body()
        } else {
            ResponseProgress::NeedMore
        }
    }

    /// The body as far as it arrived, decoded, cut at [`MAX_BODY_KEPT`].
    fn finish_body(&mut self) -> ResponseProgress {
        let Phase::Body {
            mut response,
            framing,
        } = std::mem::replace(&mut self.phase, Phase::Done)
        else {
            return ResponseProgress::NeedMore;
        };
        let raw = &self.buf[..self.buf.len().min(MAX_BODY_KEPT)];
        response.body = match framing {
            Framing::Empty => Bytes::new(),
            Framing::Length(n) => Bytes::copy_from_slice(&raw[..n.min(raw.len())]),
            Framing::Chunked => Bytes::from(decode_chunked(raw).0),
            Framing::UntilEof => Bytes::copy_from_slice(raw),
        };
        self.buf.clear();
        ResponseProgress::Complete(response)
    }
}

/// Decodes a chunked body (RFC 9112 §7.1) as far as it parses; true once
/// the last chunk (size 0) has arrived. Chunk extensions and trailer fields
/// are ignored.
fn decode_chunked(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    // httparse takes an empty size line for 0: a size needs a digit.
    while raw.first().is_some_and(u8::is_ascii_hexdigit) {
        let Ok(httparse::Status::Complete((line, size))) = httparse::parse_chunk_size(raw) else {
            break;
        };
        if size == 0 {
            return (out, true);
        }
        raw = &raw[line..];
        let take = usize::try_from(size).unwrap_or(usize::MAX).min(raw.len());
        out.extend_from_slice(&raw[..take]);
        raw = &raw[take..];
        raw = raw.strip_prefix(b"\r\n").unwrap_or(raw);
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` in pieces of `step`, reading the body of any head.
    fn read(reader: &mut ResponseReader, bytes: &[u8], step: usize) -> ResponseProgress {
        let mut last = ResponseProgress::NeedMore;
        for piece in bytes.chunks(step) {
            last = match reader.receive(piece).unwrap() {
                ResponseProgress::Head(head) => reader.read_body(head),
                other => other,
            };
            if let ResponseProgress::Complete(_) = last {
                break;
            }
        }
        last
    }

    fn body(bytes: &[u8]) -> Bytes {
        for step in [1, 3, bytes.len()] {
            let mut reader = ResponseReader::new();
            if let ResponseProgress::Complete(r) = read(&mut reader, bytes, step) {
                return r.body;
            }
        }
        let mut reader = ResponseReader::new();
        read(&mut reader, bytes, bytes.len());
        match reader.receive_eof().unwrap() {
            ResponseProgress::Complete(r) => r.body,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chunked_bodies_decode_as_far_as_they_parse() {
        let d = |raw: &[u8]| decode_chunked(raw);
        assert_eq!(
            d(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"),
            (b"hello world".to_vec(), true)
        );
        assert_eq!(d(b"5\r\nhel"), (b"hel".to_vec(), false));
        assert_eq!(
            d(b"A\r\n0123456789\r\n0\r\n"),
            (b"0123456789".to_vec(), true)
        );
        assert_eq!(d(b"zz\r\nhello"), (vec![], false));
        assert_eq!(d(b"\r\nhello"), (vec![], false));
        assert_eq!(d(b"ffffffffffffffffffff\r\nx"), (vec![], false));
        // "10\r\n" and data that starts with CRLF: not the end.
        assert_eq!(
            d(b"10\r\n\r\n0\r\n\r\n"),
            (b"\r\n0\r\n\r\n".to_vec(), false)
        );
    }

    #[test]
    fn bodies_end_by_length_chunks_eof_or_cap() {
        let r = b"HTTP/1.1 503 Busy\r\nContent-Length: 9\r\n\r\ntoo busy!extra";
        assert_eq!(&body(r)[..], b"too busy!");
        let r = b"HTTP/1.1 502 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(&body(r)[..], b"abc");
        let r = b"HTTP/1.1 500 Oops\r\n\r\nuntil the end";
        assert_eq!(&body(r)[..], b"until the end");
        let r = b"HTTP/1.1 500 Oops\r\nContent-Length: 100000\r\n\r\nabc";
        assert_eq!(&body(r)[..], b"abc");
        let mut big = b"HTTP/1.1 500 Oops\r\n\r\n".to_vec();
        big.resize(big.len() + 3 * MAX_BODY_KEPT, b'x');
        assert_eq!(body(&big).len(), MAX_BODY_KEPT);
        // RFC 9112 §6.3: these never have a body.
        for status in [100, 204, 304] {
            let r = format!("HTTP/1.1 {status} X\r\nContent-Length: 3\r\n\r\nabc");
            assert!(body(r.as_bytes()).is_empty(), "{status}");
        }
    }

    #[test]
    fn a_head_leaves_what_follows_it() {
        let mut reader = ResponseReader::new();
        let p = reader.receive(b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n\r\n\x81\x00");
        let Ok(ResponseProgress::Head(head)) = p else {
            panic!("{p:?}")
        };
        assert_eq!(head.status, 101);
        assert_eq!(head.header_str("upgrade"), Some("websocket"));
        assert_eq!(&reader.take_leftover()[..], b"\x81\x00");
        assert!(reader.receive(b"more").is_err());
    }

    #[test]
    fn versions_limits_and_eof() {
        let ok = b"HTTP/1.0 200 Connection established\r\n\r\n";
        assert!(ResponseReader::new().receive(ok).is_err());
        let p = ResponseReader::new().accept_http_1_0().receive(ok);
        assert!(matches!(p, Ok(ResponseProgress::Head(_))), "{p:?}");
        // Found by the handshake_response fuzz target: status codes outside
        // 100-599 (RFC 9110 §15) were taken as refusals.
        for junk in [
            &b"HTTP/2 200\r\n\r\n"[..],
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 011 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 000 X\r\n\r\n",
            b"HTTP/1.0 099 X\r\n\r\n",
            b"HTTP/1.1 600 X\r\n\r\n",
            b"HTTP/1.1 999 X\r\n\r\n",
        ] {
            let e = ResponseReader::new().accept_http_1_0().receive(junk);
            assert!(matches!(e, Err(HandshakeError::Malformed(_))), "{e:?}");
        }

        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..10 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(ResponseReader::new().receive(&many).is_ok());
        let e = ResponseReader::new().max_headers(9).receive(&many);
        assert!(matches!(e, Err(HandshakeError::HeadersTooLarge)), "{e:?}");
        let e = ResponseReader::new()
            .max_head(many.len() - 1)
            .receive(&many);
        assert!(matches!(e, Err(HandshakeError::HeadersTooLarge)), "{e:?}");
        let p = ResponseReader::new().max_head(many.len()).receive(&many);
        assert!(matches!(p, Ok(ResponseProgress::Head(_))), "{p:?}");
        // A head that never ends fails at the limit, not at its end.
        let mut reader = ResponseReader::new().max_head(100);
        assert!(reader.receive(&[b'x'; 99]).is_ok());
        assert!(reader.receive(b"x").is_err());

        let mut reader = ResponseReader::new();
        assert!(matches!(
            reader.receive(b"HTTP/1.1 200 OK\r\nX-"),
            Ok(ResponseProgress::NeedMore)
        ));
        assert!(matches!(
            reader.receive_eof(),
            Err(HandshakeError::UnexpectedEof)
        ));
    }
}
