//! Redaction of credentials in headers and URLs.
//!
//! Every `Debug` and `Display` implementation in tether that can show a header
//! or a URL goes through these functions, so credentials never reach logs or
//! error messages, at any level.

use std::fmt;

/// The placeholder shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Whether a header carries credentials: its value is never shown.
pub fn is_sensitive_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization")
        || name.eq_ignore_ascii_case("cookie")
        || name.eq_ignore_ascii_case("set-cookie")
}

/// Whether a URL query parameter's value should be hidden.
pub fn is_sensitive_param(name: &str) -> bool {
    const WORDS: [&str; 9] = [
        "token",
        "auth",
        "key",
        "secret",
        "password",
        "passwd",
        "pwd",
        "signature",
        "session",
    ];
    let lower = name.to_ascii_lowercase();
    WORDS.iter().any(|w| lower.contains(w))
}

/// Returns `url` with the password (or the whole user-info) and the values of
/// sensitive query parameters replaced by [`REDACTED`].
///
/// ```
/// use tether_proto::redact::redact_url;
/// assert_eq!(
///     redact_url("wss://alice:s3cret@example.com/feed?token=abc&room=1"),
///     "wss://alice:<redacted>@example.com/feed?token=<redacted>&room=1",
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    out.push_str(scheme);
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(c) => {
                    out.push_str(&userinfo[..c]);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                // A user name alone may itself be a token.
                None => out.push_str(REDACTED),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let (before_frag, frag) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    match before_frag.find('?') {
        Some(q) => {
            out.push_str(&before_frag[..=q]);
            let query = &before_frag[q + 1..];
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((k, _)) if is_sensitive_param(k) => {
                        out.push_str(k);
                        out.push('=');
                        out.push_str(REDACTED);
                    }
                    _ => out.push_str(pair),
                }
            }
        }
        None => out.push_str(before_frag),
    }
    out.push_str(frag);
    out
}

/// Formats a header map with sensitive values redacted.
pub struct RedactedHeaders<'a>(pub &'a http::HeaderMap);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in self.0 {
            if is_sensitive_header(k.as_str()) {
                m.entry(&k.as_str(), &REDACTED);
            } else {
                m.entry(&k.as_str(), &String::from_utf8_lossy(v.as_bytes()));
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_userinfo_and_tokens_are_hidden() {
        assert_eq!(redact_url("ws://u:p@h:1/x"), "ws://u:<redacted>@h:1/x");
        assert_eq!(redact_url("ws://tok@h/x"), "ws://<redacted>@h/x");
        assert_eq!(
            redact_url("ws://h/x?access_token=a&b=2#f"),
            "ws://h/x?access_token=<redacted>&b=2#f"
        );
        assert_eq!(redact_url("ws://h:80/p?q=1"), "ws://h:80/p?q=1");
        assert_eq!(redact_url("ws://h/a@b"), "ws://h/a@b");
    }

    #[test]
    fn sensitive_headers_are_hidden_in_debug() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer hunter2".parse().unwrap());
        h.insert("cookie", "sid=hunter3".parse().unwrap());
        h.insert("x-ok", "visible".parse().unwrap());
        let s = format!("{:?}", RedactedHeaders(&h));
        assert!(!s.contains("hunter"), "{s}");
        assert!(s.contains("visible"));
    }
}
