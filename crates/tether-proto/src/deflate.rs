//! permessage-deflate (RFC 7692): negotiation and per-message compression.
//!
//! The negotiation functions are pure; [`Deflater`] and [`Inflater`] hold
//! the zlib streams (flate2 on the zlib-rs backend) of one connection.

use crate::error::ProtocolError;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension token.
pub const NAME: &str = "permessage-deflate";

/// The bytes a sync flush ends with, removed from each compressed message
/// and added back before inflating (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compression settings: what to offer or accept, and how to compress.
///
/// The defaults follow Python `websockets`: a client offers
/// `permessage-deflate; client_max_window_bits`; a server accepts and limits
/// its own window to 12 bits (4 KiB of memory per connection for the
/// compressor's window, instead of 32 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// The compression level, 0-9 (default 6).
    pub level: u32,
    /// Messages shorter than this are sent uncompressed (default 128 bytes).
    pub threshold: usize,
    /// As a server, the window of our compressor, 9-15 (default 12), sent as
    /// `server_max_window_bits` when below 15. As a client, the largest
    /// server window we offer to accept (default: none, any).
    pub server_max_window_bits: Option<u8>,
    /// As a client, the window of our compressor, 9-15 (offered as a bare
    /// `client_max_window_bits` by default, meaning "you may limit it").
    /// As a server, the limit we ask clients for, when they allow it.
    pub client_max_window_bits: Option<u8>,
    /// Ask the server to reset its compressor after each message.
    pub server_no_context_takeover: bool,
    /// Ask the client to reset its compressor after each message.
    pub client_no_context_takeover: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            level: 6,
            threshold: 128,
            server_max_window_bits: None,
            client_max_window_bits: None,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
        }
    }
}

impl DeflateConfig {
    /// The server-side defaults (12-bit server window, as websockets).
    pub fn server_default() -> Self {
        DeflateConfig {
            server_max_window_bits: Some(12),
            ..DeflateConfig::default()
        }
    }

    /// Sets the compression level, 0-9 (`DeflateConfig` is
    /// `#[non_exhaustive]`: build it from a default and these setters).
    ///
    /// ```
    /// use tether_proto::deflate::DeflateConfig;
    /// let tuned = DeflateConfig::default().level(1).no_context_takeover();
    /// assert_eq!(tuned.level, 1);
    /// assert!(tuned.client_no_context_takeover && tuned.server_no_context_takeover);
    /// ```
    #[must_use]
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Sets the size under which messages are sent uncompressed.
    #[must_use]
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Asks both sides to reset their compressor after each message: less
    /// memory per connection (nothing is kept between messages), less
    /// compression.
    #[must_use]
    pub fn no_context_takeover(mut self) -> Self {
        self.client_no_context_takeover = true;
        self.server_no_context_takeover = true;
        self
    }

    /// Sets [`DeflateConfig::server_max_window_bits`] (clamped to 9-15).
    #[must_use]
    pub fn server_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.server_max_window_bits = bits.map(|b| b.clamp(9, 15));
        self
    }

    /// Sets [`DeflateConfig::client_max_window_bits`] (clamped to 9-15).
    #[must_use]
    pub fn client_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.client_max_window_bits = bits.map(|b| b.clamp(9, 15));
        self
    }

    /// The `Sec-WebSocket-Extensions` value a client offers.
    pub fn client_offer(&self) -> String {
        let mut s = DeflateParams {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: self.server_max_window_bits,
            client_max_window_bits: self.client_max_window_bits,
        }
        .to_header();
        // Without a value: "you may limit my window" (RFC 7692 §7.1.2.2).
        if self.client_max_window_bits.is_none() {
            s.push_str("; client_max_window_bits");
        }
        s
    }
}

/// The parameters both ends agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's compression window (15 when absent).
    pub server_max_window_bits: Option<u8>,
    /// The client's compression window (15 when absent).
    pub client_max_window_bits: Option<u8>,
}

impl DeflateParams {
    /// The response value a server sends for these parameters.
    pub fn to_header(&self) -> String {
        let mut s = String::from(NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if let Some(b) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={b}"));
        }
        if let Some(b) = self.client_max_window_bits {
            s.push_str(&format!("; client_max_window_bits={b}"));
        }
        s
    }
}

/// One parameter of an extension: name and optional value (quotes removed).
type Param<'a> = (&'a str, Option<&'a str>);

/// Splits a `Sec-WebSocket-Extensions` value into extensions, each a name
/// and its parameters (RFC 6455 §9.1). Quoted values are unquoted; commas
/// inside quotes are not supported (no registered parameter uses them).
pub fn parse_extensions(value: &str) -> Vec<(&str, Vec<Param<'_>>)> {
    value
        .split(',')
        .filter_map(|ext| {
            let mut parts = ext.split(';').map(str::trim);
            let name = parts.next().filter(|n| !n.is_empty())?;
            let params = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                    None => (p, None),
                })
                .collect();
            Some((name, params))
        })
        .collect()
}

fn window_bits(v: Option<&str>) -> Result<u8, ()> {
    let b: u8 = v.ok_or(())?.parse().map_err(|_| ())?;
    if (8..=15).contains(&b) {
        Ok(b)
    } else {
        Err(())
    }
}

/// The parameters of one permessage-deflate offer or response; `Err` for an
/// unknown or duplicated parameter or an invalid value (RFC 7692 §7.1).
/// `client_max_window_bits` without a value is returned as `Some(0)`.
fn parse_params(params: &[Param<'_>]) -> Result<DeflateParams, ()> {
    let mut p = DeflateParams::default();
    let mut seen = [false; 4];
    for (k, v) in params {
        let i = match *k {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return Err(()),
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(());
        }
        match i {
            0 | 1 if v.is_some() => return Err(()),
            0 => p.server_no_context_takeover = true,
            1 => p.client_no_context_takeover = true,
            2 => p.server_max_window_bits = Some(window_bits(*v)?),
            _ => {
                p.client_max_window_bits = Some(match v {
                    None => 0,
                    Some(_) => window_bits(*v)?,
                })
            }
        }
    }
    Ok(p)
}

/// As a server: picks the first acceptable permessage-deflate offer in the
/// client's `Sec-WebSocket-Extensions` values and returns the agreed
/// parameters (send [`DeflateParams::to_header`] back). `None` declines
/// compression: no offer, or none acceptable.
pub fn server_negotiate<'a>(
    offers: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<DeflateParams> {
    for value in offers {
        for (name, params) in parse_extensions(value) {
            if name != NAME {
                continue;
            }
            let Ok(offer) = parse_params(&params) else {
                continue;
            };
            // Our compressor cannot use an 8-bit window (zlib raises it to
            // 9), so an offer that asks for it is declined (§7.1.2.1 allows).
            let server_bits = match (offer.server_max_window_bits, config.server_max_window_bits) {
                (Some(8), _) => continue,
                (Some(asked), Some(ours)) => Some(asked.min(ours)),
                (Some(asked), None) => Some(asked),
                (None, Some(ours)) if ours < 15 => Some(ours),
                (None, _) => None,
            };
            // We may limit the client's window only if it said it can.
            // Peers cannot compress with an 8-bit window either; ask for 9 at least.
            let client_bits = match (
                offer.client_max_window_bits,
                config.client_max_window_bits.map(|b| b.max(9)),
            ) {
                (None, _) => None,
                (Some(0), ours) => ours.filter(|b| *b < 15),
                (Some(asked), Some(ours)) => Some(asked.min(ours)),
                (Some(asked), None) => Some(asked),
            };
            return Some(DeflateParams {
                server_no_context_takeover: offer.server_no_context_takeover
                    || config.server_no_context_takeover,
                client_no_context_takeover: offer.client_no_context_takeover
                    || config.client_no_context_takeover,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits,
            });
        }
    }
    None
}

/// Why a server's answer to our offer is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// An extension we did not offer.
    Unoffered,
    /// Invalid, unknown or duplicated parameters, or more than one
    /// permessage-deflate.
    Invalid,
}

/// As a client: checks the server's `Sec-WebSocket-Extensions` against our
/// offer (`config`, or none when `None`). `Ok(None)`: no compression.
pub fn client_accept<'a>(
    values: impl IntoIterator<Item = &'a str>,
    config: Option<&DeflateConfig>,
) -> Result<Option<DeflateParams>, ResponseError> {
    let mut agreed = None;
    for value in values {
        for (name, params) in parse_extensions(value) {
            let Some(config) = config.filter(|_| name == NAME) else {
                return Err(ResponseError::Unoffered);
            };
            if agreed.is_some() {
                return Err(ResponseError::Invalid);
            }
            let p = parse_params(&params).map_err(|_| ResponseError::Invalid)?;
            // §7.1.2.2: the server may answer client_max_window_bits only if
            // offered, with a value, at most ours; our compressor cannot do 8.
            match (p.client_max_window_bits, config.client_max_window_bits) {
                (Some(0), _) | (Some(8), _) => return Err(ResponseError::Invalid),
                (Some(b), Some(ours)) if b > ours => return Err(ResponseError::Invalid),
                _ => {}
            }
            // §7.1.2.1: at most the value we offered.
            if let (Some(b), Some(ours)) = (p.server_max_window_bits, config.server_max_window_bits)
            {
                if b > ours {
                    return Err(ResponseError::Invalid);
                }
            }
            // A server must honour a no-context-takeover we asked for.
            if config.server_no_context_takeover && !p.server_no_context_takeover {
                return Err(ResponseError::Invalid);
            }
            agreed = Some(DeflateParams {
                client_max_window_bits: p.client_max_window_bits.or(config.client_max_window_bits),
                client_no_context_takeover: p.client_no_context_takeover
                    || config.client_no_context_takeover,
                ..p
            });
        }
    }
    Ok(agreed)
}

/// Compresses outgoing messages.
///
/// The zlib state (a few hundred KiB at 15 window bits) is created by the
/// first message compressed, not with the connection: most connections of a
/// server never send a message above the compression threshold. With
/// `no_context_takeover` it is released after each message, since nothing
/// carries over to the next one.
pub struct Deflater {
    z: Option<Compress>,
    level: u32,
    window_bits: u8,
    reset_each_message: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("reset_each_message", &self.reset_each_message)
            .field("allocated", &self.z.is_some())
            .finish()
    }
}

impl Deflater {
    /// A compressor with `window_bits` (9-15; 8 is raised to 9 by zlib and
    /// is never negotiated here) that resets after each message when
    /// `no_context_takeover`. Allocates nothing until the first message.
    pub fn new(level: u32, window_bits: u8, no_context_takeover: bool) -> Self {
        Deflater {
            z: None,
            level: level.min(9),
            window_bits: window_bits.clamp(9, 15),
            reset_each_message: no_context_takeover,
        }
    }

    /// Whether the zlib state is allocated (between the first message and
    /// the end of a message without context takeover).
    pub fn is_allocated(&self) -> bool {
        self.z.is_some()
    }

    /// With `no_context_takeover`, the level and window this compressor
    /// uses: every message then compresses to the same bytes in every
    /// compressor with these two settings, so one compression can serve
    /// many connections. `None` with context takeover, where the output
    /// depends on the messages compressed before.
    pub fn stateless_settings(&self) -> Option<(u32, u8)> {
        self.reset_each_message
            .then_some((self.level, self.window_bits))
    }

    /// Compresses one whole message (RFC 7692 §7.2.1).
    pub fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        let (level, bits) = (self.level, self.window_bits);
        let z = self.z.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(level), false, bits)
        });
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = z.total_in();
            let status = z.compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(z.total_in() - before) as usize..];
            // Done when all input is in and the flush fit in the buffer.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if matches!(status, Err(_) | Ok(Status::StreamEnd)) {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - 4);
        }
        if out.is_empty() {
            // §7.2.3.6: an empty message compresses to a single 0x00.
            out.push(0);
        }
        if self.reset_each_message {
            // RFC 7692 §7.1.1.1: nothing carries over; free the state.
            self.z = None;
        }
        out
    }
}

/// Decompresses incoming messages, enforcing the message size limit while
/// inflating, never after (a decompression bomb stops at the limit).
pub struct Inflater {
    /// Created by the first compressed message; released after each message
    /// when the peer resets its context (`no_context_takeover`).
    z: Option<Decompress>,
    reset_each_message: bool,
    /// The peer ended its DEFLATE stream in the current message (a block
    /// with BFINAL set, RFC 7692 §7.2.3.4): the rest of the message is not
    /// compressed data, and the next message starts a new stream.
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("reset_each_message", &self.reset_each_message)
            .field("allocated", &self.z.is_some())
            .finish()
    }
}

impl Inflater {
    /// A decompressor. It always uses a 15-bit window: a window at least as
    /// large as the peer's is all inflating needs. Allocates nothing until
    /// the first compressed message.
    pub fn new(no_context_takeover: bool) -> Self {
        Inflater {
            z: None,
            reset_each_message: no_context_takeover,
            ended: false,
        }
    }

    /// Whether the zlib state is allocated.
    pub fn is_allocated(&self) -> bool {
        self.z.is_some()
    }

    /// Inflates one frame's payload, appending to `out`; with `last`, also
    /// the end of the message. Fails when `out` would exceed `limit`.
    pub fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        if !self.ended {
            self.feed(input, out, limit)?;
        }
        if last {
            if !self.ended {
                self.feed(&TAIL, out, limit)?;
            }
            if self.reset_each_message {
                // The peer starts afresh each message: free the state.
                self.z = None;
            } else if self.ended {
                if let Some(z) = &mut self.z {
                    z.reset(false);
                }
            }
            self.ended = false;
        }
        Ok(())
    }

    fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        let z = self
            .z
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
        loop {
            // Never let the buffer grow past limit + 1 bytes: one byte over
            // proves the message is too big.
            let room = (limit.saturating_add(1)).saturating_sub(out.len());
            if room == 0 {
                return Err(ProtocolError::MessageTooBig {
                    size: out.len() as u64,
                    limit,
                });
            }
            let want = (input.len().saturating_mul(4))
                .clamp(4096, 256 * 1024)
                .min(room);
            if out.capacity() - out.len() < want {
                out.reserve_exact(want);
            }
            let spare_before = out.capacity() - out.len();
            let before_in = z.total_in();
            let before_out = out.len();
            let status = z
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| ProtocolError::Deflate("invalid compressed data"))?;
            let consumed = (z.total_in() - before_in) as usize;
            let produced = out.len() - before_out;
            input = &input[consumed..];
            if out.len() > limit {
                return Err(ProtocolError::MessageTooBig {
                    size: out.len() as u64,
                    limit,
                });
            }
            // A final block ended the stream: what follows (padding, the
            // tail appended above) is ignored, as zlib's inflate does.
            if status == Status::StreamEnd {
                self.ended = true;
                return Ok(());
            }
            // Finished when all input is consumed and the output buffer was
            // not filled (so nothing is pending inside zlib).
            if input.is_empty() && produced < spare_before {
                return Ok(());
            }
            if consumed == 0 && produced == 0 {
                return Err(ProtocolError::Deflate("compressed data makes no progress"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(c: &mut Deflater, d: &mut Inflater, msg: &[u8]) {
        let z = c.compress(msg);
        let mut out = Vec::new();
        d.inflate(&z, true, &mut out, usize::MAX).unwrap();
        assert_eq!(out, msg);
    }

    #[test]
    fn context_takeover_shrinks_repeated_messages() {
        let msg = br#"{"type":"price","symbol":"ABC","bid":101.25,"ask":101.5}"#;
        let mut c = Deflater::new(6, 15, false);
        let mut d = Inflater::new(false);
        let mut c2 = Deflater::new(6, 15, false);
        let first = c2.compress(msg).len();
        let second = c2.compress(msg).len();
        assert!(second < first / 2, "{second} vs {first}");
        for _ in 0..5 {
            roundtrip(&mut c, &mut d, msg);
        }
    }

    #[test]
    fn no_context_takeover_is_independent_per_message() {
        let mut c = Deflater::new(6, 12, true);
        let a = c.compress(b"hello hello hello");
        let b = c.compress(b"hello hello hello");
        assert_eq!(a, b, "each message compressed from a fresh state");
        // A fresh inflater can read the second message alone.
        let mut out = Vec::new();
        Inflater::new(true)
            .inflate(&b, true, &mut out, 1000)
            .unwrap();
        assert_eq!(out, b"hello hello hello");
    }

    #[test]
    fn zlib_state_is_created_when_first_used_and_released_without_takeover() {
        let mut c = Deflater::new(6, 12, false);
        let mut d = Inflater::new(false);
        assert!(
            !c.is_allocated() && !d.is_allocated(),
            "nothing before a message"
        );
        roundtrip(&mut c, &mut d, b"hello hello hello");
        assert!(
            c.is_allocated() && d.is_allocated(),
            "kept for context takeover"
        );
        let mut c = Deflater::new(6, 12, true);
        let mut d = Inflater::new(true);
        for _ in 0..3 {
            roundtrip(&mut c, &mut d, b"hello hello hello");
            assert!(
                !c.is_allocated() && !d.is_allocated(),
                "released after each message"
            );
        }
    }

    #[test]
    fn empty_and_large_messages() {
        let mut c = Deflater::new(6, 15, false);
        let mut d = Inflater::new(false);
        roundtrip(&mut c, &mut d, b"");
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        roundtrip(&mut c, &mut d, &big);
    }

    #[test]
    fn rfc_7692_example_hello() {
        // RFC 7692 §7.2.3.1: "Hello" compressed.
        let mut out = Vec::new();
        Inflater::new(false)
            .inflate(
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                true,
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn rfc_7692_example_bfinal() {
        // RFC 7692 §7.2.3.4: "Hello" in a block with BFINAL set, then a
        // 0x00 byte; the next message starts a new DEFLATE stream.
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        for no_context_takeover in [false, true] {
            let mut d = Inflater::new(no_context_takeover);
            for _ in 0..2 {
                let mut out = Vec::new();
                d.inflate(&bfinal, true, &mut out, 100).unwrap();
                assert_eq!(out, b"Hello");
            }
            // Also split across frames, and followed by a sync-flushed message.
            let mut out = Vec::new();
            d.inflate(&bfinal[..3], false, &mut out, 100).unwrap();
            d.inflate(&bfinal[3..], true, &mut out, 100).unwrap();
            assert_eq!(out, b"Hello");
            let sync_flushed = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
            let mut out = Vec::new();
            d.inflate(&sync_flushed, true, &mut out, 100).unwrap();
            assert_eq!(out, b"Hello");
        }
    }

    #[test]
    fn bomb_stops_at_the_limit_while_inflating() {
        let zeros = vec![0u8; 10 << 20];
        let z = Deflater::new(9, 15, false).compress(&zeros);
        assert!(z.len() < 20_000, "{}", z.len());
        let mut out = Vec::new();
        let e = Inflater::new(false)
            .inflate(&z, true, &mut out, 1 << 20)
            .unwrap_err();
        assert!(matches!(e, ProtocolError::MessageTooBig { .. }));
        assert!(
            out.capacity() <= (1 << 20) + 256 * 1024,
            "never buffered past the limit: {}",
            out.capacity()
        );
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut out = Vec::new();
        assert!(Inflater::new(false)
            .inflate(&[0xff; 16], true, &mut out, 1000)
            .is_err());
    }

    #[test]
    fn server_negotiation() {
        let cfg = DeflateConfig::server_default();
        let p = server_negotiate(["permessage-deflate; client_max_window_bits"], &cfg).unwrap();
        assert_eq!(
            p.to_header(),
            "permessage-deflate; server_max_window_bits=12"
        );
        let p = server_negotiate(
            ["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
            &cfg,
        )
        .unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        let p = server_negotiate(["permessage-deflate; server_max_window_bits=10"], &cfg).unwrap();
        assert_eq!(p.server_max_window_bits, Some(10));
        // Invalid or duplicate parameters decline that offer; the next is used.
        let p = server_negotiate(
            ["permessage-deflate; foo, permessage-deflate; server_no_context_takeover"],
            &cfg,
        )
        .unwrap();
        assert!(p.server_no_context_takeover);
        for bad in [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits=8",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(server_negotiate([bad], &cfg), None, "{bad}");
        }
        // The client's window is limited only if it allowed it.
        let cfg = DeflateConfig {
            client_max_window_bits: Some(10),
            ..DeflateConfig::server_default()
        };
        assert_eq!(
            server_negotiate(["permessage-deflate"], &cfg)
                .unwrap()
                .client_max_window_bits,
            None
        );
        assert_eq!(
            server_negotiate(["permessage-deflate; client_max_window_bits"], &cfg)
                .unwrap()
                .client_max_window_bits,
            Some(10)
        );
    }

    #[test]
    fn client_validation() {
        let cfg = DeflateConfig::default();
        assert_eq!(
            client_accept(["permessage-deflate"], Some(&cfg)),
            Ok(Some(DeflateParams::default()))
        );
        assert_eq!(
            client_accept(
                ["permessage-deflate; client_max_window_bits=10"],
                Some(&cfg)
            )
            .unwrap()
            .unwrap()
            .client_max_window_bits,
            Some(10)
        );
        assert_eq!(
            client_accept(["permessage-deflate"], None),
            Err(ResponseError::Unoffered)
        );
        assert_eq!(
            client_accept(["x-other"], Some(&cfg)),
            Err(ResponseError::Unoffered)
        );
        for bad in [
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; unknown",
            "permessage-deflate; server_max_window_bits=20",
        ] {
            assert_eq!(
                client_accept([bad], Some(&cfg)),
                Err(ResponseError::Invalid),
                "{bad}"
            );
        }
        let strict = DeflateConfig {
            server_no_context_takeover: true,
            server_max_window_bits: Some(10),
            ..cfg
        };
        assert_eq!(
            client_accept(["permessage-deflate"], Some(&strict)),
            Err(ResponseError::Invalid)
        );
        assert_eq!(
            client_accept(
                ["permessage-deflate; server_no_context_takeover; server_max_window_bits=11"],
                Some(&strict)
            ),
            Err(ResponseError::Invalid)
        );
        assert!(client_accept(
            ["permessage-deflate; server_no_context_takeover; server_max_window_bits=9"],
            Some(&strict)
        )
        .is_ok());
    }
}
