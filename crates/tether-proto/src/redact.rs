//! Redaction of credentials in headers and URLs.
//!
//! Every `Debug` and `Display` implementation in tether that can show a header
//! or a URL goes through these functions, so credentials never reach logs or
//! error messages, at any level.
//!
//! # Names that look like credentials
//!
//! One rule, [`looks_like_credential`], judges header names and URL query
//! parameter names alike, case-insensitively (a query parameter's name is
//! percent-decoded first). A name looks like a credential when it
//!
//! - contains one of `auth`, `token`, `secret`, `passw`, `pwd`, `key`,
//!   `signature`, `session`, `credential`, `cookie`, `jwt`, `ticket`:
//!   `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`,
//!   `X-Api-Key`, `Api-Key`, `X-Auth-Token`, `X-CSRF-Token`,
//!   `X-Amz-Security-Token`, `Ocp-Apim-Subscription-Key`, `X-Session-Id`,
//!   `X-Hub-Signature-256`; `?token=`, `?access_token=`, `?api_key=`,
//!   `?apiKey=`, `?key=`, `?password=`, `?X-Amz-Signature=`,
//!   `?X-Amz-Credential=`...; or
//! - is exactly `sig`, `sid`, `pass` or `pw`.
//!
//! Three headers are exempt, as they never carry a secret:
//! `Sec-WebSocket-Key` (a nonce, RFC 6455 §4.1), and the challenges
//! `WWW-Authenticate` and `Proxy-Authenticate` (RFC 9110 §11.6.1, §11.7.1).
//!
//! The rule errs on the side of hiding: a harmless header that matches
//! (`X-Session-Count`) only loses its value in `Debug` output. A header that
//! carries a secret under another name is added with
//! [`SensitiveHeaders::add`] (in `tether`: `ClientBuilder::sensitive_header`).
//!
//! What is hidden:
//!
//! - the values of sensitive headers, in every `Debug` of a header map
//!   ([`RedactedHeaders`], [`SensitiveHeaders::show`]);
//! - in URLs ([`redact_url`]): the password of the user-info (or the whole
//!   user-info when it has no password: a user name alone may be a token),
//!   and the values of query parameters whose names look like credentials;
//!   also in a `Location` header shown in `Debug` (a redirect may carry the
//!   request's own token back).

use std::fmt;

/// The placeholder shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// The stems of [`looks_like_credential`]: a name containing one of them.
const STEMS: [&str; 12] = [
    "auth",
    "token",
    "secret",
    "passw",
    "pwd",
    "key",
    "signature",
    "session",
    "credential",
    "cookie",
    "jwt",
    "ticket",
];

/// Short names of [`looks_like_credential`], matched whole only: as stems
/// they would hide `design`, `inside` or `compass`.
const WHOLE: [&str; 4] = ["sig", "sid", "pass", "pw"];

/// Headers whose names match the rule but which never carry a secret.
const NOT_SECRET: [&str; 3] = [
    "sec-websocket-key",
    "www-authenticate",
    "proxy-authenticate",
];

/// Whether a header or query parameter name looks like it names a
/// credential (see [the rule](self#names-that-look-like-credentials)).
///
/// ```
/// use tether_proto::redact::looks_like_credential;
/// assert!(looks_like_credential("X-Api-Key"));
/// assert!(looks_like_credential("access_token"));
/// assert!(looks_like_credential("sig"));
/// assert!(!looks_like_credential("design"));
/// assert!(!looks_like_credential("X-Request-Id"));
/// ```
pub fn looks_like_credential(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    STEMS.iter().any(|s| lower.contains(s)) || WHOLE.contains(&lower.as_str())
}

/// Whether a header carries credentials: its value is never shown. See
/// [the rule](self#names-that-look-like-credentials).
///
/// ```
/// use tether_proto::redact::is_sensitive_header;
/// for name in ["Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "X-Auth-Token"] {
///     assert!(is_sensitive_header(name), "{name}");
/// }
/// for name in ["Origin", "User-Agent", "Sec-WebSocket-Key", "WWW-Authenticate"] {
///     assert!(!is_sensitive_header(name), "{name}");
/// }
/// ```
pub fn is_sensitive_header(name: &str) -> bool {
    looks_like_credential(name) && !NOT_SECRET.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// Whether a URL query parameter's value should be hidden: its name,
/// percent-decoded, looks like a credential (see
/// [the rule](self#names-that-look-like-credentials)).
pub fn is_sensitive_param(name: &str) -> bool {
    looks_like_credential(&percent_encoding::percent_decode_str(name).decode_utf8_lossy())
}

/// The headers whose values are never shown: those of
/// [`is_sensitive_header`], and the names added with
/// [`SensitiveHeaders::add`].
///
/// ```
/// use tether_proto::redact::SensitiveHeaders;
/// let mut sensitive = SensitiveHeaders::new();
/// sensitive.add("X-Tenant-Pin");
/// assert!(sensitive.contains("x-tenant-pin"));
/// assert!(sensitive.contains("Authorization"));
/// let mut h = http::HeaderMap::new();
/// h.insert("x-tenant-pin", "4321".parse().unwrap());
/// h.insert("x-trace", "visible".parse().unwrap());
/// let shown = format!("{:?}", sensitive.show(&h));
/// assert_eq!(shown, r#"{"x-tenant-pin": "<redacted>", "x-trace": "visible"}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SensitiveHeaders {
    /// Lower case.
    extra: Vec<String>,
}

impl SensitiveHeaders {
    /// The default rule alone.
    pub const fn new() -> Self {
        SensitiveHeaders { extra: Vec::new() }
    }

    /// Treats the header `name` (any case) as sensitive too.
    pub fn add(&mut self, name: &str) {
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() && !self.extra.contains(&name) {
            self.extra.push(name);
        }
    }

    /// The names added with [`SensitiveHeaders::add`], in lower case.
    pub fn added(&self) -> impl Iterator<Item = &str> {
        self.extra.iter().map(String::as_str)
    }

    /// Whether the value of the header `name` is never shown.
    pub fn contains(&self, name: &str) -> bool {
        is_sensitive_header(name) || self.extra.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Formats `headers` for `Debug` with the values of these headers
    /// replaced by [`REDACTED`], and credentials in a `Location` or
    /// `Content-Location` URL redacted.
    pub fn show<'a>(&'a self, headers: &'a http::HeaderMap) -> impl fmt::Debug + 'a {
        Shown {
            headers,
            sensitive: self,
        }
    }
}

struct Shown<'a> {
    headers: &'a http::HeaderMap,
    sensitive: &'a SensitiveHeaders,
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in self.headers {
            let name = k.as_str();
            if self.sensitive.contains(name) {
                m.entry(&name, &REDACTED);
                continue;
            }
            let value = String::from_utf8_lossy(v.as_bytes());
            // A redirect may carry the request's own token back.
            if matches!(name, "location" | "content-location") {
                m.entry(&name, &redact_url(&value));
            } else {
                m.entry(&name, &value);
            }
        }
        m.finish()
    }
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

/// Formats a header map with the values of the headers of
/// [`is_sensitive_header`] redacted (see also [`SensitiveHeaders::show`]).
pub struct RedactedHeaders<'a>(pub &'a http::HeaderMap);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&SensitiveHeaders::new().show(self.0), f)
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

    #[test]
    fn the_header_rule() {
        for name in [
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "Set-Cookie",
            "X-Api-Key",
            "Api-Key",
            "X-API-KEY",
            "apikey",
            "X-Auth-Token",
            "X-CSRF-Token",
            "X-Amz-Security-Token",
            "Ocp-Apim-Subscription-Key",
            "X-Client-Secret",
            "X-Password",
            "X-Session-Id",
            "X-Hub-Signature-256",
            "X-Credentials",
            "X-JWT",
            "sid",
        ] {
            assert!(is_sensitive_header(name), "{name}");
        }
        for name in [
            "Origin",
            "User-Agent",
            "Host",
            "X-Request-Id",
            "Content-Type",
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Protocol",
            "WWW-Authenticate",
            "Proxy-Authenticate",
            "X-Design",
        ] {
            assert!(!is_sensitive_header(name), "{name}");
        }
    }

    #[test]
    fn the_query_rule() {
        for name in [
            "token",
            "access_token",
            "api_key",
            "apiKey",
            "key",
            "signature",
            "sig",
            "password",
            "passwd",
            "pw",
            "secret",
            "auth",
            "session",
            "X-Amz-Credential",
            "ticket",
            // Percent-encoded names are decoded first.
            "%74oken",
        ] {
            assert!(is_sensitive_param(name), "{name}");
            let shown = redact_url(&format!("ws://h/?{name}=s3cr3t&room=1"));
            assert_eq!(shown, format!("ws://h/?{name}=<redacted>&room=1"), "{name}");
        }
        for name in ["room", "q", "page", "signal", "design", "lang"] {
            assert!(!is_sensitive_param(name), "{name}");
        }
    }

    #[test]
    fn added_names_and_locations_are_hidden() {
        let mut sensitive = SensitiveHeaders::new();
        sensitive.add(" X-Tenant-Pin ");
        sensitive.add("x-tenant-pin");
        assert_eq!(sensitive.added().collect::<Vec<_>>(), ["x-tenant-pin"]);
        let mut h = http::HeaderMap::new();
        h.insert("x-tenant-pin", "hunter7".parse().unwrap());
        h.insert("location", "/next?token=hunter8&room=1".parse().unwrap());
        let shown = format!("{:?}", sensitive.show(&h));
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("/next?token=<redacted>&room=1"), "{shown}");
        // Without the added name, only the rule applies.
        let shown = format!("{:?}", RedactedHeaders(&h));
        assert!(shown.contains("hunter7"), "{shown}");
    }
}
