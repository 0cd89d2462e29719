//! The neutral side of every run, written by hand on tokio with no WebSocket
//! library: the load generator that drives the servers under test, and the
//! echo server that the clients under test talk to.
//!
//! Both move bytes with one `poll_fn` loop per connection that reads and
//! writes at once (so neither side can deadlock on full socket buffers with
//! large messages) and writes as many frames per system call as are ready.

use crate::deflate::{Agreed, Inflate};
use crate::harness::{ConnFuture, Job, Tally};
use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The fixed `Sec-WebSocket-Key` of the load generator (RFC 6455's example).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` that [`KEY`] must produce.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// The fixed masking key of the pre-encoded frames.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// The GUID of RFC 6455 §1.3.
pub(crate) const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Size of each connection's read buffer.
const READ_BUF: usize = 256 * 1024;
/// Payloads up to this size are compared byte for byte on every echo;
/// larger ones on every 16th message (their lengths always).
const FULL_CHECK_MAX: usize = 64 * 1024;
/// Loop turns in one poll before yielding to the other connections.
const SPINS: usize = 32;
/// Output the echo server may queue before it stops reading.
const MAX_QUEUED: usize = 8 << 20;

/// The payload every message carries: a fixed pattern, so that the load
/// generator can check what comes back.
pub(crate) fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) + 7) as u8).collect()
}

/// Appends a frame header (FIN set) for `len` payload bytes.
fn push_header(out: &mut Vec<u8>, fin_opcode: u8, len: usize, mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(fin_opcode);
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
}

/// One masked frame carrying `payload`; `first` is the first header byte
/// (FIN, RSV1 and opcode), e.g. `0x82` for a whole binary message.
pub(crate) fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut one = Vec::with_capacity(payload.len() + 14);
    push_header(&mut one, first, payload.len(), Some(MASK));
    let start = one.len();
    one.extend_from_slice(payload);
    apply_mask(&mut one[start..], MASK, 0);
    one
}

/// XORs `buf` with `mask`, `offset` bytes into the payload.
fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = mask;
    m.rotate_left(offset % 4);
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// Reads an HTTP head (up to the blank line) into `buf`; returns its length
/// and the number of bytes read (the rest is the start of the frames).
pub(crate) async fn read_head(
    tcp: &mut TcpStream,
    buf: &mut [u8],
) -> Result<(usize, usize), String> {
    let mut n = 0;
    loop {
        if let Some(p) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok((p + 4, n));
        }
        if n == buf.len() {
            return Err("HTTP head too large".into());
        }
        let k = tcp
            .read(&mut buf[n..])
            .await
            .map_err(|e| format!("handshake read: {e}"))?;
        if k == 0 {
            return Err("peer closed during the handshake".into());
        }
        n += k;
    }
}

/// A frame header being parsed from a byte stream that may split it.
#[derive(Default)]
struct HeaderBuf {
    bytes: [u8; 14],
    len: usize,
}

/// A parsed frame header.
struct Header {
    fin: bool,
    /// RSV1: with permessage-deflate, the message is compressed.
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
}

impl HeaderBuf {
    /// Takes header bytes from the front of `data`; returns the header once
    /// complete, and how many bytes of `data` it used.
    fn feed(&mut self, data: &[u8]) -> Result<(Option<Header>, usize), String> {
        // Fast path: a whole header at the front of `data`.
        if self.len == 0 && data.len() >= 2 {
            let need = header_len(data[1]);
            if data.len() >= need {
                return Ok((Some(parse_header(&data[..need])?), need));
            }
        }
        let mut used = 0;
        loop {
            let need = if self.len < 2 {
                2
            } else {
                header_len(self.bytes[1])
            };
            if self.len == need {
                let h = parse_header(&self.bytes[..need])?;
                self.len = 0;
                return Ok((Some(h), used));
            }
            let take = (need - self.len).min(data.len() - used);
            if take == 0 {
                return Ok((None, used));
            }
            self.bytes[self.len..self.len + take].copy_from_slice(&data[used..used + take]);
            self.len += take;
            used += take;
        }
    }
}

/// The header length announced by the second header byte.
fn header_len(b1: u8) -> usize {
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    mask + match b1 & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    }
}

fn parse_header(h: &[u8]) -> Result<Header, String> {
    if h[0] & 0x30 != 0 {
        return Err(format!("reserved bits set in frame header {:#04x}", h[0]));
    }
    let (len, rest) = match h[1] & 0x7f {
        126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), &h[4..]),
        127 => (
            u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
            &h[10..],
        ),
        n => (u64::from(n), &h[2..]),
    };
    let mask = (h[1] & 0x80 != 0).then(|| [rest[0], rest[1], rest[2], rest[3]]);
    Ok(Header {
        fin: h[0] & 0x80 != 0,
        rsv1: h[0] & 0x40 != 0,
        opcode: h[0] & 0x0f,
        mask,
        len,
    })
}

/// The load generator's view of what a server sends back: it checks that
/// each echoed message has the type sent, is unmasked, and is exactly the
/// message sent (inflated first, with permessage-deflate).
struct EchoCheck {
    /// The messages sent, in turn.
    messages: Vec<Arc<[u8]>>,
    /// The data opcode expected (text or binary).
    opcode: u8,
    /// With permessage-deflate: the echoes must be compressed.
    inflate: Option<Inflate>,
    header: HeaderBuf,
    /// Payload bytes left in the current frame.
    remaining: u64,
    /// Whether the current frame is part of a data message.
    data_frame: bool,
    /// Whether the current frame ends its message.
    fin: bool,
    /// Inside a (possibly fragmented) data message.
    in_msg: bool,
    /// Bytes of the current message seen so far (uncompressed messages).
    pos: usize,
    /// Compare this message's content (not only its length).
    verify: bool,
    /// Messages completed so far.
    messages_done: u64,
}

impl EchoCheck {
    fn new(job: &Job, agreed: Option<Agreed>) -> Self {
        EchoCheck {
            messages: job.messages.clone(),
            opcode: if job.text { 0x1 } else { 0x2 },
            inflate: agreed.map(Inflate::new),
            header: HeaderBuf::default(),
            remaining: 0,
            data_frame: false,
            fin: false,
            in_msg: false,
            pos: 0,
            verify: true,
            messages_done: 0,
        }
    }

    /// The message the current echo must equal.
    fn expected(&self) -> &[u8] {
        &self.messages[(self.messages_done % self.messages.len() as u64) as usize]
    }

    /// Consumes received bytes; returns how many messages they completed.
    fn feed(&mut self, mut data: &[u8]) -> Result<u64, String> {
        let mut done = 0;
        while !data.is_empty() {
            if self.remaining == 0 {
                let (h, used) = self.header.feed(data)?;
                data = &data[used..];
                let Some(h) = h else { break };
                self.start_frame(h)?;
                if self.remaining == 0 {
                    done += self.end_frame()?;
                }
                continue;
            }
            let take = (self.remaining.min(data.len() as u64)) as usize;
            if self.data_frame {
                let idx = (self.messages_done % self.messages.len() as u64) as usize;
                let expected = &self.messages[idx];
                if let Some(inf) = &mut self.inflate {
                    inf.feed(&data[..take], expected.len())?;
                } else {
                    let end = self.pos + take;
                    if end > expected.len() {
                        return Err(format!(
                            "echoed message longer than the {} bytes sent",
                            expected.len()
                        ));
                    }
                    if self.verify && data[..take] != expected[self.pos..end] {
                        return Err("echoed payload differs from what was sent".into());
                    }
                    self.pos = end;
                }
            }
            data = &data[take..];
            self.remaining -= take as u64;
            if self.remaining == 0 {
                done += self.end_frame()?;
            }
        }
        Ok(done)
    }

    fn start_frame(&mut self, h: Header) -> Result<(), String> {
        if h.mask.is_some() {
            return Err("server sent a masked frame".into());
        }
        let first = !self.in_msg && h.opcode == self.opcode;
        if h.rsv1 && !(first && self.inflate.is_some()) {
            return Err(format!(
                "RSV1 set on a frame with opcode {:#x} {}",
                h.opcode,
                if self.inflate.is_some() {
                    "(only the first frame of a message may have it)"
                } else {
                    "without permessage-deflate"
                }
            ));
        }
        match h.opcode {
            _ if first => {
                if self.inflate.is_some() && !h.rsv1 {
                    return Err("server echoed a message uncompressed (RSV1 clear)".into());
                }
                self.in_msg = true;
                self.pos = 0;
                self.verify = self.expected().len() <= FULL_CHECK_MAX
                    || self.messages_done.is_multiple_of(16);
                self.data_frame = true;
            }
            0x0 if self.in_msg => self.data_frame = true,
            0x9 | 0xA => self.data_frame = false,
            0x1 | 0x2 => {
                return Err(format!(
                    "server echoed opcode {:#x} for a message sent with {:#x}",
                    h.opcode, self.opcode
                ))
            }
            0x8 => return Err("server sent a close frame".into()),
            op => return Err(format!("unexpected frame opcode {op:#x}")),
        }
        self.fin = h.fin;
        self.remaining = h.len;
        Ok(())
    }

    fn end_frame(&mut self) -> Result<u64, String> {
        if !(self.data_frame && self.fin) {
            return Ok(0);
        }
        let idx = (self.messages_done % self.messages.len() as u64) as usize;
        let expected = &self.messages[idx];
        if let Some(inf) = &mut self.inflate {
            let got = inf.finish(expected.len())?;
            if got.len() != expected.len() {
                return Err(format!(
                    "echoed message inflates to {} bytes, sent {}",
                    got.len(),
                    expected.len()
                ));
            }
            if self.verify && got != &expected[..] {
                return Err("echoed message inflates to other content than was sent".into());
            }
            inf.out.clear();
        } else if self.pos != expected.len() {
            return Err(format!(
                "echoed message has {} bytes, sent {}",
                self.pos,
                expected.len()
            ));
        }
        self.in_msg = false;
        self.messages_done += 1;
        Ok(1)
    }
}

/// A connection the load generator upgraded.
pub(crate) struct Upgraded {
    pub(crate) tcp: TcpStream,
    /// The server's answer to the permessage-deflate offer, if one was made.
    pub(crate) agreed: Option<Agreed>,
    /// The length of the response head in the read buffer.
    pub(crate) head_len: usize,
    /// The bytes read into the buffer (those past `head_len` are frames).
    pub(crate) got: usize,
}

/// The load generator's upgrade: a fixed-key request, offering `offer` as
/// `Sec-WebSocket-Extensions` if given, and the 101 checked (the accept
/// key, and the extension answer: a permessage-deflate agreement when
/// offered, none when not). The response is read into `rd`.
pub(crate) async fn upgrade(
    addr: SocketAddr,
    offer: Option<&str>,
    rd: &mut [u8],
) -> Result<Upgraded, String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let extensions = offer
        .map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
    );
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("handshake write: {e}"))?;
    let (head_len, got) = read_head(&mut tcp, rd).await?;
    let head = String::from_utf8_lossy(&rd[..head_len]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 101") {
        return Err(format!(
            "no 101 in response: {:?}",
            head.lines().next().unwrap_or("")
        ));
    }
    if !head.contains(&ACCEPT.to_ascii_lowercase()) {
        return Err("wrong or missing Sec-WebSocket-Accept".into());
    }
    let agreed = if offer.is_some() {
        Some(crate::deflate::agreed(&head)?)
    } else {
        if head.contains("sec-websocket-extensions:") {
            return Err("server answered with extensions that were not offered".into());
        }
        None
    };
    Ok(Upgraded {
        tcp,
        agreed,
        head_len,
        got,
    })
}

/// One connection of the load generator: a hand-made upgrade, then `k`
/// pre-encoded masked frames in flight, one more sent per echo received.
pub(crate) fn loadgen(addr: SocketAddr, job: Arc<Job>, tally: Arc<Tally>) -> ConnFuture {
    Box::pin(async move {
        let mut rd = vec![0u8; READ_BUF];
        let offer = job.deflate.then_some(crate::deflate::OFFER);
        let Upgraded {
            mut tcp,
            agreed,
            head_len,
            got,
        } = upgrade(addr, offer, &mut rd).await?;
        let ring = match agreed {
            Some(a) => job.compressed(a.client_bits)?,
            None => &job.plain,
        };
        let mut check = EchoCheck::new(&job, agreed);
        if check.feed(&rd[head_len..got])? != 0 {
            return Err("server sent a message before any was sent to it".into());
        }
        tally.ready();

        let mut credits = job.inflight as u64;
        // The next frame of the ring to send, and what is being written.
        let mut next = 0usize;
        let mut out: &[u8] = &[];
        poll_fn(|cx| {
            for _ in 0..SPINS {
                let mut progress = false;
                loop {
                    if out.is_empty() {
                        if credits == 0 {
                            break;
                        }
                        out = ring.frames(next, credits as usize);
                        next = (next + credits as usize) % ring.count();
                        credits = 0;
                    }
                    match Pin::new(&mut tcp).poll_write(cx, out) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err("server stopped reading".to_string()))
                        }
                        Poll::Ready(Ok(n)) => {
                            out = &out[n..];
                            tally.sent(n);
                            progress = true;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(format!("write: {e}"))),
                        Poll::Pending => break,
                    }
                }
                let mut rb = ReadBuf::new(&mut rd);
                match Pin::new(&mut tcp).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            return Poll::Ready(Err("server closed the connection".to_string()));
                        }
                        tally.received(n);
                        let done = match check.feed(&rd[..n]) {
                            Ok(d) => d,
                            Err(e) => return Poll::Ready(Err(e)),
                        };
                        credits += done;
                        tally.add(done);
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(format!("read: {e}"))),
                    Poll::Pending => {}
                }
                if !progress {
                    return Poll::Pending;
                }
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await
    })
}

/// What an idle connection does after its upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleUse {
    /// Nothing: no extension offered, no frame sent.
    Plain,
    /// Offers permessage-deflate as browsers do ([`crate::deflate::BROWSER_OFFER`])
    /// and sends nothing.
    DeflateIdle,
    /// Offers as [`IdleUse::DeflateIdle`], then sends one compressed message
    /// (the first of the job's) and waits for its compressed echo.
    DeflateOneMessage,
}

/// One connection of the idle-memory cells: the load generator's upgrade,
/// then, for [`IdleUse::DeflateOneMessage`], one masked RSV1 text frame
/// and its echo, checked (inflated with the server's context, compared
/// with what was sent). Returns the stream, to be kept open and silent.
pub(crate) async fn idle_conn(
    addr: SocketAddr,
    what: IdleUse,
    job: &Job,
) -> Result<TcpStream, String> {
    // Enough for the 101 and the echo of a compressed 1 KiB message.
    let mut rd = vec![0u8; 4096];
    let offer = (what != IdleUse::Plain).then_some(crate::deflate::BROWSER_OFFER);
    let mut up = upgrade(addr, offer, &mut rd).await?;
    let leftover = &rd[up.head_len..up.got];
    if what != IdleUse::DeflateOneMessage {
        if !leftover.is_empty() {
            return Err("server sent frames right after the 101".into());
        }
        return Ok(up.tcp);
    }
    let agreed = up.agreed.ok_or("no permessage-deflate agreement")?;
    // The first message of a compressor that keeps its context is
    // compressed exactly as one compressed on its own.
    let frame = job.compressed(agreed.client_bits)?.frames(0, 1);
    up.tcp
        .write_all(frame)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut check = EchoCheck::new(job, Some(agreed));
    let mut done = check.feed(leftover)?;
    while done == 0 {
        let n = up
            .tcp
            .read(&mut rd)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed the connection before echoing".into());
        }
        done += check.feed(&rd[..n])?;
    }
    Ok(up.tcp)
}

/// The echo side of the raw server: unmasks client frames and queues them
/// back unmasked, streaming large payloads as they arrive. With
/// permessage-deflate (both sides without context takeover), compressed
/// messages go back as they came, still compressed.
#[derive(Default)]
struct Echo {
    /// permessage-deflate was agreed: RSV1 may be set (and is echoed).
    deflate: bool,
    header: HeaderBuf,
    remaining: u64,
    mask: [u8; 4],
    /// Offset into the current frame's payload (for the mask phase).
    offset: usize,
    /// Whether the current frame is copied to the output.
    emit: bool,
    /// A close frame was echoed: stop after writing it.
    closed: bool,
}

impl Echo {
    /// Appends the echo of `data` to `out`.
    fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !data.is_empty() && !self.closed {
            if self.remaining == 0 {
                let (h, used) = self.header.feed(data)?;
                data = &data[used..];
                let Some(h) = h else { break };
                let Some(mask) = h.mask else {
                    return Err("client sent an unmasked frame".into());
                };
                if h.rsv1 && !self.deflate {
                    return Err("client set RSV1 without permessage-deflate".into());
                }
                let opcode = match h.opcode {
                    0x9 => 0xA, // ping: answer with a pong
                    op => op,
                };
                self.emit = opcode != 0xA || h.opcode == 0x9;
                if self.emit {
                    let len = usize::try_from(h.len).map_err(|_| "frame too large")?;
                    let first = (u8::from(h.fin) << 7) | (u8::from(h.rsv1) << 6) | opcode;
                    push_header(out, first, len, None);
                }
                self.closed = h.opcode == 0x8;
                self.mask = mask;
                self.offset = 0;
                self.remaining = h.len;
                continue;
            }
            let take = (self.remaining.min(data.len() as u64)) as usize;
            if self.emit {
                let start = out.len();
                out.extend_from_slice(&data[..take]);
                apply_mask(&mut out[start..], self.mask, self.offset);
            }
            self.offset += take;
            self.remaining -= take as u64;
            data = &data[take..];
        }
        Ok(())
    }
}

/// The neutral echo server for one accepted connection: a hand-made
/// upgrade answer, then every frame echoed back, reading and writing at once.
/// It declines permessage-deflate.
pub(crate) fn echo_server(tcp: TcpStream) -> ConnFuture {
    Box::pin(echo(tcp, false))
}

/// [`echo_server`], but accepting a permessage-deflate offer with
/// `server_no_context_takeover; client_no_context_takeover`, so that it can
/// echo compressed messages without inflating them: the ceiling of the
/// compressed cells.
pub(crate) fn echo_server_deflate(tcp: TcpStream) -> ConnFuture {
    Box::pin(echo(tcp, true))
}

async fn echo(mut tcp: TcpStream, deflate: bool) -> Result<(), String> {
    let mut rd = vec![0u8; READ_BUF];
    let (head_len, got) = read_head(&mut tcp, &mut rd).await?;
    let head = String::from_utf8_lossy(&rd[..head_len]).into_owned();
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .ok_or("no Sec-WebSocket-Key")?;
    let offered = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-extensions")
                && value.contains(crate::deflate::NAME)
        })
    });
    let deflate = deflate && offered;
    let extensions = if deflate {
        format!(
            "Sec-WebSocket-Extensions: {}; server_no_context_takeover; \
                 client_no_context_takeover\r\n",
            crate::deflate::NAME
        )
    } else {
        String::new()
    };
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n{extensions}\r\n"
    );
    tcp.write_all(response.as_bytes())
        .await
        .map_err(|e| e.to_string())?;

    let mut echo = Echo {
        deflate,
        ..Echo::default()
    };
    let mut out = Vec::with_capacity(READ_BUF + 64);
    echo.feed(&rd[head_len..got], &mut out)?;
    let mut out_off = 0;
    poll_fn(|cx| {
        for _ in 0..SPINS {
            let mut progress = false;
            while out_off < out.len() {
                match Pin::new(&mut tcp).poll_write(cx, &out[out_off..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err("client stopped reading".to_string()))
                    }
                    Poll::Ready(Ok(n)) => {
                        out_off += n;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(format!("write: {e}"))),
                    Poll::Pending => break,
                }
            }
            if out_off == out.len() {
                out.clear();
                out_off = 0;
                if echo.closed {
                    return Poll::Ready(Ok(()));
                }
            }
            if out.len() - out_off < MAX_QUEUED && !echo.closed {
                let mut rb = ReadBuf::new(&mut rd);
                match Pin::new(&mut tcp).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            return Poll::Ready(Ok(()));
                        }
                        if let Err(e) = echo.feed(&rd[..n], &mut out) {
                            return Poll::Ready(Err(e));
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(format!("read: {e}"))),
                    Poll::Pending => {}
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await?;
    let _ = Pin::new(&mut tcp).shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{Cell, Kind};

    #[test]
    fn mask_round_trip_at_any_offset() {
        let p = payload(1000);
        for off in 0..8 {
            let mut b = p[off..].to_vec();
            apply_mask(&mut b, MASK, off);
            for (i, x) in b.iter().enumerate() {
                assert_eq!(*x, p[off + i] ^ MASK[(off + i) % 4]);
            }
        }
    }

    fn job(kind: Kind, payload: usize, inflight: usize) -> Job {
        Job::new(Cell {
            kind,
            payload,
            conns: 1,
            inflight,
        })
    }

    #[test]
    fn echo_then_check_byte_by_byte() {
        for len in [0usize, 16, 125, 126, 1024, 70_000] {
            let job = job(Kind::Pattern, len, 3);
            let frames = job.plain.frames(1, 3);
            let mut echo = Echo::default();
            let mut out = Vec::new();
            // Feed in awkward pieces to exercise split headers.
            for chunk in frames.chunks(7) {
                echo.feed(chunk, &mut out).unwrap();
            }
            let mut check = EchoCheck::new(&job, None);
            let mut n = 0;
            for chunk in out.chunks(5) {
                n += check.feed(chunk).unwrap();
            }
            assert_eq!(n, 3, "len {len}");
        }
    }

    #[test]
    fn compressed_echo_then_check() {
        for len in [1024usize, 64 << 10] {
            let job = job(Kind::JsonDeflate, len, 4);
            let ring = job.compressed(12).unwrap();
            let n = ring.count() + 3;
            let mut frames = ring.frames(0, ring.count()).to_vec();
            frames.extend_from_slice(ring.frames(0, 3));
            // The raw ceiling: compressed frames go back as they are.
            let mut echo = Echo {
                deflate: true,
                ..Echo::default()
            };
            let mut out = Vec::new();
            for chunk in frames.chunks(1000) {
                echo.feed(chunk, &mut out).unwrap();
            }
            let agreed = Agreed {
                client_bits: 12,
                server_no_context_takeover: true,
            };
            let mut check = EchoCheck::new(&job, Some(agreed));
            let mut got = 0;
            for chunk in out.chunks(333) {
                got += check.feed(chunk).unwrap();
            }
            assert_eq!(got, n as u64, "len {len}");
            // Without permessage-deflate, RSV1 is an error.
            assert!(EchoCheck::new(&job, None).feed(&out).is_err());
        }
    }

    #[test]
    fn check_inflates_with_the_server_context() {
        use flate2::{Compress, Compression, FlushCompress};
        let job = job(Kind::JsonDeflate, 1024, 16);
        // A server that keeps its context: one stream across messages,
        // each ended by a sync flush whose tail is left out.
        let mut z = Compress::new_with_window_bits(Compression::new(6), false, 12);
        let mut out = Vec::new();
        for i in 0..2 * job.messages.len() {
            let m = &job.messages[i % job.messages.len()];
            let mut c = Vec::with_capacity(m.len() + 64);
            z.compress_vec(m, &mut c, FlushCompress::Sync).unwrap();
            assert!(c.ends_with(&[0, 0, 0xff, 0xff]));
            c.truncate(c.len() - 4);
            push_header(&mut out, 0xC1, c.len(), None);
            out.extend_from_slice(&c);
        }
        let agreed = Agreed {
            client_bits: 15,
            server_no_context_takeover: false,
        };
        let mut check = EchoCheck::new(&job, Some(agreed));
        assert_eq!(check.feed(&out).unwrap(), 2 * job.messages.len() as u64);
        // Inflating each message on its own fails once the context matters.
        let agreed = Agreed {
            server_no_context_takeover: true,
            ..agreed
        };
        assert!(EchoCheck::new(&job, Some(agreed)).feed(&out).is_err());
        // An uncompressed echo is refused.
        let mut plain = Vec::new();
        push_header(&mut plain, 0x81, 1024, None);
        plain.extend_from_slice(&job.messages[0]);
        assert!(EchoCheck::new(&job, Some(agreed)).feed(&plain).is_err());
    }

    #[test]
    fn check_rejects_wrong_length_and_text() {
        let job = job(Kind::Pattern, 16, 1);
        let p = job.messages[0].clone();
        let mut out = Vec::new();
        push_header(&mut out, 0x82, 15, None);
        out.extend_from_slice(&p[..15]);
        assert!(EchoCheck::new(&job, None).feed(&out).is_err());
        let mut out = Vec::new();
        push_header(&mut out, 0x81, 16, None);
        out.extend_from_slice(&p);
        assert!(EchoCheck::new(&job, None).feed(&out).is_err());
    }
}
