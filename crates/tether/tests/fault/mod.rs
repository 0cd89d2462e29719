//! A deterministic, scripted fault server for the reconnect tests.
//!
//! A tokio `TcpListener` on `127.0.0.1:0`. Each accepted connection takes
//! the next [`Step`] of the script (the last step repeats forever), and the
//! server records every request (its line and headers) and counts the
//! connections, so a test can check how many attempts were made, when, and
//! with which headers.
//!
//! No WebSocket library is used for the faults: the responses are written
//! byte for byte. Only [`Then::Echo`] wraps the accepted socket in
//! `tether::WebSocket::from_raw` to echo messages back.
#![allow(dead_code)]

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether::tether_proto::handshake::accept_key;
use tether::{Role, WebSocket, WebSocketConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long any one connection task may live; bounds a hang.
const CONN_LIFETIME: Duration = Duration::from_secs(15);

/// What the server does with one connection.
#[derive(Clone)]
pub(crate) enum Step {
    /// Answer the upgrade request with this HTTP status, headers and body,
    /// then close the connection.
    Status {
        /// The status code.
        code: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// The body (sent with a `Content-Length`).
        body: String,
    },
    /// Read the request, then close the connection without answering (EOF
    /// during the handshake).
    Eof,
    /// Read the request, then reset the connection (RST, `SO_LINGER` 0).
    Reset,
    /// Read the request and never answer; keep the connection open until
    /// the client gives up (an open timeout on the client).
    Hang,
    /// Complete the opening handshake properly, then do this.
    Accept(Then),
    /// Answer `101 Switching Protocols` with a wrong `Sec-WebSocket-Accept`.
    BadAccept,
    /// Choose the step from the request (e.g. from its Authorization).
    Choose(Arc<dyn Fn(&Recorded) -> Step + Send + Sync>),
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Status {
                code,
                headers,
                body,
            } => f
                .debug_struct("Status")
                .field("code", code)
                .field("headers", headers)
                .field("body", body)
                .finish(),
            Step::Eof => f.write_str("Eof"),
            Step::Reset => f.write_str("Reset"),
            Step::Hang => f.write_str("Hang"),
            Step::Accept(t) => f.debug_tuple("Accept").field(t).finish(),
            Step::BadAccept => f.write_str("BadAccept"),
            Step::Choose(_) => f.write_str("Choose(..)"),
        }
    }
}

/// What the server does after a successful opening handshake.
#[derive(Debug, Clone)]
pub(crate) enum Then {
    /// Echo data messages until the client closes.
    Echo,
    /// Wait `after`, send a close frame (no payload when `code` is `None`:
    /// the client sees 1005), read the client's answer, close TCP.
    Close {
        /// The close code, or `None` for an empty close frame.
        code: Option<u16>,
        /// The reason.
        reason: String,
        /// How long the connection stays open first.
        after: Duration,
    },
    /// Wait `after`, then close TCP without a close frame (1006).
    Drop {
        /// How long the connection stays open first.
        after: Duration,
    },
    /// Reset TCP at once (RST): the client sees a connection reset (1006).
    Reset,
    /// Read everything, answer nothing, never close (a half-open peer: the
    /// client's pings get no pong).
    Silent,
    /// Write these bytes (frames, valid or not), then read until EOF.
    Raw(Vec<u8>),
}

impl Step {
    /// An HTTP status with no headers and an empty body.
    pub(crate) fn status(code: u16) -> Step {
        Step::Status {
            code,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// Adds a header to a [`Step::Status`].
    pub(crate) fn header(mut self, name: &str, value: &str) -> Step {
        if let Step::Status { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        } else {
            panic!("header() on {self:?}");
        }
        self
    }

    /// Sets the body of a [`Step::Status`].
    pub(crate) fn body(mut self, text: &str) -> Step {
        if let Step::Status { body, .. } = &mut self {
            *body = text.to_string();
        } else {
            panic!("body() on {self:?}");
        }
        self
    }

    /// A redirect with a `Location`.
    pub(crate) fn redirect(code: u16, location: &str) -> Step {
        Step::status(code).header("Location", location)
    }

    /// Accept and echo.
    pub(crate) fn echo() -> Step {
        Step::Accept(Then::Echo)
    }

    /// Accept, then close at once with `code` and `reason`.
    pub(crate) fn close(code: u16, reason: &str) -> Step {
        Step::close_after(code, reason, Duration::ZERO)
    }

    /// Accept, stay open for `after`, then close with `code` and `reason`.
    pub(crate) fn close_after(code: u16, reason: &str, after: Duration) -> Step {
        Step::Accept(Then::Close {
            code: Some(code),
            reason: reason.to_string(),
            after,
        })
    }

    /// Accept, then send an empty close frame (no status code: 1005).
    pub(crate) fn close_without_code() -> Step {
        Step::Accept(Then::Close {
            code: None,
            reason: String::new(),
            after: Duration::ZERO,
        })
    }

    /// Accept, then drop TCP at once without a close frame (1006).
    pub(crate) fn drop_tcp() -> Step {
        Step::Accept(Then::Drop {
            after: Duration::ZERO,
        })
    }

    /// Accept, then reset TCP at once (RST, no close frame: 1006).
    pub(crate) fn reset_tcp() -> Step {
        Step::Accept(Then::Reset)
    }

    /// Accept, then never answer (half-open).
    pub(crate) fn silent() -> Step {
        Step::Accept(Then::Silent)
    }

    /// Accept, then write `bytes`.
    pub(crate) fn raw(bytes: Vec<u8>) -> Step {
        Step::Accept(Then::Raw(bytes))
    }

    /// Chooses the step from the request.
    pub(crate) fn choose<F: Fn(&Recorded) -> Step + Send + Sync + 'static>(f: F) -> Step {
        Step::Choose(Arc::new(f))
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// The connection it came on (0-based).
    pub(crate) conn: usize,
    /// When the connection was accepted.
    pub(crate) at: Instant,
    /// The request line, e.g. `GET /x HTTP/1.1`.
    pub(crate) line: String,
    /// The headers in order, names as sent.
    pub(crate) headers: Vec<(String, String)>,
}

impl Recorded {
    /// The request target (path and query).
    pub(crate) fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }

    /// The first value of header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many times header `name` appears.
    pub(crate) fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

#[derive(Default)]
struct Log {
    /// When each connection was accepted.
    accepted: Vec<Instant>,
    requests: Vec<Recorded>,
}

/// The scripted server. Stops accepting when dropped.
pub(crate) struct FaultServer {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
}

impl FaultServer {
    /// Starts a server that plays `script`, repeating its last step.
    pub(crate) async fn start(script: Vec<Step>) -> FaultServer {
        assert!(!script.is_empty(), "an empty script");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let task = tokio::spawn({
            let log = log.clone();
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let at = Instant::now();
                    let n = {
                        let mut l = log.lock().unwrap();
                        l.accepted.push(at);
                        l.accepted.len() - 1
                    };
                    let step = script[n.min(script.len() - 1)].clone();
                    let log = log.clone();
                    tokio::spawn(async move {
                        let _ =
                            tokio::time::timeout(CONN_LIFETIME, serve_one(tcp, n, at, step, log))
                                .await;
                    });
                }
            }
        });
        FaultServer { addr, log, task }
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:<port>/`.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// `ws://127.0.0.1:<port><path>`.
    pub(crate) fn url_with(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The number of connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.log.lock().unwrap().accepted.len()
    }

    /// When each connection was accepted.
    pub(crate) fn accepted_at(&self) -> Vec<Instant> {
        self.log.lock().unwrap().accepted.clone()
    }

    /// The requests received so far, in order.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().requests.clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address on which nothing listens: bind port 0, then release it.
pub(crate) async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// Reads the request head; `None` when the client went away first.
async fn read_head(tcp: &mut TcpStream) -> Option<(String, Vec<(String, String)>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 64 * 1024 {
            return None;
        }
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((line, headers))
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        101 => "Switching Protocols",
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Whatever",
    }
}

/// An unmasked server frame.
pub(crate) fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// A close frame from the server.
pub(crate) fn close_frame(code: Option<u16>, reason: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    if let Some(c) = code {
        payload.extend_from_slice(&c.to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
    }
    server_frame(0x88, &payload)
}

/// Closes `tcp` with a reset (RST) rather than FIN.
fn reset(tcp: TcpStream) {
    let _ = tcp.set_zero_linger();
    drop(tcp);
}

async fn serve_one(mut tcp: TcpStream, n: usize, at: Instant, step: Step, log: Arc<Mutex<Log>>) {
    let Some((line, headers)) = read_head(&mut tcp).await else {
        return;
    };
    let rec = Recorded {
        conn: n,
        at,
        line,
        headers,
    };
    log.lock().unwrap().requests.push(rec.clone());
    let mut step = step;
    while let Step::Choose(f) = &step {
        step = f(&rec);
    }
    let key = rec.header("sec-websocket-key").unwrap_or("").to_string();
    match step {
        Step::Choose(_) => unreachable!(),
        Step::Status {
            code,
            headers,
            body,
        } => {
            let mut r = format!("HTTP/1.1 {code} {}\r\n", reason_phrase(code));
            for (k, v) in &headers {
                r.push_str(&format!("{k}: {v}\r\n"));
            }
            r.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ));
            let _ = tcp.write_all(r.as_bytes()).await;
            let _ = tcp.shutdown().await;
            // Let the client read everything before the socket goes.
            let mut sink = [0u8; 256];
            let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut sink)).await;
        }
        Step::Eof => {
            let _ = tcp.shutdown().await;
        }
        Step::Reset => reset(tcp),
        Step::Hang => {
            let mut sink = [0u8; 256];
            while matches!(tcp.read(&mut sink).await, Ok(k) if k > 0) {}
        }
        Step::BadAccept => {
            let r = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: dGhpcyBpcyBub3QgdGhlIGtleQ==\r\n\r\n";
            let _ = tcp.write_all(r.as_bytes()).await;
            let mut sink = [0u8; 256];
            let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut sink)).await;
        }
        Step::Accept(then) => {
            let r = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(&key)
            );
            if tcp.write_all(r.as_bytes()).await.is_err() {
                return;
            }
            after_accept(tcp, then).await;
        }
    }
}

async fn after_accept(mut tcp: TcpStream, then: Then) {
    let mut sink = [0u8; 1024];
    match then {
        Then::Echo => {
            let mut config = WebSocketConfig::default();
            config.ping_interval = None;
            let mut ws = WebSocket::from_raw(tcp, Role::Server, config);
            while let Some(Ok(msg)) = ws.recv().await {
                if msg.is_data() && ws.send(msg).await.is_err() {
                    break;
                }
            }
        }
        Then::Close {
            code,
            reason,
            after,
        } => {
            tokio::time::sleep(after).await;
            if tcp.write_all(&close_frame(code, &reason)).await.is_err() {
                return;
            }
            // Read the client's close frame, so that closing the socket
            // sends FIN (not RST, which could discard our frame).
            let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut sink)).await;
            let _ = tcp.shutdown().await;
        }
        Then::Drop { after } => {
            tokio::time::sleep(after).await;
            let _ = tcp.shutdown().await;
        }
        Then::Reset => reset(tcp),
        Then::Silent => while matches!(tcp.read(&mut sink).await, Ok(k) if k > 0) {},
        Then::Raw(bytes) => {
            if tcp.write_all(&bytes).await.is_err() {
                return;
            }
            while matches!(tcp.read(&mut sink).await, Ok(k) if k > 0) {}
        }
    }
}
