//! The connection state machine: frames in, messages out, and back.
//!
//! A [`Connection`] owns no socket and no clock. The I/O layer:
//! 1. reads bytes into [`Connection::read_buf`] (or passes them to
//!    [`Connection::receive`]), and calls [`Connection::receive_eof`] at EOF;
//! 2. calls [`Connection::next_event`] until it returns `Ok(None)`, which
//!    means more bytes are needed;
//! 3. queues messages with [`Connection::send`] and friends (a message
//!    framed once for many connections: [`Connection::send_prepared`]);
//! 4. writes out [`Connection::transmit`] whenever it is not empty;
//! 5. closes the transport when [`Connection::should_close_transport`] says so.
//!
//! Errors are sticky: once `next_event` fails, the close frame with the right
//! code is already queued, and every later call returns the same error.

pub mod prepared;

use crate::close::{CloseCode, CloseFrame, MAX_REASON_LEN};
use crate::config::ConnectionConfig;
use crate::deflate::{DeflateParams, Deflater, Inflater};
use crate::error::{Error, ProtocolError};
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use crate::message::Message;
use crate::outgoing::Outgoing;
use crate::utf8::{Utf8Bytes, Utf8Validator};
use bytes::{Buf, Bytes, BytesMut};

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that opened the connection; it masks its frames.
    Client,
    /// The end that accepted it.
    Server,
}

/// The state of a connection (RFC 6455 §4, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// The opening handshake is in progress.
    Connecting,
    /// Messages flow both ways.
    Open,
    /// A close frame was sent or received, but not both; or the connection failed.
    Closing,
    /// Both close frames were exchanged, or the transport ended.
    Closed,
}

/// A source of masking keys for a client. RFC 6455 §10.3 requires them to be
/// unpredictable, so use a CSPRNG; tests may pass a fixed key.
pub trait MaskSource: Send + Sync {
    /// The next 4-byte masking key.
    fn next_mask(&mut self) -> [u8; 4];
}

impl<F: FnMut() -> [u8; 4] + Send + Sync> MaskSource for F {
    fn next_mask(&mut self) -> [u8; 4] {
        self()
    }
}

/// Extensions negotiated during the handshake, as far as framing cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// RSV bits the peer may set for an extension the core does not know
    /// (permessage-deflate's RSV1 is handled through `deflate`).
    pub rsv_allowed: [bool; 3],
    /// permessage-deflate, when agreed (RFC 7692).
    pub deflate: Option<DeflateParams>,
}

/// The frame whose header has been read and whose payload is arriving.
#[derive(Debug)]
struct CurrentFrame {
    header: FrameHeader,
    len: usize,
    /// Payload bytes at the start of `read_buf` already unmasked and
    /// validated.
    processed: usize,
    /// True when the payload belongs to an uncompressed text message (its
    /// UTF-8 is checked as it arrives).
    text: bool,
    /// True when the payload is compressed (permessage-deflate).
    compressed: bool,
}

/// A fragmented message being assembled.
#[derive(Debug)]
struct Fragmented {
    text: bool,
    buf: BytesMut,
    /// For a compressed message: the bytes inflated so far.
    compressed: Option<Vec<u8>>,
}

/// A WebSocket connection after the opening handshake, without I/O.
pub struct Connection {
    role: Role,
    state: State,
    config: ConnectionConfig,
    negotiated: Negotiated,
    read_buf: BytesMut,
    current: Option<CurrentFrame>,
    fragmented: Option<Fragmented>,
    /// Validates the text message in progress (single frame or fragmented).
    utf8: Utf8Validator,
    out: Outgoing,
    mask: Option<Box<dyn MaskSource>>,
    close_sent: Option<Option<CloseFrame>>,
    close_received: Option<Option<CloseFrame>>,
    error: Option<Error>,
    eof: bool,
    deflater: Option<Box<Deflater>>,
    inflater: Option<Box<Inflater>>,
    /// How much [`Connection::read_buf`] offers between frames: it starts
    /// small, so an idle connection holds little, and doubles (up to
    /// [`READ_CHUNK`]) each time a read fills all that was offered.
    read_chunk: usize,
    /// Bytes consumed from the front of `read_buf` so far, and where the
    /// last offer ended (in the same count): to see whether a read filled
    /// the offer.
    consumed: u64,
    offer_end: u64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("buffered_in", &self.read_buf.len())
            .field("buffered_out", &self.out.len())
            .finish_non_exhaustive()
    }
}

const READ_CHUNK: usize = 16 * 1024;
/// The first offer of [`Connection::read_buf`]: enough for a burst of small
/// messages, and a quarter of a page for an idle connection.
const MIN_READ_CHUNK: usize = 1024;

impl Connection {
    /// A server-side connection.
    pub fn server(config: ConnectionConfig) -> Self {
        Self::new(Role::Server, config, None)
    }

    /// A client-side connection that masks frames with keys from `mask`.
    pub fn client(config: ConnectionConfig, mask: Box<dyn MaskSource>) -> Self {
        Self::new(Role::Client, config, Some(mask))
    }

    fn new(role: Role, config: ConnectionConfig, mask: Option<Box<dyn MaskSource>>) -> Self {
        Connection {
            role,
            state: State::Open,
            config,
            negotiated: Negotiated::default(),
            read_buf: BytesMut::new(),
            current: None,
            fragmented: None,
            utf8: Utf8Validator::new(),
            out: Outgoing::default(),
            mask,
            close_sent: None,
            close_received: None,
            error: None,
            eof: false,
            deflater: None,
            inflater: None,
            read_chunk: MIN_READ_CHUNK,
            consumed: 0,
            offer_end: 0,
        }
    }

    /// Records the extensions negotiated in the handshake; call it before
    /// the first byte is received. With permessage-deflate, sets up the
    /// compressor and decompressor for this end's role.
    pub fn set_negotiated(&mut self, negotiated: Negotiated) {
        self.negotiated = negotiated;
        if let Some(p) = negotiated.deflate {
            let cfg = self.config.compression.unwrap_or_default();
            let (bits, reset_ours, reset_peer) = match self.role {
                Role::Client => (
                    p.client_max_window_bits,
                    p.client_no_context_takeover,
                    p.server_no_context_takeover,
                ),
                Role::Server => (
                    p.server_max_window_bits,
                    p.server_no_context_takeover,
                    p.client_no_context_takeover,
                ),
            };
            let bits = bits.filter(|b| *b >= 9).unwrap_or(15);
            self.deflater = Some(Box::new(Deflater::new(cfg.level, bits, reset_ours)));
            self.inflater = Some(Box::new(Inflater::new(reset_peer)));
        }
    }

    /// The permessage-deflate parameters in use, if any.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.negotiated.deflate.filter(|_| self.deflater.is_some())
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// The buffer to read transport bytes into, with room reserved. After
    /// reading, call [`Connection::next_event`].
    pub fn read_buf(&mut self) -> &mut BytesMut {
        // The last read filled everything offered: more is probably waiting.
        if self.offer_end > 0 && self.consumed + self.read_buf.len() as u64 >= self.offer_end {
            self.read_chunk = (self.read_chunk * 2).min(READ_CHUNK);
        }
        // Inside a frame, reserve exactly the rest of it (up to 4 MiB at a
        // time), so a large frame lands in one allocation and is never copied
        // again by a late, small reservation. The frame's size was checked
        // against the limits when its header arrived.
        let spare = self.read_buf.capacity() - self.read_buf.len();
        match &self.current {
            Some(c) => {
                let rest = c.len.saturating_sub(self.read_buf.len()).min(4 << 20);
                if spare < rest || spare == 0 {
                    self.read_buf
                        .reserve(rest.max(READ_CHUNK.min(c.len.max(64))));
                }
            }
            None if spare < self.read_chunk / 2 => self.read_buf.reserve(self.read_chunk),
            None => {}
        }
        self.offer_end = self.consumed + self.read_buf.capacity() as u64;
        &mut self.read_buf
    }

    /// Copies transport bytes in. Equivalent to extending [`Connection::read_buf`].
    pub fn receive(&mut self, data: &[u8]) {
        self.read_buf.extend_from_slice(data);
    }

    /// True when received bytes are waiting to be processed.
    pub fn has_buffered_input(&self) -> bool {
        !self.read_buf.is_empty() && !self.read_closed()
    }

    /// Tells the connection that the transport reached EOF. The next call to
    /// [`Connection::next_event`] reports an abnormal closure (1006) unless a
    /// close frame was received.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// True when no more messages can arrive: a close frame was received, the
    /// connection failed, or the transport ended.
    pub fn read_closed(&self) -> bool {
        self.close_received.is_some() || self.error.is_some() || self.eof
    }

    /// The close frame received from the peer, if any (`Some(None)`: a close
    /// frame without a code).
    pub fn close_received(&self) -> Option<Option<&CloseFrame>> {
        self.close_received.as_ref().map(|c| c.as_ref())
    }

    /// The close frame sent to the peer, if any.
    pub fn close_sent(&self) -> Option<Option<&CloseFrame>> {
        self.close_sent.as_ref().map(|c| c.as_ref())
    }

    /// The error that failed the connection, if any.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Processes buffered input and returns the next message, or `Ok(None)`
    /// when more bytes are needed (or the connection has ended cleanly).
    ///
    /// Pings are answered here (the pong is queued to [`Connection::transmit`])
    /// and also returned, as are pongs and the peer's close frame. When a close
    /// frame arrives and no close was sent yet, the echo is queued (RFC 6455
    /// §5.5.1).
    pub fn next_event(&mut self) -> Result<Option<Message>, Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        loop {
            if self.close_received.is_some() {
                // RFC 6455 §1.4: nothing follows a close frame; drop it.
                self.consumed += self.read_buf.len() as u64;
                self.read_buf.clear();
                return Ok(None);
            }
            if self.current.is_none() {
                match FrameHeader::decode(&self.read_buf) {
                    Ok(Some((header, hlen))) => {
                        crate::trace::frame("recv", &header);
                        if let Err(e) = self.check_header(&header) {
                            return Err(self.fail_with(e));
                        }
                        self.read_buf.advance(hlen);
                        self.consumed += hlen as u64;
                        let text = match header.opcode {
                            OpCode::Text => true,
                            OpCode::Continuation => {
                                self.fragmented.as_ref().is_some_and(|f| f.text)
                            }
                            _ => false,
                        };
                        let compressed = self.is_compressed(&header);
                        if header.opcode == OpCode::Text {
                            self.utf8 = Utf8Validator::new();
                        }
                        self.current = Some(CurrentFrame {
                            header,
                            len: header.len as usize,
                            processed: 0,
                            // Compressed text is validated after inflating.
                            text: text && !compressed,
                            compressed,
                        });
                    }
                    Ok(None) => return self.need_more(),
                    Err(e) => return Err(self.fail_with(e)),
                }
            }
            let cur = self.current.as_mut().expect("current frame");
            let avail = self.read_buf.len().min(cur.len);
            if avail > cur.processed {
                let new = &mut self.read_buf[cur.processed..avail];
                if let Some(key) = cur.header.mask {
                    apply_mask(new, key, cur.processed);
                }
                // Validate text as it arrives, so that invalid UTF-8 fails
                // before the rest of the frame is even received.
                if cur.text && self.utf8.feed(new).is_err() {
                    return Err(self.fail_with(ProtocolError::InvalidUtf8));
                }
                cur.processed = avail;
            }
            if avail < cur.len {
                return self.need_more();
            }
            let cur = self.current.take().expect("current frame");
            let payload = self.read_buf.split_to(cur.len);
            crate::trace::payload("recv", &payload);
            self.consumed += cur.len as u64;
            if cur.len > 4 * READ_CHUNK {
                self.shrink_read_buf();
            }
            if let Some(msg) = self.complete_frame(cur, payload)? {
                return Ok(Some(msg));
            }
        }
    }

    /// After a large frame: the bytes left in the buffer still share the
    /// frame's allocation, which would stay alive as long as the buffer
    /// does, after the message itself is dropped. Move a small remainder
    /// to a fresh buffer, so an idle connection holds no peak allocation.
    fn shrink_read_buf(&mut self) {
        if self.read_buf.len() <= READ_CHUNK {
            let rest = std::mem::take(&mut self.read_buf);
            self.read_buf = BytesMut::from(&rest[..]);
        }
    }

    fn need_more(&mut self) -> Result<Option<Message>, Error> {
        if self.eof && self.close_received.is_none() {
            let e = Error::AbnormalClosure;
            self.error = Some(e.clone());
            self.state = State::Closed;
            return Err(e);
        }
        Ok(None)
    }

    /// RFC 6455 §5.1-§5.4 rules that depend on role, state and extensions.
    fn check_header(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        // §5.1: clients mask, servers do not.
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        // §5.2: RSV bits MUST be 0 unless an extension defines them. RFC 7692
        // §6.1: with permessage-deflate, RSV1 marks the first frame of a
        // compressed message, and only that frame.
        let deflate_rsv1 =
            self.inflater.is_some() && matches!(h.opcode, OpCode::Text | OpCode::Binary);
        for i in 0..3 {
            let allowed = self.negotiated.rsv_allowed[i] || (i == 0 && deflate_rsv1);
            if h.rsv[i] && !allowed {
                return Err(ProtocolError::ReservedBits);
            }
        }
        // §5.4: fragmentation rules.
        match h.opcode {
            OpCode::Continuation if self.fragmented.is_none() => {
                return Err(ProtocolError::UnexpectedContinuation)
            }
            OpCode::Text | OpCode::Binary if self.fragmented.is_some() => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            _ => {}
        }
        // Limits, checked on the header so the payload is never buffered.
        if h.len > self.config.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooBig {
                size: h.len,
                limit: self.config.max_frame_size,
            });
        }
        // A compressed message is limited by its inflated size, checked while
        // inflating; its frames are limited by max_frame_size above.
        if !h.opcode.is_control() && !self.is_compressed(h) {
            let so_far = self.fragmented.as_ref().map_or(0, |f| f.buf.len()) as u64;
            let total = so_far.saturating_add(h.len);
            if total > self.config.max_message_size as u64 {
                return Err(ProtocolError::MessageTooBig {
                    size: total,
                    limit: self.config.max_message_size,
                });
            }
        }
        Ok(())
    }

    /// Whether a data frame carries compressed data: the first frame of a
    /// message with RSV1, or a continuation of such a message.
    fn is_compressed(&self, h: &FrameHeader) -> bool {
        if self.inflater.is_none() {
            return false;
        }
        match h.opcode {
            OpCode::Text | OpCode::Binary => h.rsv[0],
            OpCode::Continuation => self
                .fragmented
                .as_ref()
                .is_some_and(|f| f.compressed.is_some()),
            _ => false,
        }
    }

    /// Inflates a compressed frame into its message (RFC 7692 §6.2).
    fn complete_compressed(
        &mut self,
        h: FrameHeader,
        payload: &[u8],
    ) -> Result<Option<Message>, Error> {
        let (text, mut buf) = match h.opcode {
            OpCode::Continuation => {
                let f = self.fragmented.as_mut().expect("checked in check_header");
                (f.text, f.compressed.take().unwrap_or_default())
            }
            op => (op == OpCode::Text, Vec::new()),
        };
        let before = buf.len();
        let limit = self.config.max_message_size;
        let inflater = self
            .inflater
            .as_mut()
            .expect("compressed implies an inflater");
        if let Err(e) = inflater.inflate(payload, h.fin, &mut buf, limit) {
            return Err(self.fail_with(e));
        }
        if text && self.utf8.feed(&buf[before..]).is_err() {
            return Err(self.fail_with(ProtocolError::InvalidUtf8));
        }
        if !h.fin {
            self.fragmented = Some(Fragmented {
                text,
                buf: BytesMut::new(),
                compressed: Some(buf),
            });
            return Ok(None);
        }
        self.fragmented = None;
        self.finish_message(text, Bytes::from(buf))
    }

    /// Turns the payload of a complete text or binary message (inflated, if
    /// it was compressed) into the message. A text message must not end
    /// inside a code point (RFC 6455 §8.1).
    ///
    /// For text, every byte of `payload` must have gone through `self.utf8`,
    /// in order, since it was reset at the message's first frame.
    #[allow(unsafe_code)]
    fn finish_message(&mut self, text: bool, payload: Bytes) -> Result<Option<Message>, Error> {
        if !text {
            return Ok(Some(Message::Binary(payload)));
        }
        if self.utf8.finish().is_err() {
            return Err(self.fail_with(ProtocolError::InvalidUtf8));
        }
        // SAFETY: `self.utf8` was reset when the message's first (Text)
        // frame header arrived (`next_event`), and was then fed every byte
        // of `payload` in order: the unmasked payload of each frame as it
        // arrived (`next_event`), or, for a compressed message, everything
        // inflated (`complete_compressed`). `feed` rejects any prefix that
        // cannot become valid UTF-8 and `finish` a message that ends inside
        // a code point, so `payload` is valid UTF-8.
        let text = unsafe { Utf8Bytes::from_validated(payload) };
        Ok(Some(Message::Text(text)))
    }

    fn complete_frame(
        &mut self,
        cur: CurrentFrame,
        payload: BytesMut,
    ) -> Result<Option<Message>, Error> {
        let h = cur.header;
        if cur.compressed {
            return self.complete_compressed(h, &payload);
        }
        match h.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                // check_header let a continuation through only inside a
                // fragmented message, and a first frame only outside one.
                let (text, buf) = match self.fragmented.take() {
                    Some(mut frag) => {
                        frag.buf.extend_from_slice(&payload);
                        (frag.text, frag.buf)
                    }
                    None => (cur.text, payload),
                };
                if !h.fin {
                    self.fragmented = Some(Fragmented {
                        text,
                        buf,
                        compressed: None,
                    });
                    return Ok(None);
                }
                self.finish_message(text, buf.freeze())
            }
            OpCode::Ping => {
                let data = payload.freeze();
                if self.config.auto_pong && self.close_sent.is_none() {
                    self.write_frame(OpCode::Pong, &data, true, false);
                }
                Ok(Some(Message::Ping(data)))
            }
            OpCode::Pong => Ok(Some(Message::Pong(payload.freeze()))),
            OpCode::Close => {
                let frame = match parse_close_payload(&payload) {
                    Ok(f) => f,
                    Err(e) => return Err(self.fail_with(e)),
                };
                self.close_received = Some(frame.clone());
                if self.close_sent.is_none() {
                    // Echo the peer's code (RFC 6455 §5.5.1); an empty close
                    // is answered with an empty close.
                    let echo = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                    self.queue_close(echo);
                }
                self.state = State::Closed;
                Ok(Some(Message::Close(frame)))
            }
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): queues a close frame with the
    /// error's code, stops reading, and makes the error sticky.
    fn fail_with(&mut self, e: ProtocolError) -> Error {
        tracing::debug!(error = %e, code = e.close_code().0, "failing the WebSocket connection");
        if self.close_sent.is_none() {
            let reason = match e {
                ProtocolError::InvalidUtf8 => "invalid UTF-8",
                ProtocolError::MessageTooBig { .. } | ProtocolError::FrameTooBig { .. } => {
                    "message too big"
                }
                _ => "protocol error",
            };
            self.queue_close(Some(CloseFrame::new(e.close_code(), reason)));
        }
        self.state = State::Closing;
        let err = Error::Protocol(e);
        self.error = Some(err.clone());
        err
    }

    /// Fails the connection with `code` for a reason found outside the core
    /// (a keepalive timeout, say): queues the close frame and stops reading.
    pub fn fail(&mut self, code: CloseCode, reason: &str) {
        if self.close_sent.is_none() && code.is_sendable() {
            let reason = crate::close::truncate_reason(reason);
            self.queue_close(Some(CloseFrame::new(code, reason)));
        }
        if self.error.is_none() {
            self.error = Some(Error::Failed(code));
        }
        self.state = State::Closing;
    }

    /// Queues a message.
    ///
    /// Text and binary messages are split into frames of at most
    /// `max_send_frame_size`. A `Close` message starts the closing handshake
    /// (see [`Connection::close`]).
    ///
    /// # Errors
    /// [`Error::Closed`] once a close frame was sent;
    /// [`Error::InvalidInput`] for a ping or pong over 125 bytes or an invalid
    /// close code or reason.
    pub fn send(&mut self, msg: Message) -> Result<(), Error> {
        let frag = self.config.max_send_frame_size;
        self.send_fragmented(msg, frag)
    }

    /// Queues a text or binary message split into frames of at most
    /// `fragment_size` bytes (at least one frame, even when empty). Other
    /// messages are sent as by [`Connection::send`].
    pub fn send_fragmented(&mut self, msg: Message, fragment_size: usize) -> Result<(), Error> {
        if self.close_sent.is_some() || self.error.is_some() {
            return Err(Error::Closed);
        }
        let fragment_size = fragment_size.max(1);
        match msg {
            Message::Text(t) => self.write_data(OpCode::Text, t.as_bytes(), fragment_size),
            Message::Binary(b) => self.write_data(OpCode::Binary, &b, fragment_size),
            Message::Ping(p) => {
                check_control_len(&p)?;
                self.write_frame(OpCode::Ping, &p, true, false);
            }
            Message::Pong(p) => {
                check_control_len(&p)?;
                self.write_frame(OpCode::Pong, &p, true, false);
            }
            Message::Close(frame) => return self.close_frame(frame),
        }
        Ok(())
    }

    /// Queues a ping.
    pub fn ping(&mut self, payload: Bytes) -> Result<(), Error> {
        self.send(Message::Ping(payload))
    }

    /// Starts the closing handshake with `code` and `reason` (RFC 6455 §7.1.2).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the code may not be sent (1005, 1006,
    /// 1015, unassigned codes) or the reason is over 123 bytes;
    /// [`Error::Closed`] when a close frame was already sent.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.close_frame(Some(CloseFrame::new(code, reason)))
    }

    fn close_frame(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        if let Some(f) = &frame {
            if !f.code.is_sendable() {
                return Err(Error::InvalidInput("close code may not be sent"));
            }
            if f.reason.len() > MAX_REASON_LEN {
                return Err(Error::InvalidInput("close reason is longer than 123 bytes"));
            }
        }
        if self.close_sent.is_some() {
            return Err(Error::Closed);
        }
        self.queue_close(frame);
        self.state = if self.close_received.is_some() {
            State::Closed
        } else {
            State::Closing
        };
        Ok(())
    }

    fn queue_close(&mut self, frame: Option<CloseFrame>) {
        // RFC 6455 §5.5.1: the code in network byte order, then the reason.
        let payload = match &frame {
            Some(f) => {
                let mut p = BytesMut::with_capacity(2 + f.reason.len());
                p.extend_from_slice(&f.code.0.to_be_bytes());
                p.extend_from_slice(f.reason.as_bytes());
                p.freeze()
            }
            None => Bytes::new(),
        };
        self.write_frame(OpCode::Close, &payload, true, false);
        self.close_sent = Some(frame);
    }

    fn write_data(&mut self, opcode: OpCode, data: &Bytes, fragment_size: usize) {
        // RFC 7692 §7.2.1: compress the whole message, then frame it; RSV1 on
        // the first frame only. Small messages go out as they are.
        let threshold = self.config.compression.map_or(0, |c| c.threshold);
        let (data, mut rsv1) = match &mut self.deflater {
            Some(d) if data.len() >= threshold => (Bytes::from(d.compress(data)), true),
            _ => (data.clone(), false),
        };
        if data.len() <= fragment_size {
            return self.write_frame(opcode, &data, true, rsv1);
        }
        let mut rest = data;
        let mut op = opcode;
        while rest.len() > fragment_size {
            let part = rest.split_to(fragment_size);
            self.write_frame(op, &part, false, rsv1);
            op = OpCode::Continuation;
            rsv1 = false;
        }
        self.write_frame(op, &rest, true, rsv1);
    }

    /// Queues one frame (RFC 6455 §5.2). A client masks the payload with a
    /// fresh key (§5.3), which needs a copy; a server queues a large payload
    /// without copying it.
    fn write_frame(&mut self, opcode: OpCode, data: &Bytes, fin: bool, rsv1: bool) {
        let mask = self.mask.as_mut().map(|m| m.next_mask());
        let header = FrameHeader {
            fin,
            rsv: [rsv1, false, false],
            opcode,
            mask,
            len: data.len() as u64,
        };
        crate::trace::frame("send", &header);
        crate::trace::payload("send", data);
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut hb);
        match mask {
            Some(key) => {
                self.out.reserve(n + data.len());
                self.out.push_slice(&hb[..n]);
                self.out.push_masked(data, key);
            }
            None => {
                self.out.push_slice(&hb[..n]);
                self.out.push_bytes(data);
            }
        }
    }

    /// The bytes waiting to be written. Write them with `chunks_vectored` and
    /// `advance` (it implements [`bytes::Buf`]).
    pub fn transmit(&mut self) -> &mut Outgoing {
        &mut self.out
    }

    /// Keeps the write buffer's allocation after a large message, for the
    /// next ones, until [`Connection::release_spare_capacity`] (default:
    /// given back as soon as it is written out, so that an idle connection
    /// holds no peak). Turn it on when something calls
    /// `release_spare_capacity` from time to time, as tether's keepalive
    /// does at each ping.
    pub fn set_keep_write_capacity(&mut self, on: bool) {
        self.out.set_retain(on);
    }

    /// Gives back a write buffer grown by a large message, if nothing is
    /// waiting in it.
    pub fn release_spare_capacity(&mut self) {
        self.out.release_spare();
    }

    /// The number of bytes waiting to be written.
    pub fn buffered_amount(&self) -> usize {
        self.out.len()
    }

    /// True when the I/O layer should close the transport now (after
    /// flushing [`Connection::transmit`]):
    /// - a server closes TCP once close frames went both ways (RFC 6455 §7.1.1);
    /// - either side closes after failing the connection (§7.1.7).
    ///
    /// A client whose closing handshake completed waits for the server to
    /// close TCP, bounded by its close timeout.
    pub fn should_close_transport(&self) -> bool {
        if self.eof {
            return true;
        }
        if self.error.is_some() {
            return self.close_sent.is_some() || self.eof;
        }
        self.role == Role::Server && self.close_sent.is_some() && self.close_received.is_some()
    }
}

fn check_control_len(p: &[u8]) -> Result<(), Error> {
    if p.len() > 125 {
        Err(Error::InvalidInput(
            "control frame payload is longer than 125 bytes",
        ))
    } else {
        Ok(())
    }
}

/// Parses a close frame's payload (RFC 6455 §5.5.1, §7.4).
fn parse_close_payload(p: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match p.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::InvalidClosePayload),
        _ => {
            let code = CloseCode(u16::from_be_bytes([p[0], p[1]]));
            if !code.is_sendable() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = std::str::from_utf8(&p[2..]).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(CloseFrame::new(code, reason)))
        }
    }
}
