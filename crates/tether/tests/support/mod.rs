//! A raw WebSocket peer over plain TCP, with no WebSocket library: it writes
//! exactly the bytes a test asks for (valid or not) and parses what tether
//! sends back. Every read and write is bounded by [`IO_TIMEOUT`], so a hang
//! fails the test instead of blocking it.
#![allow(dead_code)]

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tether::tether_proto::handshake::accept_key;
use tether::{ClientBuilder, Message, ServerBuilder, State, WebSocket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The bound on each raw read or write, and on each `recv()` of tether.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Opcodes (RFC 6455 §5.2).
pub(crate) const CONT: u8 = 0x0;
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xA;
/// The FIN bit of the first header byte.
pub(crate) const FIN: u8 = 0x80;

/// The masking key the raw client uses (the one of RFC 6455 §5.7).
pub(crate) const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// The `Sec-WebSocket-Key` the raw client sends (RFC 6455 §1.3).
pub(crate) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Bounds `fut` by [`IO_TIMEOUT`]; panics with `what` when it expires.
pub(crate) async fn within<F: Future>(what: impl std::fmt::Display, fut: F) -> F::Output {
    match tokio::time::timeout(IO_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: timed out after {IO_TIMEOUT:?}"),
    }
}

/// A frame header: `b0` is the first byte (FIN, RSV, opcode); `len` is
/// encoded in the shortest form, except that lengths of 2^16 and over (and
/// anything with the top bit set) use the 64-bit form.
pub(crate) fn encode_header(b0: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0];
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
    out
}

/// A whole frame; the payload is masked with `mask` when given.
pub(crate) fn encode_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = encode_header(b0, payload.len() as u64, mask);
    match mask {
        Some(k) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4])),
        None => out.extend_from_slice(payload),
    }
    out
}

/// A frame sent by tether, as parsed by the raw peer (payload unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) fin: bool,
    /// RSV1-3 as the bits 0x40, 0x20, 0x10.
    pub(crate) rsv: u8,
    pub(crate) opcode: u8,
    pub(crate) masked: bool,
    pub(crate) payload: Vec<u8>,
}

impl Frame {
    /// The close code and reason of a close frame.
    pub(crate) fn close(&self) -> (Option<u16>, String) {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return (None, String::new());
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        let reason = String::from_utf8(self.payload[2..].to_vec())
            .expect("close reason sent by tether is UTF-8");
        (Some(code), reason)
    }
}

/// Parses a frame from the start of `buf`: `Some((frame, bytes used))` once
/// complete.
pub(crate) fn decode_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (b0, b1) = (buf[0], buf[1]);
    let masked = b1 & 0x80 != 0;
    let (len, mut pos) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let key: Option<[u8; 4]> = if masked {
        let k = buf.get(pos..pos + 4)?.try_into().ok()?;
        pos += 4;
        Some(k)
    } else {
        None
    };
    let len = usize::try_from(len).expect("frame length fits in memory");
    let mut payload = buf.get(pos..pos + len)?.to_vec();
    if let Some(k) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        rsv: b0 & 0x70,
        opcode: b0 & 0x0f,
        masked,
        payload,
    };
    Some((frame, pos + len))
}

/// The value of header `name` in an HTTP head, case-insensitively.
pub(crate) fn header_value(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A valid upgrade request for `/`, with `extra` header lines (each ending
/// in `\r\n`) before the blank line.
pub(crate) fn upgrade_request(extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// One end of a TCP connection driven by hand.
pub(crate) struct RawPeer {
    stream: TcpStream,
    buf: Vec<u8>,
    /// True when the raw peer plays the client: its frames are masked, and
    /// tether's (a server's) must not be.
    pub(crate) is_client: bool,
    /// Names the case in every panic message.
    pub(crate) label: String,
}

impl RawPeer {
    pub(crate) fn new(stream: TcpStream, is_client: bool) -> Self {
        RawPeer {
            stream,
            buf: Vec::new(),
            is_client,
            label: String::new(),
        }
    }

    /// Connects to a tether server as a client, before the upgrade.
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let stream = within("raw connect", TcpStream::connect(addr))
            .await
            .expect("raw connect");
        RawPeer::new(stream, true)
    }

    /// Performs the upgrade by hand, as a client.
    pub(crate) async fn upgrade(&mut self) {
        self.write(upgrade_request("").as_bytes()).await;
        let head = self.read_head().await;
        assert!(
            head.starts_with("HTTP/1.1 101 "),
            "tether did not switch protocols: {head}"
        );
        assert_eq!(
            header_value(&head, "sec-websocket-accept"),
            Some(accept_key(KEY)),
            "{head}"
        );
    }

    /// Accepts a connection and reads the request head, answering nothing.
    pub(crate) async fn accept_raw(listener: &TcpListener) -> (Self, String) {
        let (stream, _) = within("raw accept", listener.accept())
            .await
            .expect("raw accept");
        let mut peer = RawPeer::new(stream, false);
        let head = peer.read_head().await;
        (peer, head)
    }

    /// Accepts a tether client and answers its upgrade by hand, with a
    /// correct `Sec-WebSocket-Accept`.
    pub(crate) async fn accept_server(listener: &TcpListener) -> Self {
        let (mut peer, head) = Self::accept_raw(listener).await;
        assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
        let key =
            header_value(&head, "sec-websocket-key").expect("tether sent a Sec-WebSocket-Key");
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(&key)
        );
        peer.write(resp.as_bytes()).await;
        peer
    }

    /// A frame from this peer: masked when it plays the client.
    pub(crate) fn frame(&self, b0: u8, payload: &[u8]) -> Vec<u8> {
        encode_frame(b0, payload, self.is_client.then_some(MASK))
    }

    /// A frame header alone (the payload is not sent), masked when this
    /// peer plays the client.
    pub(crate) fn header(&self, b0: u8, len: u64) -> Vec<u8> {
        encode_header(b0, len, self.is_client.then_some(MASK))
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) {
        let label = format!("{}: raw write", self.label);
        within(&label, self.stream.write_all(bytes))
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
    }

    /// Writes `bytes`, returning the error instead of panicking.
    pub(crate) async fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let label = format!("{}: raw write", self.label);
        within(&label, self.stream.write_all(bytes)).await
    }

    /// Sends one frame, masked when this peer plays the client.
    pub(crate) async fn send(&mut self, b0: u8, payload: &[u8]) {
        let f = self.frame(b0, payload);
        self.write(&f).await;
    }

    /// Half-closes the connection: tether reads EOF.
    pub(crate) async fn shutdown_write(&mut self) {
        let label = format!("{}: raw shutdown", self.label);
        within(&label, self.stream.shutdown())
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
    }

    /// Reads more bytes into the buffer; returns how many (0 at EOF).
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let label = format!(
            "{}: raw read (buffered so far: {} bytes)",
            self.label,
            self.buf.len()
        );
        let n = within(label, self.stream.read(&mut chunk)).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads an HTTP head up to the blank line; keeps what follows.
    pub(crate) async fn read_head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            let n = self
                .fill()
                .await
                .unwrap_or_else(|e| panic!("{}: reading an HTTP head: {e}", self.label));
            assert!(
                n > 0,
                "{}: EOF inside an HTTP head: {:?}",
                self.label,
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Reads everything until EOF. A reset ends the read too (what arrived
    /// before it is kept): a peer that refuses a request may close with
    /// unread input.
    pub(crate) async fn read_to_end(&mut self) -> Vec<u8> {
        loop {
            match self.fill().await {
                Ok(0) | Err(_) => return std::mem::take(&mut self.buf),
                Ok(_) => {}
            }
        }
    }

    /// Reads the next frame from tether, and checks its masking: a tether
    /// client masks, a tether server does not (RFC 6455 §5.1).
    pub(crate) async fn read_frame(&mut self) -> Frame {
        loop {
            if let Some((frame, used)) = decode_frame(&self.buf) {
                self.buf.drain(..used);
                assert_eq!(
                    frame.masked, !self.is_client,
                    "{}: wrong masking from tether: {frame:?}",
                    self.label
                );
                assert_eq!(
                    frame.rsv, 0,
                    "{}: tether set RSV bits: {frame:?}",
                    self.label
                );
                return frame;
            }
            match self.fill().await {
                Ok(0) => panic!(
                    "{}: EOF while waiting for a frame; partial bytes: {:?}",
                    self.label, self.buf
                ),
                Ok(_) => {}
                Err(e) => panic!("{}: error while waiting for a frame: {e}", self.label),
            }
        }
    }

    /// Reads the next frame and checks that it is a close frame with `code`.
    pub(crate) async fn expect_close(&mut self, code: u16) -> Frame {
        let f = self.read_frame().await;
        assert_eq!(
            f.opcode, CLOSE,
            "{}: expected a close frame with {code}, got {f:?}",
            self.label
        );
        assert!(f.fin, "{}: close frame without FIN", self.label);
        let (got, reason) = f.close();
        assert_eq!(
            got,
            Some(code),
            "{}: close frame {f:?} (reason {reason:?})",
            self.label
        );
        f
    }

    /// Checks that tether closed the TCP connection: EOF, with nothing more
    /// after what was read so far.
    pub(crate) async fn expect_eof(&mut self) {
        assert!(
            self.buf.is_empty(),
            "{}: unexpected bytes from tether: {:?}",
            self.label,
            self.buf
        );
        match self.fill().await {
            Ok(0) => {}
            Ok(_) => panic!(
                "{}: expected EOF, got more bytes: {:?}",
                self.label, self.buf
            ),
            Err(e) => panic!("{}: expected a clean EOF (FIN), got {e}", self.label),
        }
    }
}

/// What the tether side saw: every `recv()` item until it returned `None`.
pub(crate) struct Outcome {
    pub(crate) items: Vec<tether::Result<Message>>,
    /// `WebSocket::state()` after the stream ended.
    pub(crate) state: State,
    /// The socket, kept open so that any EOF the raw peer sees was caused by
    /// tether closing the connection, not by a drop.
    _ws: Box<dyn Send>,
}

/// How the tether side consumes its connection.
pub(crate) enum Drive {
    /// `recv()` until `None` (see [`drain`]).
    ToEnd,
    /// `recv()` until the first error (or `None`), then stop polling the
    /// socket, without dropping it, until the receiver fires: what the raw
    /// peer sees meanwhile was written when the error was returned.
    UntilError(tokio::sync::oneshot::Receiver<()>),
}

/// Calls `recv()` until it returns `None` (each call bounded by
/// [`IO_TIMEOUT`]), then checks that the stream stays ended.
pub(crate) async fn drain<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    ws: WebSocket<S>,
) -> Outcome {
    drive(ws, Drive::ToEnd).await
}

/// Consumes the connection as `how` says.
pub(crate) async fn drive<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut ws: WebSocket<S>,
    how: Drive,
) -> Outcome {
    let mut items = Vec::new();
    let stop_at_error = matches!(how, Drive::UntilError(_));
    loop {
        match tokio::time::timeout(IO_TIMEOUT, ws.recv()).await {
            Err(_) => panic!("tether recv() hung; items so far: {items:?}"),
            Ok(None) => break,
            Ok(Some(r)) => {
                let failed = r.is_err();
                items.push(r);
                if failed && stop_at_error {
                    break;
                }
            }
        }
        assert!(items.len() < 1000, "recv() never ends: {items:?}");
    }
    match how {
        Drive::ToEnd => {
            let again = within("recv() after the end", ws.recv()).await;
            assert!(
                again.is_none(),
                "recv() yielded {again:?} after returning None"
            );
        }
        Drive::UntilError(release) => {
            let _ = within("waiting for the raw peer", release).await;
        }
    }
    Outcome {
        items,
        state: ws.state(),
        _ws: Box::new(ws),
    }
}

/// tether's side of a connection from a raw client: a task that accepts one
/// TCP connection on a free port and hands it to `serve`; and the raw client
/// connected to it, before the upgrade.
pub(crate) async fn raw_client_of<F, Fut>(serve: F) -> (RawPeer, JoinHandle<Fut::Output>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let (tcp, _) = within("tether side accept", listener.accept())
            .await
            .expect("accept");
        serve(tcp).await
    });
    (RawPeer::connect(addr).await, task)
}

/// A tether server on a free port, accepting one connection with `builder`
/// and consuming it as `how` says; and a raw client connected to it, past
/// the handshake.
pub(crate) async fn tether_server(
    builder: ServerBuilder,
    how: Drive,
) -> (RawPeer, JoinHandle<Outcome>) {
    let (mut peer, task) = raw_client_of(|tcp| async move {
        let ws = builder
            .accept(tcp)
            .await
            .expect("tether accept() of a valid request");
        drive(ws, how).await
    })
    .await;
    peer.upgrade().await;
    (peer, task)
}

/// A tether client built by `builder` from the URL of a raw server,
/// consuming its connection as `how` says; and the raw server, past the
/// handshake.
pub(crate) async fn tether_client<F>(builder: F, how: Drive) -> (RawPeer, JoinHandle<Outcome>)
where
    F: FnOnce(String) -> ClientBuilder + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let task = tokio::spawn(async move {
        let ws = builder(url)
            .connect()
            .await
            .expect("tether connect() to a valid server");
        drive(ws, how).await
    });
    (RawPeer::accept_server(&listener).await, task)
}

/// Waits for a tether task; its panics (in tether or in the checks) fail the
/// test with their message.
pub(crate) async fn join<T: Debug>(label: &str, task: JoinHandle<T>) -> T {
    match tokio::time::timeout(IO_TIMEOUT * 2, task).await {
        Err(_) => panic!("{label}: the tether side hung"),
        Ok(Err(e)) => panic!("{label}: the tether side panicked: {e}"),
        Ok(Ok(v)) => v,
    }
}

impl Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("items", &self.items)
            .field("state", &self.state)
            .finish()
    }
}
