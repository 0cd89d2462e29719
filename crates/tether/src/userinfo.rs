//! Credentials in URLs: the percent-encoded `user:password@` of a `ws://`
//! URL (sent as HTTP Basic) or of a proxy URL (Basic or SOCKS5).

use std::string::FromUtf8Error;

/// Percent-decodes a user name or a password taken from a URL's userinfo
/// (RFC 3986 §3.2.1, §2.1). A `%` not followed by two hex digits stays as
/// it is.
///
/// # Errors
/// When the decoded bytes are not UTF-8; the error holds them, for a caller
/// that decodes them lossily instead of refusing them.
pub(crate) fn decode_userinfo(part: &str) -> Result<String, FromUtf8Error> {
    String::from_utf8(percent_encoding::percent_decode_str(part).collect())
}

/// RFC 7617 §2: a Basic user-id or password contains no control character
/// (a line break there would be sent base64-encoded, but no server could
/// take it for what the user meant).
pub(crate) fn check_no_controls(user: &str, password: &str) -> Result<(), &'static str> {
    if user
        .bytes()
        .chain(password.bytes())
        .any(|b| b.is_ascii_control())
    {
        Err("the user name or password contains a control character (RFC 7617 §2)")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_stray_percents() {
        assert_eq!(decode_userinfo("al%40ice").unwrap(), "al@ice");
        assert_eq!(decode_userinfo("p%3Ass%3a").unwrap(), "p:ss:");
        assert_eq!(decode_userinfo("%E2%82%AC").unwrap(), "\u{20ac}");
        assert_eq!(decode_userinfo("100%").unwrap(), "100%");
        assert_eq!(decode_userinfo("%4").unwrap(), "%4");
        assert_eq!(decode_userinfo("%zz%41").unwrap(), "%zzA");
        let e = decode_userinfo("u%ffv").unwrap_err();
        assert_eq!(String::from_utf8_lossy(e.as_bytes()), "u\u{fffd}v");
    }
}
