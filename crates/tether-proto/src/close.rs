//! Close codes and close frames (RFC 6455 §5.5.1, §7.4).

use crate::utf8::Utf8Bytes;
use std::fmt;

/// A WebSocket close status code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint cannot accept this type of data.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. Reported locally, never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a close frame. Reported locally, never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data was inconsistent with its type (invalid UTF-8 text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension that the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition (also: keepalive timeout).
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway received an invalid response from upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// Whether this code may appear in a close frame on the wire:
    /// 1000-1003, 1007-1014 and 3000-4999 (RFC 6455 §7.4.1, IANA registry).
    /// 1004, 1005, 1006 and 1015 are reserved and never sent.
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// A short English name for a registered code, if it has one.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1005 => "no status received",
            1006 => "abnormal closure",
            1007 => "invalid payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            _ => return None,
        })
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl From<u16> for CloseCode {
    fn from(v: u16) -> Self {
        CloseCode(v)
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> u16 {
        c.0
    }
}

/// The maximum length of a close reason in bytes: a control frame carries at
/// most 125 bytes, two of which hold the code (RFC 6455 §5.5).
pub const MAX_REASON_LEN: usize = 123;

/// The payload of a close frame: a code and a UTF-8 reason.
#[derive(Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most [`MAX_REASON_LEN`] bytes of UTF-8.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A close frame with `code` and `reason`.
    pub fn new(code: impl Into<CloseCode>, reason: impl Into<Utf8Bytes>) -> Self {
        CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Debug for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseFrame")
            .field("code", &self.code.0)
            .field("reason", &self.reason.as_str())
            .finish()
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {:?}", self.code, self.reason.as_str())
        }
    }
}

/// Truncates `reason` to at most [`MAX_REASON_LEN`] bytes on a character boundary.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_LEN {
        return reason;
    }
    let mut end = MAX_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes_follow_the_registry() {
        for c in 0..=5000u16 {
            let expected = (1000..=1003).contains(&c)
                || (1007..=1014).contains(&c)
                || (3000..=4999).contains(&c);
            assert_eq!(CloseCode(c).is_sendable(), expected, "{c}");
        }
        assert!(!CloseCode::NO_STATUS.is_sendable());
        assert!(!CloseCode::ABNORMAL.is_sendable());
        assert!(!CloseCode(1015).is_sendable());
    }

    #[test]
    fn reason_truncated_on_char_boundary() {
        let long = "é".repeat(100);
        let t = truncate_reason(&long);
        assert!(t.len() <= MAX_REASON_LEN);
        assert_eq!(t.len(), 122);
    }
}
