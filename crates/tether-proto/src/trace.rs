//! Frame diagnostics: one `tracing` event per frame, at TRACE level.
//!
//! - target `tether::frame`: the header of each frame received or queued
//!   (direction, opcode, length, FIN, RSV bits, masked), never its payload;
//! - target `tether::payload`: an excerpt of each payload (the first
//!   [`EXCERPT`] bytes, after unmasking; compressed bytes stay compressed).
//!
//! Payloads may hold secrets (tokens in a subscribe message), so they have a
//! target of their own that a filter such as `tether::frame=trace` leaves
//! out. When the level is off, each call costs the level check inside the
//! macro and nothing else: the fields are evaluated only when the event is
//! enabled, and formatting [`Excerpt`] allocates nothing.

use crate::frame::FrameHeader;
use std::fmt;

/// The most payload bytes an excerpt shows.
pub(crate) const EXCERPT: usize = 64;

/// Logs a frame header; `dir` is `"recv"` or `"send"`.
#[inline]
pub(crate) fn frame(dir: &'static str, h: &FrameHeader) {
    tracing::trace!(
        target: "tether::frame",
        dir,
        opcode = ?h.opcode,
        len = h.len,
        fin = h.fin,
        rsv = %Rsv(h.rsv),
        masked = h.mask.is_some(),
        "frame"
    );
}

/// Logs the start of a frame's payload; `dir` is `"recv"` or `"send"`.
#[inline]
pub(crate) fn payload(dir: &'static str, data: &[u8]) {
    tracing::trace!(target: "tether::payload", dir, len = data.len(), payload = %Excerpt(data), "payload");
}

/// The three RSV bits as `"000"` (RSV1 first).
struct Rsv([bool; 3]);

impl fmt::Display for Rsv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            f.write_str(if b { "1" } else { "0" })?;
        }
        Ok(())
    }
}

/// At most [`EXCERPT`] bytes of a payload: as an escaped string when they
/// are UTF-8 (a code point cut at the end is dropped), in hex otherwise,
/// followed by `...` when bytes were left out.
pub(crate) struct Excerpt<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.0[..self.0.len().min(EXCERPT)];
        let text = match std::str::from_utf8(head) {
            Ok(s) => Some(s),
            // Cut inside a code point only at the end: show what is whole.
            Err(e) if e.error_len().is_none() && head.len() < self.0.len() => {
                std::str::from_utf8(&head[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        };
        match text {
            Some(s) => write!(f, "{s:?}")?,
            None => {
                f.write_str("0x")?;
                for b in head {
                    write!(f, "{b:02x}")?;
                }
            }
        }
        if head.len() < self.0.len() {
            f.write_str("...")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(Excerpt(b"hi\n").to_string(), r#""hi\n""#);
        assert_eq!(Excerpt(&[0xff, 0x00]).to_string(), "0xff00");
        let long = "é".repeat(40); // 80 bytes: cut inside the 33rd code point
        assert_eq!(
            Excerpt(long.as_bytes()).to_string(),
            format!("{:?}...", "é".repeat(32))
        );
        assert_eq!(
            Excerpt(&[7u8; 100]).to_string(),
            format!("{:?}...", "\u{7}".repeat(64))
        );
        assert_eq!(Rsv([true, false, true]).to_string(), "101");
    }
}
