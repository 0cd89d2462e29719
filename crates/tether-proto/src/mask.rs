//! Payload masking (RFC 6455 §5.3).
//!
//! Masking XORs each payload byte with one byte of a 4-byte key, cycling
//! through the key. [`apply_mask`] processes 32 bytes per step with plain
//! integer operations that the compiler turns into SIMD where the target has
//! it; [`apply_mask_naive`] is the byte-by-byte reference it is tested against.

/// XORs `buf` in place with `key`, as if `buf` started at byte `offset` of the
/// masked payload. Masking is its own inverse: apply it twice to get the input.
///
/// `offset` lets a caller mask a payload in several pieces: pass the number of
/// payload bytes already processed.
///
/// ```
/// use tether_proto::mask::apply_mask;
/// let mut data = *b"Hello";
/// apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that key[0] applies to buf[0].
    let key = rotate(key, offset);
    let word = u32::from_ne_bytes(key) as u64;
    let word = word | (word << 32);
    let wide = u64::to_ne_bytes(word);

    let mut chunks = buf.chunks_exact_mut(32);
    for chunk in &mut chunks {
        // Four independent u64 lanes; LLVM vectorises this loop.
        for lane in chunk.chunks_exact_mut(8) {
            let v = u64::from_ne_bytes(lane.try_into().expect("8-byte lane")) ^ word;
            lane.copy_from_slice(&v.to_ne_bytes());
        }
    }
    let rest = chunks.into_remainder();
    let mut lanes = rest.chunks_exact_mut(8);
    for lane in &mut lanes {
        let v = u64::from_ne_bytes(lane.try_into().expect("8-byte lane")) ^ word;
        lane.copy_from_slice(&v.to_ne_bytes());
    }
    // Every full chunk and lane is a multiple of 4 bytes, so the key phase is
    // unchanged for the tail.
    for (i, b) in lanes.into_remainder().iter_mut().enumerate() {
        *b ^= wide[i];
    }
}

/// The byte-at-a-time reference implementation of [`apply_mask`].
pub fn apply_mask_naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(i + offset) % 4];
    }
}

#[inline]
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset % 4;
    [key[s], key[(s + 1) % 4], key[(s + 2) % 4], key[(s + 3) % 4]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_example_masked_hello() {
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn every_length_and_offset_matches_reference() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let base: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..8 {
            for len in 0..(base.len() - start) {
                for offset in 0..4 {
                    let mut a = base[start..start + len].to_vec();
                    let mut b = a.clone();
                    apply_mask(&mut a, key, offset);
                    apply_mask_naive(&mut b, key, offset);
                    assert_eq!(a, b, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn matches_naive_at_any_alignment(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            key in any::<[u8; 4]>(),
            offset in 0usize..64,
            start in 0usize..16,
        ) {
            // Slice at `start` so the buffer begins at every alignment.
            let start = start.min(data.len());
            let mut a = data.clone();
            let mut b = data.clone();
            apply_mask(&mut a[start..], key, offset);
            apply_mask_naive(&mut b[start..], key, offset);
            prop_assert_eq!(a, b);
        }

        #[test]
        fn masking_in_pieces_equals_masking_at_once(
            data in proptest::collection::vec(any::<u8>(), 0..1024),
            key in any::<[u8; 4]>(),
            split in 0usize..1024,
        ) {
            let split = split.min(data.len());
            let mut whole = data.clone();
            apply_mask(&mut whole, key, 0);
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            prop_assert_eq!(whole, pieces);
        }

        #[test]
        fn masking_twice_is_identity(data in proptest::collection::vec(any::<u8>(), 0..512), key in any::<[u8; 4]>()) {
            let mut a = data.clone();
            apply_mask(&mut a, key, 0);
            apply_mask(&mut a, key, 0);
            prop_assert_eq!(a, data);
        }
    }
}
