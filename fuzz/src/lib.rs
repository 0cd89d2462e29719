//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every target reads its input the same way ([`Input::parse`]): two
//! configuration bytes, a byte giving how many split lengths follow, the
//! split lengths, then the payload. The payload is fed to the parser under
//! test in pieces of those lengths, in turn, so that the fuzzer controls both
//! the bytes and where they are cut.

use bytes::Buf;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use tether_proto::close::MAX_REASON_LEN;
use tether_proto::deflate::{DeflateConfig, DeflateParams};
use tether_proto::{
    CloseCode, CloseFrame, Connection, ConnectionConfig, Error, Message, Negotiated, ProtocolError,
    Role,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A fuzz input taken apart.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The first configuration byte (0 when the input is shorter).
    pub a: u8,
    /// The second configuration byte (0 when the input is shorter).
    pub b: u8,
    /// The split lengths: the payload goes in pieces of these lengths, in
    /// turn (a 0 is an empty piece). Empty: the payload goes in one piece.
    pub lens: &'a [u8],
    /// The bytes fed to the parser.
    pub payload: &'a [u8],
}

impl<'a> Input<'a> {
    /// `[a, b, n, lens[0..n % 8], payload...]`.
    pub fn parse(data: &'a [u8]) -> Self {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let rest = data.get(3..).unwrap_or(&[]);
        let n = usize::from(byte(2) % 8).min(rest.len());
        let (lens, payload) = rest.split_at(n);
        Input {
            a: byte(0),
            b: byte(1),
            lens,
            payload,
        }
    }

    /// The payload in pieces, as [`chunks`] cuts it.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        chunks(self.payload, self.lens)
    }
}

/// `payload` cut in pieces of the lengths in `lens`, taken in turn; the last
/// piece may be shorter. Empty pieces are kept (feeding nothing is legal),
/// but when every length is 0 the payload goes in one piece.
pub fn chunks<'a>(payload: &'a [u8], lens: &[u8]) -> Vec<&'a [u8]> {
    if lens.iter().all(|&l| l == 0) {
        return vec![payload];
    }
    let mut out = Vec::new();
    let mut rest = payload;
    for &l in lens.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(usize::from(l).min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

// --- A connection fed hostile bytes ---------------------------------------

/// How a [`Connection`] under test is set up, from the two configuration
/// bytes.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Its limits and settings.
    pub config: ConnectionConfig,
    /// What the handshake negotiated.
    pub negotiated: Negotiated,
    /// Send back every data message received, as an echo server does (this
    /// exercises the compressor and fragmentation on arbitrary data too).
    pub echo: bool,
    /// Feed through [`Connection::read_buf`] rather than
    /// [`Connection::receive`].
    pub read_buf: bool,
    /// Report EOF after the payload.
    pub eof: bool,
}

impl Setup {
    /// The setup that the configuration bytes `a` and `b` choose:
    /// - `a` bit 0: permessage-deflate negotiated; bits 1-2: the
    ///   no-context-takeover flags; bits 3-5: the window bits (none, 9-15);
    /// - `a` bits 6-7: the message limit (64 B, 1 KiB, 64 KiB, 1 MiB);
    /// - `b` bit 0: a frame limit below the message limit; bit 1: no
    ///   automatic pong; bit 2: echo; bit 3: small send fragments; bit 4:
    ///   feed through `read_buf`; bit 5: EOF at the end; bit 6: RSV2 allowed
    ///   (an extension the core does not know); bit 7: compress even tiny
    ///   messages (threshold 0).
    pub fn from_bytes(a: u8, b: u8) -> Self {
        let bit = |byte: u8, i: u8| byte & (1 << i) != 0;
        let bits = match (a >> 3) & 7 {
            0 => None,
            n => Some(8 + n), // 9..=15
        };
        let deflate = bit(a, 0).then_some(DeflateParams {
            server_no_context_takeover: bit(a, 1),
            client_no_context_takeover: bit(a, 2),
            server_max_window_bits: bits,
            client_max_window_bits: bits,
        });
        let max_message = [64, 1 << 10, 64 << 10, 1 << 20][usize::from(a >> 6)];
        let mut config = ConnectionConfig::default().with_max_message_size(max_message);
        if bit(b, 0) {
            config = config.with_max_frame_size(max_message / 4);
        }
        config.auto_pong = !bit(b, 1);
        if bit(b, 3) {
            config.max_send_frame_size = 7;
        }
        let mut compression = DeflateConfig::default();
        if bit(b, 7) {
            compression.threshold = 0;
        }
        config.compression = Some(compression);
        Setup {
            config,
            negotiated: Negotiated {
                rsv_allowed: [false, bit(b, 6), false],
                deflate,
            },
            echo: bit(b, 2),
            read_buf: bit(b, 4),
            eof: bit(b, 5),
        }
    }
}

/// What a connection did with its input.
#[derive(Debug)]
pub struct Run {
    /// The events, in order: messages, then the error that failed the
    /// connection, if any (shown with `Debug`: `Error` has no `PartialEq`).
    pub events: Vec<Result<Message, String>>,
    /// Every byte the connection queued to write.
    pub output: Vec<u8>,
    /// What the peer must read from `output`, in order.
    pub expected_at_peer: Vec<Message>,
}

/// A mask source that never repeats within a run (the fuzz target compares
/// runs, so the keys are deterministic).
fn counter_mask() -> Box<dyn tether_proto::MaskSource> {
    let mut n: u32 = 0x9e37_79b9;
    Box::new(move || {
        n = n.wrapping_mul(0x0101_0101).wrapping_add(0x6d2b_79f5);
        n.to_be_bytes()
    })
}

fn new_connection(role: Role, config: ConnectionConfig, negotiated: Negotiated) -> Connection {
    let mut c = match role {
        Role::Server => Connection::server(config),
        Role::Client => Connection::client(config, counter_mask()),
    };
    c.set_negotiated(negotiated);
    c
}

fn take_output(c: &mut Connection, into: &mut Vec<u8>) {
    let out = c.transmit();
    while out.has_remaining() {
        let chunk = out.chunk();
        into.extend_from_slice(chunk);
        let n = chunk.len();
        out.advance(n);
    }
}

/// Checks a message the connection returned against the RFC and the limits.
fn check_message(m: &Message, config: &ConnectionConfig) {
    match m {
        Message::Text(t) => {
            assert!(
                std::str::from_utf8(t.as_bytes()).is_ok(),
                "a text message is valid UTF-8"
            );
            assert!(t.len() <= config.max_message_size, "message over the limit");
        }
        Message::Binary(b) => {
            assert!(b.len() <= config.max_message_size, "message over the limit")
        }
        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125, "control frame over 125"),
        Message::Close(Some(f)) => {
            assert!(f.code.is_sendable(), "close code {} accepted", f.code.0);
            assert!(f.reason.len() <= MAX_REASON_LEN);
            assert!(std::str::from_utf8(f.reason.as_bytes()).is_ok());
        }
        Message::Close(None) => {}
    }
}

/// Feeds `chunks` to a connection of `role` set up by `setup`, taking every
/// event as it comes, and checks each against RFC 6455.
pub fn run_connection(role: Role, setup: &Setup, chunks: &[&[u8]]) -> Run {
    let mut c = new_connection(role, setup.config.clone(), setup.negotiated);
    let mut run = Run {
        events: Vec::new(),
        output: Vec::new(),
        expected_at_peer: Vec::new(),
    };
    let mut failed = false;
    for chunk in chunks {
        if setup.read_buf {
            c.read_buf().extend_from_slice(chunk);
        } else {
            c.receive(chunk);
        }
        failed = drain(&mut c, setup, false, &mut run);
        take_output(&mut c, &mut run.output);
        if failed {
            break;
        }
    }
    if setup.eof && !failed {
        c.receive_eof();
        drain(&mut c, setup, true, &mut run);
        take_output(&mut c, &mut run.output);
        assert!(c.should_close_transport(), "EOF closes the transport");
    }
    run
}

/// Takes events until more bytes are needed or the connection fails; true
/// when it failed.
fn drain(c: &mut Connection, setup: &Setup, eof: bool, run: &mut Run) -> bool {
    loop {
        let close_sent_before = c.close_sent().is_some();
        match c.next_event() {
            Ok(None) => return false,
            Ok(Some(m)) => {
                check_message(&m, c.config());
                match &m {
                    Message::Ping(p) if setup.config.auto_pong && !close_sent_before => {
                        run.expected_at_peer.push(Message::Pong(p.clone()));
                    }
                    Message::Close(frame) => {
                        assert_eq!(c.state(), tether_proto::State::Closed);
                        assert!(c.read_closed());
                        if !close_sent_before {
                            // RFC 6455 §5.5.1: the echo carries the code.
                            let echo = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                            run.expected_at_peer.push(Message::Close(echo));
                        }
                        if role_is_server(c) {
                            assert!(c.should_close_transport(), "§7.1.1: the server closes");
                        }
                    }
                    Message::Text(_) | Message::Binary(_) if setup.echo => {
                        if c.send(m.clone()).is_ok() {
                            run.expected_at_peer.push(m.clone());
                        } else {
                            assert!(close_sent_before, "send fails only once closing");
                        }
                    }
                    _ => {}
                }
                run.events.push(Ok(m));
            }
            Err(e) => {
                match &e {
                    Error::Protocol(p) => check_protocol_error(c, p, close_sent_before, run),
                    Error::AbnormalClosure => {
                        assert!(eof, "1006 only at EOF");
                        assert_eq!(c.state(), tether_proto::State::Closed);
                    }
                    other => panic!("next_event failed with {other:?}"),
                }
                // Errors are sticky.
                let again = c.next_event().expect_err("the error is sticky");
                assert_eq!(format!("{again:?}"), format!("{e:?}"));
                assert!(c.read_closed());
                assert!(!c.has_buffered_input());
                run.events.push(Err(format!("{e:?}")));
                return true;
            }
        }
    }
}

fn role_is_server(c: &Connection) -> bool {
    c.role() == Role::Server
}

/// A protocol error maps to a close code that may be sent (RFC 6455
/// §7.4.1), and failing the connection queued a close frame with it.
fn check_protocol_error(c: &Connection, p: &ProtocolError, close_sent_before: bool, run: &mut Run) {
    let code = p.close_code();
    assert!(
        [
            CloseCode::PROTOCOL_ERROR,
            CloseCode::INVALID_PAYLOAD,
            CloseCode::MESSAGE_TOO_BIG
        ]
        .contains(&code),
        "{p:?} maps to {code:?}"
    );
    assert!(code.is_sendable());
    if let ProtocolError::MessageTooBig { size, limit }
    | ProtocolError::FrameTooBig { size, limit } = p
    {
        assert!(*size > *limit as u64, "{p:?}");
    }
    if !close_sent_before {
        let sent = c.close_sent().expect("failing queues a close frame");
        let sent = sent.expect("with a code").clone();
        assert_eq!(sent.code, code);
        run.expected_at_peer.push(Message::Close(Some(sent)));
    }
    assert!(c.should_close_transport(), "§7.1.7: fail, then close");
}

/// The peer of a connection under test: it must read everything the
/// connection wrote, as a valid frame stream, and find exactly the
/// messages expected.
pub fn check_output(role: Role, setup: &Setup, run: &Run) {
    let peer_role = match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let mut peer_config = ConnectionConfig::default().with_max_message_size(16 << 20);
    peer_config.auto_pong = false;
    let mut peer = new_connection(peer_role, peer_config, setup.negotiated);
    peer.receive(&run.output);
    let mut got = Vec::new();
    loop {
        match peer.next_event() {
            Ok(Some(m)) => got.push(m),
            Ok(None) => break,
            Err(e) => panic!("the peer cannot read what we wrote: {e:?}"),
        }
    }
    assert_eq!(got, run.expected_at_peer, "the peer read other messages");
}

/// The connection target: events checked as they come, the output read by
/// a peer, and the same events and output whatever the splits.
pub fn fuzz_connection(role: Role, data: &[u8]) {
    let input = Input::parse(data);
    let setup = Setup::from_bytes(input.a, input.b);
    let chunks = input.chunks();
    let split = run_connection(role, &setup, &chunks);
    if split.output.is_empty() {
        assert!(split.expected_at_peer.is_empty(), "nothing was written");
    } else {
        check_output(role, &setup, &split);
    }
    if chunks.len() > 1 {
        let whole = run_connection(role, &setup, &[input.payload]);
        assert_eq!(split.events, whole.events, "events depend on the splits");
        assert_eq!(split.output, whole.output, "output depends on the splits");
    }
}

// --- An in-memory stream for the proxy handshakes -------------------------

/// A stream whose reads give `input` in pieces (at most `lens[i]` bytes for
/// the i-th read, in turn; never more than asked) and then EOF, and whose
/// writes are kept.
#[derive(Debug)]
pub struct MemStream {
    input: Vec<u8>,
    /// How many bytes of `input` were read.
    pub pos: usize,
    lens: Vec<u8>,
    reads: usize,
    /// Everything written.
    pub written: Vec<u8>,
}

impl MemStream {
    /// A stream that answers with `input`, cut by `lens` (all 0 or empty:
    /// reads take as much as they ask for).
    pub fn new(input: &[u8], lens: &[u8]) -> Self {
        MemStream {
            input: input.to_vec(),
            pos: 0,
            lens: if lens.iter().all(|&l| l == 0) {
                Vec::new()
            } else {
                lens.iter().map(|&l| l.max(1)).collect()
            },
            reads: 0,
            written: Vec::new(),
        }
    }
}

impl AsyncRead for MemStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let mut n = buf.remaining().min(this.input.len() - this.pos);
        if !this.lens.is_empty() {
            n = n.min(usize::from(this.lens[this.reads % this.lens.len()]));
        }
        buf.put_slice(&this.input[this.pos..this.pos + n]);
        this.pos += n;
        this.reads += 1;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MemStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One current-thread runtime (with its timer) for the whole fuzzing run.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}
