//! The neutral side of every run, written by hand on tokio with no WebSocket
//! library: the load generator that drives the servers under test, and the
//! echo server that the clients under test talk to.
//!
//! Both move bytes with one `poll_fn` loop per connection that reads and
//! writes at once (so neither side can deadlock on full socket buffers with
//! large messages) and writes as many frames per system call as are ready.

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
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
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

/// `count` copies of one masked binary frame carrying `payload`, back to back.
pub(crate) fn masked_frames(payload: &[u8], count: usize) -> Vec<u8> {
    let mut one = Vec::with_capacity(payload.len() + 14);
    push_header(&mut one, 0x82, payload.len(), Some(MASK));
    let start = one.len();
    one.extend_from_slice(payload);
    apply_mask(&mut one[start..], MASK, 0);
    one.repeat(count)
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
async fn read_head(tcp: &mut TcpStream, buf: &mut [u8]) -> Result<(usize, usize), String> {
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
    if h[0] & 0x70 != 0 {
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
        opcode: h[0] & 0x0f,
        mask,
        len,
    })
}

/// The load generator's view of what a server sends back: it checks that
/// each echoed message is binary, unmasked, and exactly the payload sent.
struct EchoCheck {
    expected: Arc<[u8]>,
    header: HeaderBuf,
    /// Payload bytes left in the current frame.
    remaining: u64,
    /// Whether the current frame is part of a data message.
    data_frame: bool,
    /// Whether the current frame ends its message.
    fin: bool,
    /// Inside a (possibly fragmented) data message.
    in_msg: bool,
    /// Bytes of the current message seen so far.
    pos: usize,
    /// Compare this message's content (not only its length).
    verify: bool,
    /// Messages completed so far.
    messages: u64,
}

impl EchoCheck {
    fn new(expected: Arc<[u8]>) -> Self {
        EchoCheck {
            expected,
            header: HeaderBuf::default(),
            remaining: 0,
            data_frame: false,
            fin: false,
            in_msg: false,
            pos: 0,
            verify: true,
            messages: 0,
        }
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
                let end = self.pos + take;
                if end > self.expected.len() {
                    return Err(format!(
                        "echoed message longer than the {} bytes sent",
                        self.expected.len()
                    ));
                }
                if self.verify && data[..take] != self.expected[self.pos..end] {
                    return Err("echoed payload differs from what was sent".into());
                }
                self.pos = end;
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
        match h.opcode {
            0x2 if !self.in_msg => {
                self.in_msg = true;
                self.pos = 0;
                self.verify =
                    self.expected.len() <= FULL_CHECK_MAX || self.messages.is_multiple_of(16);
                self.data_frame = true;
            }
            0x0 if self.in_msg => self.data_frame = true,
            0x9 | 0xA => self.data_frame = false,
            0x1 => return Err("server echoed a text frame for a binary message".into()),
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
        if self.pos != self.expected.len() {
            return Err(format!(
                "echoed message has {} bytes, sent {}",
                self.pos,
                self.expected.len()
            ));
        }
        self.in_msg = false;
        self.messages += 1;
        Ok(1)
    }
}

/// One connection of the load generator: a hand-made upgrade, then `k`
/// pre-encoded masked frames in flight, one more sent per echo received.
pub(crate) fn loadgen(addr: SocketAddr, job: Arc<Job>, tally: Arc<Tally>) -> ConnFuture {
    Box::pin(async move {
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("handshake write: {e}"))?;
        let mut rd = vec![0u8; READ_BUF];
        let (head_len, got) = read_head(&mut tcp, &mut rd).await?;
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
        let mut check = EchoCheck::new(job.expected.clone());
        if check.feed(&rd[head_len..got])? != 0 {
            return Err("server sent a message before any was sent to it".into());
        }
        tally.ready();

        let frame_len = job.frames.len() / job.inflight;
        let mut credits = job.inflight as u64;
        let (mut out_off, mut out_len) = (0usize, 0usize);
        poll_fn(|cx| {
            for _ in 0..SPINS {
                let mut progress = false;
                loop {
                    if out_off == out_len {
                        if credits == 0 {
                            break;
                        }
                        (out_off, out_len) = (0, credits as usize * frame_len);
                        credits = 0;
                    }
                    match Pin::new(&mut tcp).poll_write(cx, &job.frames[out_off..out_len]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err("server stopped reading".to_string()))
                        }
                        Poll::Ready(Ok(n)) => {
                            out_off += n;
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

/// The echo side of the raw server: unmasks client frames and queues them
/// back unmasked, streaming large payloads as they arrive.
#[derive(Default)]
struct Echo {
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
                let opcode = match h.opcode {
                    0x9 => 0xA, // ping: answer with a pong
                    op => op,
                };
                self.emit = opcode != 0xA || h.opcode == 0x9;
                if self.emit {
                    let len = usize::try_from(h.len).map_err(|_| "frame too large")?;
                    push_header(out, (u8::from(h.fin) << 7) | opcode, len, None);
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
pub(crate) fn echo_server(mut tcp: TcpStream) -> ConnFuture {
    Box::pin(async move {
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
        let mut sha = Sha1::new();
        sha.update(key.as_bytes());
        sha.update(GUID.as_bytes());
        let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        tcp.write_all(response.as_bytes())
            .await
            .map_err(|e| e.to_string())?;

        let mut echo = Echo::default();
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn echo_then_check_byte_by_byte() {
        for len in [0usize, 16, 125, 126, 1024, 70_000] {
            let p: Arc<[u8]> = payload(len).into();
            let frames = masked_frames(&p, 3);
            let mut echo = Echo::default();
            let mut out = Vec::new();
            // Feed in awkward pieces to exercise split headers.
            for chunk in frames.chunks(7) {
                echo.feed(chunk, &mut out).unwrap();
            }
            let mut check = EchoCheck::new(p.clone());
            let mut n = 0;
            for chunk in out.chunks(5) {
                n += check.feed(chunk).unwrap();
            }
            assert_eq!(n, 3, "len {len}");
        }
    }

    #[test]
    fn check_rejects_wrong_length_and_text() {
        let p: Arc<[u8]> = payload(16).into();
        let mut out = Vec::new();
        push_header(&mut out, 0x82, 15, None);
        out.extend_from_slice(&p[..15]);
        assert!(EchoCheck::new(p.clone()).feed(&out).is_err());
        let mut out = Vec::new();
        push_header(&mut out, 0x81, 16, None);
        out.extend_from_slice(&p);
        assert!(EchoCheck::new(p).feed(&out).is_err());
    }
}
