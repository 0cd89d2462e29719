//! The secrets a request carried, in every form a server could echo back,
//! and the scrubbing of them from a kept response (a refusal's body).
//!
//! A server that answers 401 with the request it received ("you sent: ...")
//! would otherwise make our credentials appear in the error's `Display`, in
//! the reconnect events and in logs. The values collected:
//!
//! - the value of every sensitive header sent
//!   ([`SensitiveHeaders`]: the default rule and the names added to it),
//!   whole; the credentials after an auth scheme (`Bearer <token>`); for
//!   `Basic`, the base64 token, the decoded `user:password` and the password
//!   alone; each cookie's value;
//! - the URL's user-info password (or its user name when it has no
//!   password), as written and percent-decoded;
//! - the values of query parameters whose names look like credentials, as
//!   written, percent-decoded, and decoded as a form (`+` as a space).
//!
//! Fragments shorter than [`MIN_SECRET`] bytes are not scrubbed: they would
//! blank out ordinary words.

use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use std::fmt;
use tether_proto::handshake::Response;
use tether_proto::redact::{is_sensitive_param, SensitiveHeaders, REDACTED};

/// The shortest value scrubbed, in bytes.
pub(crate) const MIN_SECRET: usize = 4;

/// Secret values, never shown (`Debug` shows how many).
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<Vec<u8>>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

impl Secrets {
    fn add(&mut self, secret: &[u8]) {
        if secret.len() >= MIN_SECRET && !self.0.iter().any(|s| s == secret) {
            self.0.push(secret.to_vec());
        }
    }

    /// Adds `text` and its percent-decoded form.
    fn add_with_decoded(&mut self, text: &str) {
        self.add(text.as_bytes());
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(text).collect();
        self.add(&decoded);
    }

    /// Basic credentials (RFC 7617): the base64 token, `user:password` and
    /// the password.
    pub(crate) fn add_basic(&mut self, user: &str, password: &str) {
        let pair = format!("{user}:{password}");
        self.add(
            base64::engine::general_purpose::STANDARD
                .encode(&pair)
                .as_bytes(),
        );
        self.add(pair.as_bytes());
        self.add(password.as_bytes());
    }

    /// The value of a sensitive header, whole and in its parts.
    fn add_header_value(&mut self, v: &[u8]) {
        self.add(v);
        // "Bearer <token>", "Basic <base64>" (an auth-scheme is a token:
        // no '=' nor ';', unlike the first cookie of "a=1; b=2").
        let scheme_end = v.iter().position(|b| *b == b' ');
        if let Some(i) = scheme_end.filter(|&i| !v[..i].iter().any(|b| b"=;".contains(b))) {
            let (scheme, credentials) = (&v[..i], v[i + 1..].trim_ascii());
            self.add(credentials);
            if scheme.eq_ignore_ascii_case(b"basic") {
                if let Ok(pair) = base64::engine::general_purpose::STANDARD.decode(credentials) {
                    self.add(&pair);
                    if let Some(c) = pair.iter().position(|b| *b == b':') {
                        self.add(&pair[c + 1..]);
                    }
                }
            }
        }
        // Cookies: "a=1; b=2".
        for part in v.split(|b| *b == b';') {
            if let Some(i) = part.iter().position(|b| *b == b'=') {
                self.add(&part[i + 1..]);
            }
        }
    }

    /// The values of the `sensitive` headers in `headers`.
    pub(crate) fn add_headers(&mut self, headers: &HeaderMap, sensitive: &SensitiveHeaders) {
        for (name, value) in headers {
            if sensitive.contains(name.as_str()) {
                self.add_header_value(value.as_bytes());
            }
        }
    }

    /// The user-info password (or a user name alone) and the credential-like
    /// query values of `url`.
    pub(crate) fn add_url(&mut self, url: &url::Url) {
        match url.password() {
            Some(p) => self.add_with_decoded(p),
            None => self.add_with_decoded(url.username()),
        }
        for pair in url.query().unwrap_or("").split('&') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if is_sensitive_param(name) {
                self.add_with_decoded(value);
                // A server decoding the query as a form reads '+' as a space.
                self.add_with_decoded(&value.replace('+', " "));
            }
        }
    }

    /// `text` with every secret replaced by [`REDACTED`] (overlapping or
    /// adjacent secrets by one); `None` when it holds none.
    pub(crate) fn scrub(&self, text: &[u8]) -> Option<Vec<u8>> {
        let mut hidden = vec![false; text.len()];
        for secret in &self.0 {
            for (i, window) in text.windows(secret.len()).enumerate() {
                if window == secret.as_slice() {
                    hidden[i..i + secret.len()].fill(true);
                }
            }
        }
        if !hidden.contains(&true) {
            return None;
        }
        let mut out = Vec::with_capacity(text.len());
        for (i, &b) in text.iter().enumerate() {
            match (hidden[i], i > 0 && hidden[i - 1]) {
                (false, _) => out.push(b),
                (true, false) => out.extend_from_slice(REDACTED.as_bytes()),
                (true, true) => {}
            }
        }
        Some(out)
    }

    /// Whether the (lower-case) header name `name` holds a secret.
    fn in_name(&self, name: &str) -> bool {
        self.0.iter().any(|secret| {
            let secret = secret.to_ascii_lowercase();
            name.as_bytes()
                .windows(secret.len())
                .any(|w| w == secret.as_slice())
        })
    }

    /// Scrubs a kept response: its body, its reason phrase and its header
    /// values. `Location` is left as it is, since a redirect is followed
    /// with it (its `Debug` redacts credential-like query values anyway).
    pub(crate) fn scrub_response(&self, r: &mut Response) {
        self.scrub_response_keeping(r, true);
    }

    /// As [`Secrets::scrub_response`], `Location` included: for a proxy's
    /// answer, whose redirects are never followed.
    pub(crate) fn scrub_proxy_response(&self, r: &mut Response) {
        self.scrub_response_keeping(r, false);
    }

    fn scrub_response_keeping(&self, r: &mut Response, keep_location: bool) {
        if self.0.is_empty() {
            return;
        }
        if let Some(body) = self.scrub(&r.body) {
            r.body = body.into();
        }
        if let Some(reason) = self.scrub(r.reason.as_bytes()) {
            r.reason = String::from_utf8_lossy(&reason).into_owned();
        }
        // A header *name* that holds a secret (a proxy that echoes what it
        // got into its header names): names are tokens and cannot hold the
        // placeholder, so the field goes. Names are lower-cased by the
        // parser, so compare without case.
        let leaked: Vec<http::HeaderName> = r
            .headers
            .keys()
            .filter(|n| self.in_name(n.as_str()))
            .cloned()
            .collect();
        for name in leaked {
            r.headers.remove(&name);
        }
        for (name, value) in r.headers.iter_mut() {
            if keep_location && name == http::header::LOCATION {
                continue;
            }
            if let Some(v) = self.scrub(value.as_bytes()) {
                // Still a valid value: the secret's bytes became visible ASCII.
                if let Ok(v) = HeaderValue::from_bytes(&v) {
                    *value = v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_name_holding_a_secret_is_dropped() {
        // Found by the proxy_connect_reply fuzz target: a proxy echoed the
        // password into a header name.
        let mut s = Secrets::default();
        s.add_basic("alice", "Hunter2pw");
        let mut r = Response::with_body(407, "no");
        r.headers
            .insert("proxy-ahunter2pwcatd", HeaderValue::from_static("x"));
        r.headers.insert(
            "proxy-authenticate",
            HeaderValue::from_static("Basic realm=\"p\""),
        );
        s.scrub_response(&mut r);
        assert!(
            !format!("{r:?}").to_ascii_lowercase().contains("hunter2pw"),
            "{r:?}"
        );
        assert!(
            r.headers.contains_key("proxy-authenticate"),
            "other fields stay"
        );
    }

    #[test]
    fn a_proxy_answer_is_scrubbed_location_included() {
        let mut s = Secrets::default();
        s.add_basic("fuzz", "hunter2");
        let mut r = Response::new(302).header("location", "http://x/hunter2");
        s.scrub_proxy_response(&mut r);
        assert_eq!(r.header_str("location"), Some("http://x/<redacted>"));
        assert!(!format!("{r:?}").contains("hunter2"));
        // A server's redirect is followed: its Location is kept as it is.
        let mut r = Response::new(302).header("location", "http://x/hunter2");
        s.scrub_response(&mut r);
        assert_eq!(r.header_str("location"), Some("http://x/hunter2"));
    }

    fn scrubbed(s: &Secrets, text: &str) -> String {
        s.scrub(text.as_bytes())
            .map_or_else(|| text.to_string(), |v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn every_form_of_a_sent_secret_is_scrubbed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            "Basic YWxpY2U6cC1zZWNyZXQ=".parse().unwrap(),
        );
        headers.insert("x-api-key", "k-secret".parse().unwrap());
        headers.insert("x-pin", "pin-secret".parse().unwrap());
        headers.insert("cookie", "sid=c-secret; lang=en".parse().unwrap());
        headers.insert("x-trace", "visible".parse().unwrap());
        let mut sensitive = SensitiveHeaders::new();
        sensitive.add("X-Pin");
        let mut s = Secrets::default();
        s.add_headers(&headers, &sensitive);
        s.add_url(&url::Url::parse("ws://bob:u%2Dsecret@h/feed?token=t%2Bsecret&room=1").unwrap());
        let text = "Authorization: Basic YWxpY2U6cC1zZWNyZXQ= (alice:p-secret) \
                    X-Api-Key: k-secret; X-Pin: pin-secret; Cookie: lang=en; sid=c-secret \
                    X-Trace: visible; GET /feed?token=t%2Bsecret&room=1 decoded t+secret \
                    user u%2Dsecret u-secret";
        let out = scrubbed(&s, text);
        for secret in [
            "YWxpY2U6cC1zZWNyZXQ",
            "p-secret",
            "k-secret",
            "pin-secret",
            "c-secret",
            "t%2Bsecret",
            "t+secret",
            "u-secret",
            "u%2Dsecret",
        ] {
            assert!(!out.contains(secret), "{secret}: {out}");
        }
        for visible in ["X-Trace: visible", "room=1", "lang=en", "GET /feed?token="] {
            assert!(out.contains(visible), "{visible}: {out}");
        }
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn overlapping_secrets_become_one_placeholder_and_short_ones_stay() {
        let mut s = Secrets::default();
        s.add(b"abcdef");
        s.add(b"defghi");
        s.add(b"ab");
        assert_eq!(scrubbed(&s, "x abcdefghi y ab"), "x <redacted> y ab");
        assert_eq!(s.scrub(b"nothing here"), None);
    }

    #[test]
    fn a_response_is_scrubbed_but_its_location_kept() {
        let mut s = Secrets::default();
        s.add(b"t-secret");
        let mut r = Response::with_body(401, "you sent token=t-secret")
            .header("x-echo", "t-secret")
            .header("location", "/next?token=t-secret");
        r.reason = "Bad t-secret".into();
        s.scrub_response(&mut r);
        assert_eq!(&r.body[..], b"you sent token=<redacted>");
        assert_eq!(r.reason, "Bad <redacted>");
        assert_eq!(r.header_str("x-echo"), Some("<redacted>"));
        assert_eq!(r.header_str("location"), Some("/next?token=t-secret"));
    }
}
