//! The load generator's side of permessage-deflate (RFC 7692), written by
//! hand on flate2: the JSON messages of the compressed cells, compressing
//! them once (the generator asks for `client_no_context_takeover`, so each
//! message compresses the same way every time), reading the server's answer
//! to the offer, and inflating the echoes to check them.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension token.
pub(crate) const NAME: &str = "permessage-deflate";

/// What the load generator offers.
pub(crate) const OFFER: &str =
    "permessage-deflate; client_no_context_takeover; client_max_window_bits";

/// What browsers offer (and the idle-memory cells): permessage-deflate,
/// letting the server limit the client's window, with context takeover
/// both ways unless the server asks otherwise.
pub(crate) const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The bytes a sync flush ends with, left out of each compressed message.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How many different messages a connection cycles through: at least one
/// per message in flight, and enough that no message repeats within 128 KiB
/// (so that no server window, at most 32 KiB, holds an earlier copy of the
/// message it compresses, which would make compression unrealistically cheap).
pub(crate) fn variants(size: usize, inflight: usize) -> usize {
    inflight.max((128 << 10) / size.max(1)).max(2)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

const NAMES: &[&str] = &[
    "Wireless Mouse",
    "Mechanical Keyboard",
    "USB-C Hub",
    "27\\\" Monitor",
    "Noise-Cancelling Headphones",
    "Laptop Stand",
    "Webcam 1080p",
    "Portable SSD 1TB",
    "Ergonomic Chair",
    "Desk Lamp",
    "HDMI Cable 2m",
    "Bluetooth Speaker",
    "Phone Charger 65W",
    "Graphics Tablet",
    "Microphone Arm",
    "Smart Plug",
];
const CATEGORIES: &[&str] = &[
    "electronics",
    "accessories",
    "office",
    "audio",
    "storage",
    "furniture",
    "lighting",
    "cables",
];
const WAREHOUSES: &[&str] = &["AMS-1", "FRA-2", "LHR-1", "WAW-3", "MAD-1"];
const TAGS: &[&str] = &["sale", "new", "bestseller", "eco", "refurbished", "bundle"];
const WORDS: &[&str] = &[
    "restocked",
    "after",
    "the",
    "spring",
    "promotion",
    "price",
    "matched",
    "to",
    "partner",
    "catalogue",
    "ships",
    "within",
    "two",
    "business",
    "days",
];

/// One order line as compact JSON.
fn record(rng: &mut Rng, id: u64, ts: &mut u64) -> String {
    *ts += 1 + rng.next() % 90;
    let t = *ts;
    let (day, secs) = (t / 86_400, t % 86_400);
    let tags: Vec<String> = (0..1 + rng.next() % 3)
        .map(|_| format!("\"{}\"", rng.pick(TAGS)))
        .collect();
    format!(
        "{{\"id\":{id},\"sku\":\"SKU-{:05}\",\"name\":\"{}\",\"category\":\"{}\",\
         \"price\":{}.{:02},\"currency\":\"EUR\",\"quantity\":{},\"in_stock\":{},\
         \"warehouse\":\"{}\",\"updated_at\":\"2024-{:02}-{:02}T{:02}:{:02}:{:02}Z\",\"tags\":[{}]}}",
        rng.next() % 100_000,
        rng.pick(NAMES),
        rng.pick(CATEGORIES),
        1 + rng.next() % 400,
        rng.next() % 100,
        rng.next() % 250,
        !rng.next().is_multiple_of(8),
        rng.pick(WAREHOUSES),
        1 + (day / 28) % 12,
        1 + day % 28,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        tags.join(",")
    )
}

/// Variant `v` of a JSON message of exactly `size` bytes (at least 64): an
/// array of order lines, the last one cut to fit by a free-text note.
pub(crate) fn json(size: usize, v: usize) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (v as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03));
    let mut ts = 1_700_000_000 + v as u64 * 3_600;
    let mut id = 100_000 + v as u64 * 1_000;
    let mut out = String::from("[");
    loop {
        let r = record(&mut rng, id, &mut ts);
        // Room for this record, a comma, and the closing bracket.
        if out.len() + 1 + r.len() + 1 > size {
            break;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&r);
        id += 1;
    }
    // Fill the rest with a note record, or spaces when too little is left.
    let sep = usize::from(out.len() > 1);
    let head = format!("{{\"id\":{id},\"note\":\"");
    let fixed = sep + head.len() + "\"}".len() + 1;
    if out.len() + fixed + 4 <= size {
        if sep == 1 {
            out.push(',');
        }
        out.push_str(&head);
        let room = size - out.len() - "\"}]".len();
        let mut note = String::new();
        while note.len() < room {
            if !note.is_empty() {
                note.push(' ');
            }
            note.push_str(rng.pick(WORDS));
        }
        note.truncate(room);
        if note.ends_with(' ') {
            note.pop();
            note.push('.');
        }
        out.push_str(&note);
        out.push_str("\"}");
    }
    while out.len() + 1 < size {
        out.push(' ');
    }
    out.push(']');
    debug_assert_eq!(out.len(), size);
    out.into_bytes()
}

/// One message compressed on its own (RFC 7692 §7.2.1) at level 6 with a
/// `bits` window, without the trailing `00 00 ff ff`.
pub(crate) fn compress(data: &[u8], bits: u8) -> Vec<u8> {
    let mut z = Compress::new_with_window_bits(Compression::new(6), false, bits);
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity());
        }
        let before = z.total_in();
        z.compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("deflate");
        input = &input[(z.total_in() - before) as usize..];
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - 4);
    }
    if out.is_empty() {
        out.push(0);
    }
    out
}

/// What the server agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The window the load generator may compress with.
    pub(crate) client_bits: u8,
    /// The server resets its compressor after each message.
    pub(crate) server_no_context_takeover: bool,
}

/// Reads the server's `Sec-WebSocket-Extensions` answer (the values found in
/// the lowercased response head) to [`OFFER`].
pub(crate) fn agreed(head: &str) -> Result<Agreed, String> {
    let values: Vec<&str> = head
        .lines()
        .filter_map(|l| l.strip_prefix("sec-websocket-extensions:"))
        .collect();
    let mut found = None;
    for ext in values.iter().flat_map(|v| v.split(',')) {
        let mut parts = ext.split(';').map(str::trim);
        if parts.next() != Some("permessage-deflate") || found.is_some() {
            return Err(format!("unexpected extension answer {ext:?}"));
        }
        let mut a = Agreed {
            client_bits: 15,
            server_no_context_takeover: false,
        };
        for p in parts.filter(|p| !p.is_empty()) {
            let (k, v) = match p.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                None => (p, None),
            };
            match (k, v) {
                ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
                ("client_no_context_takeover", None) | ("server_max_window_bits", Some(_)) => {}
                ("client_max_window_bits", Some(v)) => {
                    a.client_bits = v
                        .parse()
                        .ok()
                        .filter(|b| (9..=15).contains(b))
                        .ok_or_else(|| format!("unusable client_max_window_bits={v}"))?;
                }
                _ => return Err(format!("unexpected parameter {p:?} in {ext:?}")),
            }
        }
        found = Some(a);
    }
    found.ok_or_else(|| "the server did not accept permessage-deflate".into())
}

/// Inflates the server's messages, keeping its context between them unless
/// it resets it after each.
pub(crate) struct Inflate {
    z: Decompress,
    reset_each_message: bool,
    /// The message being inflated.
    pub(crate) out: Vec<u8>,
}

impl Inflate {
    pub(crate) fn new(agreed: Agreed) -> Self {
        Inflate {
            z: Decompress::new_with_window_bits(false, 15),
            reset_each_message: agreed.server_no_context_takeover,
            out: Vec::new(),
        }
    }

    /// Inflates a piece of the current message; fails once the message
    /// grows beyond `limit` bytes.
    pub(crate) fn feed(&mut self, mut input: &[u8], limit: usize) -> Result<(), String> {
        loop {
            if self.out.len() > limit {
                return Err(format!(
                    "echoed message inflates to more than the {limit} bytes sent"
                ));
            }
            if self.out.len() == self.out.capacity() {
                self.out
                    .reserve((limit + 64).saturating_sub(self.out.len()).max(256));
            }
            let (i0, o0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress_vec(input, &mut self.out, FlushDecompress::Sync)
                .map_err(|e| format!("inflating an echo: {e}"))?;
            let used = (self.z.total_in() - i0) as usize;
            input = &input[used..];
            if input.is_empty() && self.out.len() < self.out.capacity() {
                return Ok(());
            }
            if status == Status::StreamEnd {
                return Err("the server ended its deflate stream".into());
            }
            if used == 0 && self.z.total_out() == o0 && self.out.len() < self.out.capacity() {
                return Err("inflating an echo made no progress".into());
            }
        }
    }

    /// Ends the current message: inflates the sync-flush tail and returns
    /// the message; the caller clears `out` afterwards.
    pub(crate) fn finish(&mut self, limit: usize) -> Result<&[u8], String> {
        self.feed(&TAIL, limit)?;
        if self.reset_each_message {
            self.z.reset(false);
        }
        Ok(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_exact_size_and_parses_as_ascii() {
        for size in [64usize, 200, 1024, 4096, 64 << 10] {
            for v in 0..3 {
                let j = json(size, v);
                assert_eq!(j.len(), size, "size {size} variant {v}");
                assert!(j.is_ascii());
                assert_eq!((j[0], j[size - 1]), (b'[', b']'));
                // Brackets and braces balance outside strings.
                let (mut depth, mut in_str, mut esc) = (0i32, false, false);
                for &b in &j {
                    match (in_str, esc, b) {
                        (true, true, _) => esc = false,
                        (true, false, b'\\') => esc = true,
                        (true, false, b'"') => in_str = false,
                        (false, _, b'"') => in_str = true,
                        (false, _, b'[' | b'{') => depth += 1,
                        (false, _, b']' | b'}') => depth -= 1,
                        _ => {}
                    }
                    assert!(depth >= 0);
                }
                assert_eq!(depth, 0);
            }
            assert_ne!(json(size, 0), json(size, 1));
        }
    }

    #[test]
    fn compressed_messages_inflate_back_in_one_stream() {
        let a = Agreed {
            client_bits: 12,
            server_no_context_takeover: false,
        };
        let mut inf = Inflate::new(a);
        for v in 0..4 {
            let m = json(64 << 10, v);
            let z = compress(&m, 12);
            assert!(z.len() < m.len() / 2, "{} of {}", z.len(), m.len());
            for piece in z.chunks(1000) {
                inf.feed(piece, m.len()).unwrap();
            }
            assert_eq!(inf.finish(m.len()).unwrap(), &m[..]);
            inf.out.clear();
        }
    }

    #[test]
    fn answers_are_read() {
        let h = "http/1.1 101 switching protocols\r\nsec-websocket-extensions: permessage-deflate; \
                 client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12\r\n";
        assert_eq!(
            agreed(h),
            Ok(Agreed {
                client_bits: 12,
                server_no_context_takeover: false
            })
        );
        let h = "sec-websocket-extensions: permessage-deflate; server_no_context_takeover\r\n";
        assert!(agreed(h).unwrap().server_no_context_takeover);
        assert!(agreed("upgrade: websocket\r\n").is_err());
        assert!(agreed("sec-websocket-extensions: x-foo\r\n").is_err());
    }
}
