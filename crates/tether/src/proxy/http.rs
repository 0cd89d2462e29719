//! HTTP `CONNECT` (RFC 9110 §9.3.6): asking an HTTP proxy for a tunnel.

use super::{authority, Proxy};
use crate::error::{Error, ErrorKind, Result};
use base64::Engine as _;
use std::time::Duration;
use tether_proto::handshake::{ResponseProgress, ResponseReader};
use tether_proto::HandshakeError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest response head accepted from an HTTP proxy, in bytes.
pub const MAX_CONNECT_HEAD: usize = 8192;
/// The most header fields accepted in an HTTP proxy's response.
const MAX_CONNECT_HEADERS: usize = 64;
/// How long the body of a proxy's refusal (at most
/// [`MAX_BODY_KEPT`](tether_proto::handshake::MAX_BODY_KEPT) bytes of it) is
/// read, at most, before the refusal is reported with what arrived.
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

    pub(super) async fn http_connect<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut s: S,
        host: &str,
        port: u16,
        user_agent: Option<&str>,
    ) -> Result<S> {
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
        let mut reader = ResponseReader::new()
            .max_head(MAX_CONNECT_HEAD)
            .max_headers(MAX_CONNECT_HEADERS)
            .accept_http_1_0();
        let mut chunk = [0u8; 2048];
        // Set once the head is a refusal: until when its body is read.
        let mut body_deadline = None;
        let mut response = loop {
            let n = match body_deadline {
                None => s.read(&mut chunk).await.map_err(|e| {
                    Error::io(ErrorKind::Connect, e)
                        .with_message(format!(
                            "connection to the proxy {self} lost while waiting for its answer to the CONNECT"
                        ))
                        .with_proxy(false)
                })?,
                // The refusal is reported with what came of its body by
                // then, at EOF, or at a read error.
                Some(deadline) => tokio::time::timeout_at(deadline, s.read(&mut chunk))
                    .await
                    .ok()
                    .and_then(|read| read.ok())
                    .unwrap_or(0),
            };
            let progress = if n == 0 {
                reader.receive_eof()
            } else {
                reader.receive(&chunk[..n])
            };
            let head = match progress.map_err(|e| self.bad_head(e))? {
                ResponseProgress::NeedMore => continue,
                ResponseProgress::Complete(refusal) => break refusal,
                ResponseProgress::Head(head) => head,
            };
            if (200..300).contains(&head.status) {
                // RFC 9110 §9.3.6: after a 2xx the connection is the tunnel;
                // the target was sent nothing yet, so nothing can follow.
                let early = reader.take_leftover();
                if !early.is_empty() {
                    return Err(self.bad_answer(&format!(
                        "it sent {} bytes after its {} answer, before the tunnel was used",
                        early.len(),
                        head.status
                    )));
                }
                tracing::debug!(proxy = %self, target = %target, status = head.status, "proxy tunnel open");
                return Ok(s);
            }
            body_deadline = Some(tokio::time::Instant::now() + REFUSAL_BODY_WAIT);
            if let ResponseProgress::Complete(refusal) = reader.read_body(head) {
                break refusal;
            }
        };
        // A proxy that echoes the CONNECT must not show our credentials.
        if let Some((user, pass)) = &self.credentials {
            let mut secrets = crate::secrets::Secrets::default();
            secrets.add_basic(user, pass);
            secrets.scrub_proxy_response(&mut response);
        }
        let status = response.status;
        // 407 is the proxy's "credentials needed or refused"; some proxies
        // (tinyproxy) answer wrong credentials with 401.
        let auth = matches!(status, 401 | 407);
        let mut message = format!(
            "proxy {self} refused the CONNECT to {target}: HTTP {status} {}",
            response.reason
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
        tracing::debug!(proxy = %self, target = %target, status, "proxy refused the CONNECT");
        Err(Error::msg(ErrorKind::HttpStatus, message)
            .with_response(response)
            .with_proxy(auth))
    }

    /// The error for an answer whose head could not be read.
    fn bad_head(&self, e: HandshakeError) -> Error {
        match e {
            HandshakeError::UnexpectedEof => Error::msg(
                ErrorKind::Connect,
                format!("the proxy {self} closed the connection without answering the CONNECT"),
            )
            .with_proxy(false),
            HandshakeError::LineTooLong | HandshakeError::HeadersTooLarge => {
                self.bad_answer(&format!(
                    "its response head is longer than {MAX_CONNECT_HEAD} bytes or has more than \
                     {MAX_CONNECT_HEADERS} header fields"
                ))
            }
            e => self.bad_answer(&format!("not an HTTP response ({e})")),
        }
    }

    fn bad_answer(&self, why: &str) -> Error {
        Error::msg(
            ErrorKind::Handshake,
            format!("invalid answer from the proxy {self}: {why}"),
        )
        .with_proxy(false)
    }
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
            &b"HTTP/1.1 099 Odd\r\n\r\n"[..],
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
