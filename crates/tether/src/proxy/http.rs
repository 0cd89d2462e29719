//! HTTP `CONNECT` (RFC 9110 §9.3.6): asking an HTTP proxy for a tunnel.

use super::{authority, Proxy};
use crate::error::{Error, ErrorKind, Result};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;
use tether_proto::handshake::{Response, MAX_BODY_KEPT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest response head accepted from an HTTP proxy, in bytes.
pub const MAX_CONNECT_HEAD: usize = 8192;
/// The most header fields accepted in an HTTP proxy's response.
const MAX_CONNECT_HEADERS: usize = 64;
/// How long the body of a proxy's refusal is read, at most, before the
/// refusal is reported with what arrived.
const REFUSAL_BODY_WAIT: Duration = Duration::from_secs(2);

impl Proxy {
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

    pub(super) async fn http_connect(
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

#[cfg(test)]
mod tests {
    use super::super::scripted::through;
    use super::*;

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
}
