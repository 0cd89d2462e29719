//! Fan-out: a message framed once, queued on many server connections
//! ([`Connection::send_prepared`]).
//!
//! A server that sends one message to many clients frames it once: the
//! server's frames are not masked (RFC 6455 §5.1), so the same bytes are
//! valid on every connection. Each connection then queues those bytes
//! ([`Outgoing`](crate::outgoing::Outgoing) keeps a frame of 4 KiB or more
//! by reference, and copies a smaller one, which costs less than sharing a
//! reference count between threads).
//!
//! permessage-deflate (RFC 7692) is the exception, because the compressed
//! bytes depend on the compressor:
//! - with context takeover (the default), each compressor's window holds
//!   the messages it compressed before, so each connection compresses the
//!   message itself: no bytes can be shared;
//! - without it (`server_no_context_takeover`), every compressor starts
//!   empty, so the message is compressed once for each (level, window)
//!   pair in use and the result is shared by every connection with that
//!   pair.
//!
//! Messages under the connection's compression threshold are sent as they
//! are, with the shared frame.

use super::{Connection, Role, State};
use crate::deflate::Deflater;
use crate::error::Error;
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::message::Message;
use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Mutex};

/// A text or binary message framed once as an unmasked, unfragmented server
/// frame, to be queued on many connections with
/// [`Connection::send_prepared`]. Cloning it is cheap (a reference count).
///
/// ```
/// use tether_proto::{Connection, ConnectionConfig, Message, PreparedMessage, Queued};
/// let msg = PreparedMessage::new(Message::text("tick")).unwrap();
/// let mut a = Connection::server(ConnectionConfig::default());
/// let mut b = Connection::server(ConnectionConfig::default());
/// for conn in [&mut a, &mut b] {
///     // Queued as long as the connection holds at most 1 MiB unsent.
///     assert_eq!(conn.send_prepared(&msg, 1 << 20).unwrap(), Queued::Shared { bytes: 6 });
/// }
/// assert_eq!(msg.frame().as_ref(), b"\x81\x04tick");
/// ```
#[derive(Clone)]
pub struct PreparedMessage {
    inner: Arc<Inner>,
}

struct Inner {
    message: Message,
    /// The whole frame: header and payload.
    frame: Bytes,
    /// Compressed frames, one per (level, window bits) pair of the
    /// connections without context takeover that took this message.
    compressed: Mutex<Vec<Compressed>>,
}

struct Compressed {
    settings: (u32, u8),
    frame: Bytes,
    payload_len: usize,
}

impl std::fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("text", &self.inner.message.is_text())
            .field("len", &self.inner.message.len())
            .finish_non_exhaustive()
    }
}

/// What [`Connection::send_prepared`] queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Queued {
    /// The prepared frame itself ([`PreparedMessage::frame`]).
    Shared {
        /// The frame's length.
        bytes: usize,
    },
    /// A compressed frame shared with every connection that compresses
    /// with the same level and window, without context takeover.
    SharedCompressed {
        /// The compressed frame's length.
        bytes: usize,
    },
    /// Frames encoded for this connection alone: compressed with its own
    /// context (context takeover), or split into fragments of at most
    /// `max_send_frame_size`.
    Encoded {
        /// The frames' length.
        bytes: usize,
    },
    /// Nothing was queued: the unsent bytes would have passed the limit.
    OverLimit {
        /// What the message would have added (for a message this
        /// connection would compress with its own context: an upper bound,
        /// its size before compression plus deflate's worst-case overhead,
        /// since compressing it would change the context).
        bytes: usize,
    },
}

impl Queued {
    /// The bytes queued (zero for [`Queued::OverLimit`]).
    pub fn bytes(&self) -> usize {
        match *self {
            Queued::Shared { bytes }
            | Queued::SharedCompressed { bytes }
            | Queued::Encoded { bytes } => bytes,
            Queued::OverLimit { .. } => 0,
        }
    }
}

impl PreparedMessage {
    /// Frames `message`: one unmasked frame with FIN set, RSV bits clear.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a control message (ping, pong, close):
    /// those belong to one connection.
    pub fn new(message: Message) -> Result<Self, Error> {
        let opcode = match &message {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
            _ => {
                return Err(Error::InvalidInput(
                    "only text and binary messages can be prepared",
                ))
            }
        };
        let frame = encode(opcode, false, message.as_payload());
        Ok(PreparedMessage {
            inner: Arc::new(Inner {
                message,
                frame,
                compressed: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.inner.message
    }

    /// The frame queued on connections that do not compress it: header
    /// and payload, unmasked.
    pub fn frame(&self) -> &Bytes {
        &self.inner.frame
    }

    fn opcode(&self) -> OpCode {
        match self.inner.message {
            Message::Text(_) => OpCode::Text,
            _ => OpCode::Binary,
        }
    }

    /// The frame compressed at `level` with a `bits` window from an empty
    /// context, and its payload length: compressed by the first connection
    /// that needs it, shared by the others.
    fn compressed(&self, (level, bits): (u32, u8)) -> (Bytes, usize) {
        // Held while compressing: a second connection with the same
        // settings waits for the first result instead of compressing again.
        let mut cache = self
            .inner
            .compressed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.iter().find(|c| c.settings == (level, bits)) {
            return (c.frame.clone(), c.payload_len);
        }
        // A fresh compressor that resets after the message produces what
        // each such connection's own compressor would.
        let payload = Deflater::new(level, bits, true).compress(self.inner.message.as_payload());
        // RFC 7692 §6: RSV1 marks a compressed message.
        let frame = encode(self.opcode(), true, &payload);
        cache.push(Compressed {
            settings: (level, bits),
            frame: frame.clone(),
            payload_len: payload.len(),
        });
        (frame, payload.len())
    }
}

/// One unfragmented, unmasked frame.
fn encode(opcode: OpCode, rsv1: bool, payload: &[u8]) -> Bytes {
    let header = FrameHeader {
        fin: true,
        rsv: [rsv1, false, false],
        opcode,
        mask: None,
        len: payload.len() as u64,
    };
    let mut hb = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut hb);
    let mut frame = BytesMut::with_capacity(n + payload.len());
    frame.extend_from_slice(&hb[..n]);
    frame.extend_from_slice(payload);
    frame.freeze()
}

/// An upper bound of what `n` bytes of payload become on the wire after
/// compression (deflate's stored blocks add 5 bytes per 16 KiB, plus the
/// flush) and framing into fragments of `fragment` bytes.
fn wire_bound(n: usize, compressed: bool, fragment: usize) -> usize {
    let n = if compressed {
        n.saturating_add(n / 2048).saturating_add(64)
    } else {
        n
    };
    let frames = n.div_ceil(fragment.max(1)).max(1);
    n.saturating_add(frames.saturating_mul(MAX_HEADER_LEN))
}

impl Connection {
    /// Queues a prepared message, unless that would take the unsent bytes
    /// ([`Connection::buffered_amount`]) past `max_buffered`: then nothing
    /// is queued and [`Queued::OverLimit`] says so (a fan-out server closes
    /// such a slow peer rather than let its queue grow). With nothing
    /// unsent, the message is always queued: otherwise a message larger
    /// than the limit could reach no connection.
    ///
    /// Messages are queued whole, so the prepared frame never lands between
    /// the fragments of another message (RFC 6455 §5.4). What is queued is
    /// the prepared frame itself, or a compressed frame shared with other
    /// connections, or (with context takeover, or when the connection
    /// fragments what it sends) frames encoded for this connection; the
    /// [`Queued`] value says which.
    ///
    /// # Errors
    /// [`Error::Closed`] once the connection is not open (a close frame
    /// went either way, or it failed); [`Error::InvalidInput`] on a client
    /// connection, whose frames must be masked (§5.3).
    pub fn send_prepared(
        &mut self,
        msg: &PreparedMessage,
        max_buffered: usize,
    ) -> Result<Queued, Error> {
        if self.role != Role::Server {
            return Err(Error::InvalidInput(
                "prepared frames are unmasked: only a server sends them",
            ));
        }
        if self.state != State::Open || self.close_sent.is_some() || self.error.is_some() {
            return Err(Error::Closed);
        }
        let len = msg.message().len();
        let fragment = self.config.max_send_frame_size;
        let threshold = self.config.compression.map_or(0, |c| c.threshold);
        let room = match self.out.len() {
            0 => usize::MAX,
            queued => max_buffered.saturating_sub(queued),
        };
        let compress = self.deflater.as_ref().filter(|_| len >= threshold);
        match compress.map(|d| d.stateless_settings()) {
            None if len <= fragment => {
                let frame = msg.frame();
                if frame.len() > room {
                    return Ok(Queued::OverLimit { bytes: frame.len() });
                }
                self.out.push_bytes(frame);
                return Ok(Queued::Shared { bytes: frame.len() });
            }
            Some(Some(settings)) => {
                let (frame, payload_len) = msg.compressed(settings);
                if payload_len <= fragment {
                    if frame.len() > room {
                        return Ok(Queued::OverLimit { bytes: frame.len() });
                    }
                    self.out.push_bytes(&frame);
                    return Ok(Queued::SharedCompressed { bytes: frame.len() });
                }
            }
            _ => {}
        }
        // Encoded here: check the bound first, since compressing with
        // context takeover changes the context even if nothing is sent.
        let bound = wire_bound(len, compress.is_some(), fragment);
        if bound > room {
            return Ok(Queued::OverLimit { bytes: bound });
        }
        let before = self.out.len();
        self.send(msg.message().clone())?;
        Ok(Queued::Encoded {
            bytes: self.out.len() - before,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConnectionConfig;
    use crate::connection::{MaskSource, Negotiated};
    use crate::deflate::{DeflateConfig, DeflateParams};
    use crate::CloseCode;
    use bytes::Buf;

    fn server() -> Connection {
        Connection::server(ConnectionConfig::default())
    }

    fn deflate_server(no_context_takeover: bool, bits: u8) -> Connection {
        let mut s = server();
        s.set_negotiated(Negotiated {
            deflate: Some(DeflateParams {
                server_no_context_takeover: no_context_takeover,
                server_max_window_bits: Some(bits),
                ..DeflateParams::default()
            }),
            ..Negotiated::default()
        });
        s
    }

    fn client_for(s: &Connection) -> Connection {
        let mask: Box<dyn MaskSource> = Box::new(|| [9, 8, 7, 6]);
        let mut c = Connection::client(ConnectionConfig::default(), mask);
        c.set_negotiated(Negotiated {
            deflate: s.deflate(),
            ..Negotiated::default()
        });
        c
    }

    fn drain(c: &mut Connection) -> Vec<u8> {
        crate::outgoing::drain(c.transmit())
    }

    /// Delivers what `s` queued to a client and returns the messages.
    fn received(s: &mut Connection, c: &mut Connection) -> Vec<Message> {
        c.receive(&drain(s));
        let mut v = Vec::new();
        while let Some(m) = c.next_event().unwrap() {
            v.push(m);
        }
        v
    }

    fn json(i: usize) -> Message {
        Message::text(format!(r#"{{"seq":{i},"price":"101.25","note":"x"}}"#).repeat(40))
    }

    #[test]
    fn the_frame_is_encoded_once_and_queued_by_reference_when_large() {
        let big = Message::binary(vec![7u8; 64 << 10]);
        let p = PreparedMessage::new(big.clone()).unwrap();
        let mut conns: Vec<Connection> = (0..3).map(|_| server()).collect();
        for c in &mut conns {
            let q = c.send_prepared(&p, usize::MAX).unwrap();
            assert_eq!(
                q,
                Queued::Shared {
                    bytes: p.frame().len()
                }
            );
            // The queued chunk is the prepared frame's memory, not a copy.
            assert_eq!(c.transmit().chunk().as_ptr(), p.frame().as_ptr());
        }
        for mut s in conns {
            let mut c = client_for(&s);
            assert_eq!(received(&mut s, &mut c), vec![big.clone()]);
        }
    }

    #[test]
    fn a_small_prepared_frame_is_what_send_would_queue() {
        let msg = Message::text("héllo");
        let p = PreparedMessage::new(msg.clone()).unwrap();
        let mut a = server();
        a.send_prepared(&p, usize::MAX).unwrap();
        let mut b = server();
        b.send(msg).unwrap();
        assert_eq!(drain(&mut a), drain(&mut b));
    }

    #[test]
    fn control_messages_cannot_be_prepared() {
        for m in [
            Message::Ping(Bytes::new()),
            Message::Pong(Bytes::new()),
            Message::Close(None),
        ] {
            assert!(matches!(
                PreparedMessage::new(m),
                Err(Error::InvalidInput(_))
            ));
        }
    }

    #[test]
    fn refused_on_a_client_and_once_closing() {
        let p = PreparedMessage::new(Message::text("x")).unwrap();
        let mask: Box<dyn MaskSource> = Box::new(|| [1, 2, 3, 4]);
        let mut c = Connection::client(ConnectionConfig::default(), mask);
        assert!(matches!(
            c.send_prepared(&p, usize::MAX),
            Err(Error::InvalidInput(_))
        ));
        let mut s = server();
        s.close(CloseCode::NORMAL, "").unwrap();
        assert!(matches!(
            s.send_prepared(&p, usize::MAX),
            Err(Error::Closed)
        ));
        let mut failed = server();
        failed.fail(CloseCode::INTERNAL_ERROR, "gone");
        assert!(matches!(
            failed.send_prepared(&p, usize::MAX),
            Err(Error::Closed)
        ));
    }

    #[test]
    fn over_the_limit_nothing_is_queued() {
        let p = PreparedMessage::new(Message::binary(vec![1u8; 1000])).unwrap();
        let mut s = server();
        assert_eq!(
            s.send_prepared(&p, 2100).unwrap(),
            Queued::Shared { bytes: 1004 }
        );
        assert_eq!(
            s.send_prepared(&p, 2100).unwrap(),
            Queued::Shared { bytes: 1004 }
        );
        assert_eq!(
            s.send_prepared(&p, 2100).unwrap(),
            Queued::OverLimit { bytes: 1004 }
        );
        assert_eq!(
            s.buffered_amount(),
            2008,
            "the refused frame was not queued"
        );
    }

    #[test]
    fn a_message_over_the_limit_is_queued_on_an_empty_queue() {
        let p = PreparedMessage::new(Message::binary(vec![1u8; 1000])).unwrap();
        let mut s = server();
        assert_eq!(
            s.send_prepared(&p, 100).unwrap(),
            Queued::Shared { bytes: 1004 }
        );
        assert_eq!(
            s.send_prepared(&p, 100).unwrap(),
            Queued::OverLimit { bytes: 1004 }
        );
    }

    #[test]
    fn without_context_takeover_one_compression_serves_every_connection() {
        let p = PreparedMessage::new(json(1)).unwrap();
        let mut a = deflate_server(true, 12);
        let mut b = deflate_server(true, 12);
        let qa = a.send_prepared(&p, usize::MAX).unwrap();
        let qb = b.send_prepared(&p, usize::MAX).unwrap();
        assert!(matches!(qa, Queued::SharedCompressed { .. }), "{qa:?}");
        assert_eq!(qa, qb);
        assert!(qa.bytes() < json(1).len() / 4, "compressed: {qa:?}");
        // The same bytes, compressed once.
        let (pa, pb) = (a.transmit().chunk().to_vec(), b.transmit().chunk().to_vec());
        assert_eq!(pa, pb);
        assert_eq!(p.inner.compressed.lock().unwrap().len(), 1);
        // A third connection with another window gets its own compression.
        let mut c = deflate_server(true, 10);
        c.send_prepared(&p, usize::MAX).unwrap();
        assert_eq!(p.inner.compressed.lock().unwrap().len(), 2);
        for mut s in [a, b, c] {
            let mut cl = client_for(&s);
            assert_eq!(received(&mut s, &mut cl), vec![json(1)]);
        }
    }

    #[test]
    fn with_context_takeover_each_connection_compresses_in_its_own_context() {
        let mut s = deflate_server(false, 12);
        let mut c = client_for(&s);
        for i in 0..5 {
            let p = PreparedMessage::new(json(i)).unwrap();
            let q = s.send_prepared(&p, usize::MAX).unwrap();
            assert!(matches!(q, Queued::Encoded { .. }), "{q:?}");
            if i > 0 {
                // The window already holds a similar message.
                assert!(q.bytes() < 100, "{q:?}");
            }
            assert_eq!(received(&mut s, &mut c), vec![json(i)]);
        }
    }

    #[test]
    fn context_takeover_over_the_limit_leaves_the_context_untouched() {
        let mut s = deflate_server(false, 12);
        let mut c = client_for(&s);
        let p = PreparedMessage::new(json(1)).unwrap();
        // The bound of an uncompressed message does not fit: refused
        // without compressing.
        s.send(Message::text("first")).unwrap();
        assert_eq!(received(&mut s, &mut c), vec![Message::text("first")]);
        s.send(Message::binary(vec![0u8; 10])).unwrap();
        let q = s.send_prepared(&p, 100).unwrap();
        assert!(matches!(q, Queued::OverLimit { bytes } if bytes > json(1).len()));
        assert_eq!(s.buffered_amount(), 12, "only the binary message");
        // The context is as before: the next message decodes.
        s.send_prepared(&p, usize::MAX).unwrap();
        assert_eq!(
            received(&mut s, &mut c),
            vec![Message::binary(vec![0u8; 10]), json(1)]
        );
    }

    #[test]
    fn under_the_threshold_deflate_connections_take_the_shared_frame() {
        let p = PreparedMessage::new(Message::text("short")).unwrap();
        let mut s = deflate_server(false, 12);
        assert_eq!(
            s.send_prepared(&p, usize::MAX).unwrap(),
            Queued::Shared { bytes: 7 }
        );
        let mut c = client_for(&s);
        assert_eq!(received(&mut s, &mut c), vec![Message::text("short")]);
    }

    #[test]
    fn a_connection_that_fragments_encodes_the_message_itself() {
        let cfg = ConnectionConfig {
            max_send_frame_size: 100,
            compression: Some(DeflateConfig::default()),
            ..ConnectionConfig::default()
        };
        let mut s = Connection::server(cfg);
        let msg = Message::binary(vec![3u8; 250]);
        let p = PreparedMessage::new(msg.clone()).unwrap();
        let q = s.send_prepared(&p, usize::MAX).unwrap();
        assert_eq!(q, Queued::Encoded { bytes: 250 + 3 * 2 });
        let mut c = client_for(&s);
        assert_eq!(received(&mut s, &mut c), vec![msg]);
    }

    #[test]
    fn prepared_frames_fall_between_whole_messages() {
        let cfg = ConnectionConfig {
            max_send_frame_size: 4,
            ..ConnectionConfig::default()
        };
        let mut s = Connection::server(cfg);
        let p = PreparedMessage::new(Message::text("tick")).unwrap();
        s.send(Message::text("fragmented message")).unwrap();
        s.send_prepared(&p, usize::MAX).unwrap();
        s.send(Message::text("after")).unwrap();
        let mut c = client_for(&s);
        assert_eq!(
            received(&mut s, &mut c),
            vec![
                Message::text("fragmented message"),
                Message::text("tick"),
                Message::text("after")
            ]
        );
    }
}
