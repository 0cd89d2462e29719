//! tether's side of the interop command protocol (`interop/PROTOCOL.md`),
//! shared by `interop.rs` and `interop_deflate.rs`:
//!
//! - [`ProtocolServer`], tether's command-protocol server running in-process
//!   (with `!ext` and `!offer`), which records what it saw on each
//!   connection;
//! - the payloads and message checks of tether's client;
//! - [`assert_client_report`], the check of a peer client's report.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether::tether_proto::deflate::DeflateParams;
use tether::{Bytes, CloseCode, CloseFrame, ErrorKind, Message, ServerBuilder, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};

/// The echo sizes of PROTOCOL.md.
pub(crate) const SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, 1048576];

// ---------------------------------------------------------------------------
// Payloads and message checks
// ---------------------------------------------------------------------------

/// Payload of `!frag` and of the echo checks: `a..z` repeating for text,
/// `i % 251` for binary.
pub(crate) fn pattern(binary: bool, size: usize) -> Message {
    if binary {
        Message::binary((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
    } else {
        Message::text(
            (0..size)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect::<String>(),
        )
    }
}

pub(crate) fn kind(m: &Message) -> &'static str {
    match m {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
    }
}

/// Compares two messages without dumping megabytes on failure.
#[track_caller]
pub(crate) fn assert_same(got: &Message, want: &Message, what: &str) {
    if got == want {
        return;
    }
    let (g, w) = (got.as_payload(), want.as_payload());
    if g.len() <= 80 && w.len() <= 80 {
        panic!("{what}: expected {want:?}, got {got:?}");
    }
    let first = g.iter().zip(w).position(|(a, b)| a != b);
    panic!(
        "{what}: expected {} of {} bytes, got {} of {} bytes (first difference at {first:?})",
        kind(want),
        w.len(),
        kind(got),
        g.len()
    );
}

/// The next message, which must arrive within `timeout`.
pub(crate) async fn next_within(ws: &mut WebSocket, timeout: Duration, what: &str) -> Message {
    match tokio::time::timeout(timeout, ws.recv()).await {
        Ok(Some(Ok(m))) => m,
        Ok(Some(Err(e))) => panic!("{what}: recv failed: {e} ({:?})", e.kind()),
        Ok(None) => panic!("{what}: the connection ended"),
        Err(_) => panic!("{what}: nothing received within {timeout:?}"),
    }
}

/// The next item, which must be the error of an incoming message over the
/// limit (a protocol error with 1009) and arrive within `timeout`.
pub(crate) async fn expect_too_big(ws: &mut WebSocket, timeout: Duration, what: &str) {
    match tokio::time::timeout(timeout, ws.recv()).await {
        Ok(Some(Err(e))) => {
            assert_eq!(e.kind(), ErrorKind::Protocol, "{what}: {e}");
            assert_eq!(
                e.close_code(),
                Some(CloseCode::MESSAGE_TOO_BIG),
                "{what}: {e}"
            );
        }
        other => panic!("{what}: expected a 1009 error, got {other:?}"),
    }
}

pub(crate) async fn send(ws: &mut WebSocket, msg: Message, what: &str) {
    ws.send(msg)
        .await
        .unwrap_or_else(|e| panic!("{what}: send failed: {e}"));
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

/// What the server saw on one connection.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// The client's `Sec-WebSocket-Extensions` request header.
    pub(crate) offer: Option<String>,
    /// The parameters agreed.
    pub(crate) compression: Option<DeflateParams>,
    /// The subprotocol agreed.
    pub(crate) subprotocol: Option<String>,
}

/// What the server saw on all its connections.
#[derive(Default)]
struct Log {
    connections: Mutex<Vec<Seen>>,
    /// Close frames received from the clients (`None`: without a code).
    closes: Mutex<Vec<Option<(u16, String)>>>,
}

/// The command protocol (PROTOCOL.md, with `!ext` and `!offer`) on sockets
/// accepted by any server (tether's own, or a framework's), recording what
/// it saw on each connection. Clones share the record.
#[derive(Clone, Default)]
pub(crate) struct ProtocolHandler {
    log: Arc<Log>,
}

impl ProtocolHandler {
    /// Runs the protocol on `ws` until the connection ends.
    pub(crate) async fn run<S: AsyncRead + AsyncWrite + Unpin>(&self, ws: WebSocket<S>) {
        Session::run(ws, self.log.clone()).await
    }

    /// What the server saw on each connection so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.log.connections.lock().unwrap().clone()
    }

    /// The close frames received from clients so far (`None`: without a
    /// code).
    pub(crate) fn closes(&self) -> Vec<Option<(u16, String)>> {
        self.log.closes.lock().unwrap().clone()
    }

    /// Waits up to 5 s for the close frames that the closing checks of the
    /// peer clients send (`client-close-4001`, `server-close-4002`'s echo,
    /// `client-close-1000`): the server records them once its handler sees
    /// them, which may be just after the client exits.
    pub(crate) async fn wait_for_client_closes(&self, ctx: &str) {
        let wanted = [(4001, "bye"), (4002, "server-bye"), (1000, "")];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = self.log.closes.lock().unwrap().clone();
            let missing: Vec<_> = wanted
                .iter()
                .filter(|(c, r)| !seen.iter().flatten().any(|(sc, sr)| sc == c && sr == r))
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{ctx}: the server did not receive close frames {missing:?}; it received {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// tether's command-protocol server (PROTOCOL.md, with `!ext` and
/// `!offer`), in-process on an ephemeral port of 127.0.0.1.
pub(crate) struct ProtocolServer {
    server: tether::Server,
    handler: ProtocolHandler,
}

impl ProtocolServer {
    /// Starts the server with the settings of `builder`.
    pub(crate) async fn start(builder: ServerBuilder) -> ProtocolServer {
        let handler = ProtocolHandler::default();
        let h = handler.clone();
        let server = builder
            .serve("127.0.0.1:0", move |ws| {
                let h = h.clone();
                async move { h.run(ws).await }
            })
            .await
            .expect("start tether's protocol server");
        ProtocolServer { server, handler }
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// What the server saw on each connection so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.handler.seen()
    }

    /// See [`ProtocolHandler::wait_for_client_closes`].
    pub(crate) async fn wait_for_client_closes(&self, ctx: &str) {
        self.handler.wait_for_client_closes(ctx).await
    }

    pub(crate) async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// One connection of the protocol server.
struct Session<S> {
    ws: WebSocket<S>,
    log: Arc<Log>,
    /// The payload of a `!ping` whose pong has not arrived yet.
    awaiting_pong: Option<Bytes>,
    /// Messages received while awaiting a pong, handled after the `!pong`.
    deferred: VecDeque<Message>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn run(ws: WebSocket<S>, log: Arc<Log>) {
        log.connections.lock().unwrap().push(Seen {
            offer: extensions_offered(&ws).map(String::from),
            compression: ws.compression(),
            subprotocol: ws.subprotocol().map(String::from),
        });
        let mut s = Session {
            ws,
            log,
            awaiting_pong: None,
            deferred: VecDeque::new(),
        };
        if let Err(e) = s.serve().await {
            eprintln!("protocol server: connection ended with {e}");
        }
    }

    async fn serve(&mut self) -> tether::Result<()> {
        loop {
            let deferred = if self.awaiting_pong.is_none() {
                self.deferred.pop_front()
            } else {
                None
            };
            let msg = match deferred {
                Some(m) => m,
                None => match self.ws.recv().await {
                    Some(m) => m?,
                    None => return Ok(()),
                },
            };
            match msg {
                Message::Pong(p) if self.awaiting_pong.as_ref() == Some(&p) => {
                    self.awaiting_pong = None;
                    let answer = if p.is_empty() {
                        "!pong".to_string()
                    } else {
                        format!("!pong {}", hex(&p))
                    };
                    self.ws.send(Message::text(answer)).await?;
                }
                // Pings are answered by tether itself.
                Message::Ping(_) | Message::Pong(_) => {}
                Message::Close(frame) => {
                    let frame = frame.map(|f| (f.code.0, f.reason.to_string()));
                    self.log.closes.lock().unwrap().push(frame);
                }
                data if self.awaiting_pong.is_some() => self.deferred.push_back(data),
                Message::Text(t) if t.starts_with('!') => self.command(&t).await?,
                data => self.ws.send(data).await?,
            }
        }
    }

    async fn command(&mut self, line: &str) -> tether::Result<()> {
        let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
        let answer = match name {
            "!close" => {
                let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                let code = code
                    .bytes()
                    .all(|c| c.is_ascii_digit())
                    .then(|| code.parse::<u16>().ok())
                    .flatten();
                match code.map(CloseCode) {
                    None => format!("!error bad close code in {line:?}"),
                    Some(code) if !code.is_sendable() => {
                        format!("!error close code {} may not be sent", code.0)
                    }
                    Some(_) if reason.len() > 123 => {
                        "!error close reason over 123 bytes".to_string()
                    }
                    Some(code) => {
                        // The peer's echo arrives as Message::Close, recorded in serve.
                        return self
                            .ws
                            .send(Message::Close(Some(CloseFrame::new(code, reason))))
                            .await;
                    }
                }
            }
            "!ping" => match unhex(rest) {
                Some(p) if p.len() <= 125 => {
                    let p = Bytes::from(p);
                    self.awaiting_pong = Some(p.clone());
                    return self.ws.ping(p).await;
                }
                Some(_) => "!error ping payload over 125 bytes".to_string(),
                None => format!("!error bad ping payload {rest:?}"),
            },
            "!frag" => match parse_frag(rest) {
                // With compression, the compressed bytes are what is split:
                // small frames give a many-frame message.
                Ok((binary, size, _)) if self.ws.compression().is_some() => {
                    return self.ws.send_fragmented(pattern(binary, size), 64).await
                }
                Ok((binary, size, parts)) => match fragment_size(size, parts) {
                    Some(f) => return self.ws.send_fragmented(pattern(binary, size), f).await,
                    None => format!("!error cannot send {size} bytes as exactly {parts} frames"),
                },
                Err(e) => e,
            },
            "!ext" => match self.ws.compression() {
                Some(p) => format!("!ext {}", p.to_header()),
                None => "!ext".to_string(),
            },
            "!offer" => match extensions_offered(&self.ws) {
                Some(o) => format!("!offer {o}"),
                None => "!offer".to_string(),
            },
            _ => format!("!error unknown command {name:?}"),
        };
        self.ws.send(Message::text(answer)).await
    }
}

/// The client's `Sec-WebSocket-Extensions` request header.
fn extensions_offered<S: AsyncRead + AsyncWrite + Unpin>(ws: &WebSocket<S>) -> Option<&str> {
    ws.request()
        .and_then(|r| r.header("sec-websocket-extensions"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Parses `KIND SIZE PARTS` of `!frag`.
fn parse_frag(rest: &str) -> Result<(bool, usize, usize), String> {
    let usage = || format!("!error usage: !frag text|binary SIZE PARTS (got {rest:?})");
    let args: Vec<&str> = rest.split(' ').collect();
    let [kind, size, parts] = args[..] else {
        return Err(usage());
    };
    let binary = match kind {
        "text" => false,
        "binary" => true,
        _ => return Err(usage()),
    };
    let digits = |s: &str| {
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse::<usize>().ok()
        } else {
            None
        }
    };
    match (digits(size), digits(parts)) {
        (Some(size), Some(parts)) if parts >= 1 && size <= 64 << 20 => Ok((binary, size, parts)),
        _ => Err(usage()),
    }
}

/// The fragment size with which `send_fragmented` splits `size` bytes into
/// exactly `parts` frames: `ceil(size / parts)`, if that gives `parts`
/// frames (it does when `parts` divides `size`; for some pairs, such as 10
/// bytes in 6 frames, no fragment size does).
pub(crate) fn fragment_size(size: usize, parts: usize) -> Option<usize> {
    if size == 0 {
        // An empty message is one (empty) frame.
        return (parts == 1).then_some(1);
    }
    let f = size.div_ceil(parts);
    // send_fragmented sends one frame when size <= f, else ceil(size / f).
    let frames = if size <= f { 1 } else { size.div_ceil(f) };
    (frames == parts).then_some(f)
}

// ---------------------------------------------------------------------------
// A peer client's report
// ---------------------------------------------------------------------------

/// Checks the report (stdout) of a peer client run against the server: an
/// `ok <name>` line for every check of PROTOCOL.md and for each of `extra`,
/// and a summary line with 0 failed. `ctx` names the run.
pub(crate) fn assert_client_report(out: &str, extra: &[&str], ctx: &str) {
    let echoes = ["text", "binary"]
        .into_iter()
        .flat_map(|k| SIZES.map(|n| format!("echo-{k}-{n}")));
    let others = [
        "echo-fragmented-text",
        "echo-fragmented-binary",
        "client-ping",
        "server-ping",
        "server-frag-text",
        "server-frag-binary",
        "client-close-4001",
        "server-close-4002",
        "client-close-1000",
    ];
    let names = extra.iter().chain(&others).map(|s| s.to_string());
    for name in echoes.chain(names) {
        let line = format!("ok {name}");
        assert!(
            out.lines().any(|l| l == line),
            "{ctx}: no `{line}` line:\n{out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("# ") && l.ends_with(" 0 failed")),
        "{ctx}: no clean summary line:\n{out}"
    );
}
