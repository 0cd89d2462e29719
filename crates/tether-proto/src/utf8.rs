//! UTF-8: incremental validation for text messages split across frames, and
//! the validated string type that text messages and close reasons carry.
//!
//! RFC 6455 §8.1 lets an endpoint fail a text message as soon as its bytes can
//! no longer be valid UTF-8; Autobahn's section 6 checks that we do, fragment
//! by fragment, instead of waiting for the end of the message.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// A streaming UTF-8 validator. Feed it chunks with [`Utf8Validator::feed`];
/// call [`Utf8Validator::finish`] at the end of the message.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// Bytes of an incomplete code point carried over from the last chunk.
    carry: [u8; 4],
    carry_len: u8,
}

/// The bytes can never become valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next chunk of the message.
    ///
    /// Fails as soon as the bytes seen so far cannot be the prefix of valid
    /// UTF-8. An incomplete code point at the end of `chunk` is remembered and
    /// completed by the next call.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carry_len > 0 {
            let have = self.carry_len as usize;
            let width = char_width(self.carry[0]);
            let need = width - have;
            if chunk.len() < need {
                self.carry[have..have + chunk.len()].copy_from_slice(chunk);
                self.carry_len += chunk.len() as u8;
                return match std::str::from_utf8(&self.carry[..self.carry_len as usize]) {
                    Err(e) if e.error_len().is_none() => Ok(()),
                    _ => Err(InvalidUtf8),
                };
            }
            self.carry[have..width].copy_from_slice(&chunk[..need]);
            std::str::from_utf8(&self.carry[..width]).map_err(|_| InvalidUtf8)?;
            self.carry_len = 0;
            chunk = &chunk[need..];
        }
        match simdutf8::compat::from_utf8(chunk) {
            Ok(_) => Ok(()),
            // `error_len() == None` means the input ended inside a sequence
            // that is, so far, a valid prefix: keep it for the next chunk.
            Err(e) if e.error_len().is_none() => {
                let tail = &chunk[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the message: fails if it stopped in the middle of a code point.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.carry_len > 0;
        self.carry_len = 0;
        if incomplete {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

/// The length of the sequence that a valid leading byte starts. Only called on
/// bytes that std accepted as the start of an incomplete sequence.
fn char_width(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// An immutable UTF-8 string backed by [`Bytes`]: cheap to clone and to slice,
/// validated once.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty string.
    pub const fn new() -> Self {
        Utf8Bytes(Bytes::new())
    }

    /// A string from a `&'static str`, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// Validates `bytes` as UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Utf8Bytes(bytes))
    }

    /// Wraps bytes that the caller has already validated, without checking
    /// them again (in release builds).
    ///
    /// # Safety
    /// `bytes` must be valid UTF-8: [`Utf8Bytes::as_str`] hands them out as
    /// a `str` without checking.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Utf8Bytes(bytes)
    }

    /// The string.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either takes a `str`/`String`, validates
        // with `std::str::from_utf8` (`try_from_bytes`), or is the unsafe
        // `from_validated`, whose caller guarantees valid UTF-8. The bytes
        // are immutable afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Converts into the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for Utf8Bytes {
    fn from(s: &String) -> Self {
        s.as_str().into()
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn validate_split(bytes: &[u8], splits: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut last = 0;
        for &s in splits {
            let s = s.clamp(last, bytes.len());
            v.feed(&bytes[last..s])?;
            last = s;
        }
        v.feed(&bytes[last..])?;
        v.finish()
    }

    #[test]
    fn fails_fast_on_impossible_prefix() {
        // 0xCE 0xBA is "κ"; 0xE1 0xBD is the start of "ὀ"; 0xED 0xA0 starts a
        // surrogate, which can never become valid.
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xCE, 0xBA, 0xE1]).is_ok());
        assert!(v.feed(&[0xBD]).is_ok());
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xED]), Ok(()));
        assert_eq!(v.feed(&[0xA0]), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xF4, 0x90]), Err(InvalidUtf8), "above U+10FFFF");
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xFF]), Err(InvalidUtf8));
    }

    #[test]
    fn incomplete_at_end_of_message_fails() {
        let mut v = Utf8Validator::new();
        v.feed("€".as_bytes().split_at(2).0).unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }

    #[test]
    fn code_point_split_over_three_chunks() {
        let b = "𝄞".as_bytes();
        assert_eq!(validate_split(b, &[1, 2, 3]), Ok(()));
    }

    proptest! {
        #[test]
        fn agrees_with_std_for_random_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            splits in proptest::collection::vec(0usize..64, 0..6),
        ) {
            let mut splits = splits;
            splits.sort();
            let expected = std::str::from_utf8(&bytes).is_ok();
            prop_assert_eq!(validate_split(&bytes, &splits).is_ok(), expected);
        }

        #[test]
        fn accepts_any_valid_string_split_anywhere(
            s in "\\PC{0,40}",
            splits in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let mut splits = splits;
            splits.sort();
            prop_assert_eq!(validate_split(s.as_bytes(), &splits), Ok(()));
        }

        #[test]
        fn fails_no_later_than_the_first_bad_byte(
            s in "\\PC{0,20}",
            bad in prop_oneof![Just(0xFFu8), Just(0xC0), Just(0x80)],
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            // A valid prefix followed by a byte that can never appear in
            // that position: the chunk containing it must fail.
            let mut bytes = s.as_bytes().to_vec();
            let cut = bytes.len();
            bytes.push(bad);
            let mut v = Utf8Validator::new();
            prop_assert!(v.feed(&bytes[..cut]).is_ok());
            prop_assert!(v.feed(&bytes[cut..]).is_err());
            let _ = tail;
        }
    }
}
