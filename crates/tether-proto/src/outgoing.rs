//! The queue of bytes waiting to be written to the transport.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;

/// Payloads at least this large are queued by reference instead of copied
/// (servers only: client payloads must be masked, which needs a copy).
const ZERO_COPY_THRESHOLD: usize = 4096;

/// A drained write buffer keeps an allocation up to this size for the next
/// frames; a larger one (left by a large message) is released.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Bytes waiting to be written, as a list of chunks: frame headers and small
/// payloads are packed into one buffer, large payloads are queued without a
/// copy. It implements [`Buf`], whose `chunks_vectored` feeds `writev`.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Chunks that come before `tail`.
    chunks: VecDeque<Bytes>,
    /// The buffer currently being appended to; always last in order.
    tail: BytesMut,
    len: usize,
    /// `tail` grew past [`KEEP_CAPACITY`]: release it once drained (or,
    /// with `retain`, at the next [`Outgoing::release_spare`]).
    grown: bool,
    /// Keep a grown `tail` across drains: set when someone calls
    /// `release_spare` from time to time (the keepalive does).
    retain: bool,
}

impl Outgoing {
    /// The number of bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push_slice(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
        self.len += data.len();
        self.note_growth();
    }

    fn note_growth(&mut self) {
        self.grown |= self.tail.capacity() > KEEP_CAPACITY;
    }

    /// Appends `data` masked with `key` (RFC 6455 §5.3), in one pass over
    /// it: each block is masked in a small buffer that stays in the L1
    /// cache, then appended. (Copying all of `data` first and masking it in
    /// place would go over a large payload twice, the second time from far
    /// slower memory.)
    pub(crate) fn push_masked(&mut self, data: &[u8], key: [u8; 4]) {
        // A multiple of 4: every block starts at the key's first byte.
        const BLOCK: usize = 2048;
        self.tail.reserve(data.len());
        if data.len() <= BLOCK {
            // Small (most frames): masked in place, still in the cache,
            // without initialising the block buffer for nothing.
            let start = self.tail.len();
            self.tail.extend_from_slice(data);
            crate::mask::apply_mask(&mut self.tail[start..], key, 0);
        } else {
            let mut block = [0u8; BLOCK];
            for chunk in data.chunks(BLOCK) {
                let b = &mut block[..chunk.len()];
                b.copy_from_slice(chunk);
                crate::mask::apply_mask(b, key, 0);
                self.tail.extend_from_slice(b);
            }
        }
        self.len += data.len();
        self.note_growth();
    }

    pub(crate) fn push_bytes(&mut self, data: &Bytes) {
        if data.len() < ZERO_COPY_THRESHOLD {
            self.push_slice(data);
            return;
        }
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.chunks.push_back(data.clone());
        self.len += data.len();
    }

    /// Keeps a buffer grown by a large message for the next ones, until
    /// [`Outgoing::release_spare`].
    pub(crate) fn set_retain(&mut self, on: bool) {
        self.retain = on;
    }

    /// Gives back a grown buffer when nothing is waiting.
    pub(crate) fn release_spare(&mut self) {
        if self.grown && self.is_empty() {
            self.grown = false;
            self.tail = BytesMut::new();
        }
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.tail.reserve(n);
    }
}

impl Buf for Outgoing {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(c) => c,
            None => &self.tail,
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of Outgoing");
        self.len -= cnt;
        while cnt > 0 {
            match self.chunks.front_mut() {
                Some(c) if c.len() <= cnt => {
                    cnt -= c.len();
                    self.chunks.pop_front();
                }
                Some(c) => {
                    c.advance(cnt);
                    return;
                }
                None => {
                    self.tail.advance(cnt);
                    break;
                }
            }
        }
        if self.tail.is_empty() && self.chunks.is_empty() {
            if self.grown && !self.retain {
                // A large message grew the buffer: give the peak back, so
                // an idle connection stays small.
                self.grown = false;
                self.tail = BytesMut::new();
            } else {
                // Let the next frame reuse the allocation from its start.
                // (A grown one too, with `retain`: a sender of large
                // messages would otherwise get fresh pages for each one,
                // which the allocator may have handed back to the kernel.)
                self.tail.clear();
            }
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for c in &self.chunks {
            if n == dst.len() {
                return n;
            }
            dst[n] = IoSlice::new(c);
            n += 1;
        }
        if n < dst.len() && !self.tail.is_empty() {
            dst[n] = IoSlice::new(&self.tail);
            n += 1;
        }
        n
    }
}

/// Takes every byte waiting, in order (for the unit tests of the modules
/// that queue frames).
#[cfg(test)]
pub(crate) fn drain(out: &mut Outgoing) -> Vec<u8> {
    let mut v = Vec::with_capacity(out.remaining());
    while out.has_remaining() {
        v.extend_from_slice(out.chunk());
        let n = out.chunk().len();
        out.advance(n);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_pushes_equal_the_reference_at_every_block_boundary() {
        let key = [0xa1, 0x02, 0xf3, 0x44];
        for len in [0, 1, 3, 4, 5, 2047, 2048, 2049, 4096, 5000, 70_001] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let mut o = Outgoing::default();
            o.push_slice(b"hd");
            o.push_masked(&data, key);
            let mut expected = data.clone();
            crate::mask::apply_mask_naive(&mut expected, key, 0);
            let mut got = Vec::new();
            while o.has_remaining() {
                let c = o.chunk().to_vec();
                o.advance(c.len());
                got.extend(c);
            }
            assert_eq!(&got[..2], b"hd");
            assert_eq!(got[2..], expected[..], "length {len}");
        }
    }

    #[test]
    fn order_is_kept_across_copied_and_shared_chunks() {
        let mut o = Outgoing::default();
        o.push_slice(b"ab");
        let big = Bytes::from(vec![b'x'; ZERO_COPY_THRESHOLD]);
        o.push_bytes(&big);
        o.push_slice(b"cd");
        let mut all = Vec::new();
        while o.has_remaining() {
            let c = o.chunk().to_vec();
            o.advance(c.len().min(3));
            all.extend_from_slice(&c[..c.len().min(3)]);
        }
        let mut expected = b"ab".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"cd");
        assert_eq!(all, expected);
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn a_retained_buffer_is_reused_until_released() {
        let mut o = Outgoing::default();
        o.set_retain(true);
        o.push_slice(&vec![7u8; 4 * KEEP_CAPACITY]);
        let n = o.remaining();
        o.advance(n);
        o.reserve(1);
        assert!(
            o.tail.capacity() >= 4 * KEEP_CAPACITY,
            "kept for the next large message: {}",
            o.tail.capacity()
        );
        // Not released while bytes wait.
        o.push_slice(b"x");
        o.release_spare();
        assert!(o.tail.capacity() >= 4 * KEEP_CAPACITY);
        o.advance(1);
        o.release_spare();
        o.reserve(1);
        assert!(o.tail.capacity() <= KEEP_CAPACITY, "{}", o.tail.capacity());
    }

    #[test]
    fn a_large_message_does_not_keep_its_buffer() {
        let mut o = Outgoing::default();
        o.push_slice(&vec![7u8; 4 * KEEP_CAPACITY]);
        let n = o.remaining();
        o.advance(n);
        // A kept allocation would be reclaimed whole by `reserve`.
        o.reserve(1);
        assert!(o.tail.capacity() <= KEEP_CAPACITY, "{}", o.tail.capacity());
        o.push_slice(&[7u8; 100]);
        let n = o.remaining();
        o.advance(n);
        o.reserve(1);
        assert!(o.tail.capacity() >= 100, "a small buffer is kept for reuse");
    }

    #[test]
    fn vectored_lists_every_chunk_in_order() {
        let mut o = Outgoing::default();
        o.push_slice(b"h1");
        o.push_bytes(&Bytes::from(vec![1u8; ZERO_COPY_THRESHOLD]));
        o.push_slice(b"h2");
        let mut slices = [IoSlice::new(&[]); 8];
        let n = o.chunks_vectored(&mut slices);
        assert_eq!(n, 3);
        assert_eq!(&*slices[0], b"h1");
        assert_eq!(&*slices[2], b"h2");
    }
}
