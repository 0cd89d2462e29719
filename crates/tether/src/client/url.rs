//! Client URLs: parsing a `ws://` or `wss://` URL into what a connection
//! needs, and resolving redirects (RFC 6455 §3, RFC 9110 §10.2.2).

use crate::error::{Error, ErrorKind, Result};
use crate::secrets::Secrets;
use crate::userinfo::{check_no_controls, decode_userinfo};
use base64::Engine as _;

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `wss://`: TLS before the upgrade.
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) host_header: String,
    pub(crate) resource: String,
    pub(crate) basic_auth: Option<String>,
    /// The URL's secrets (user-info, credential-like query values), to
    /// scrub from a refusal that echoes them.
    pub(crate) secrets: Secrets,
}

/// Parses a URL to open a connection to: `wss://` needs the TLS machinery.
pub(crate) fn parse_url(raw: &str) -> Result<Target> {
    let target = parse_ws_url(raw)?;
    if target.tls && !cfg!(feature = "rustls") {
        return Err(Error::msg(
            ErrorKind::InvalidUrl,
            "invalid URL: wss:// needs TLS: build tether with its `tls` feature",
        )
        .with_url(raw));
    }
    Ok(target)
}

/// Parses a `ws://` or `wss://` URL, whether or not this build can make the
/// TLS connection itself (`connect_on` runs over the caller's stream, which
/// may be TLS of theirs).
pub(crate) fn parse_ws_url(raw: &str) -> Result<Target> {
    let invalid =
        |why: &str| Error::msg(ErrorKind::InvalidUrl, format!("invalid URL: {why}")).with_url(raw);
    let hinted = |why: &str| match scheme_hint(raw) {
        Some(h) => invalid(&format!("{why}; did you mean {h}?")),
        None => invalid(why),
    };
    // "host:port" parses as a URL of scheme "host": say what is missing.
    if !raw.contains("://") {
        return Err(hinted("no ws:// or wss:// scheme"));
    }
    let url = url::Url::parse(raw).map_err(|e| hinted(&e.to_string()))?;
    let (tls, default_port) = match url.scheme() {
        "ws" => (false, 80),
        "wss" => (true, 443),
        other => {
            return Err(hinted(&format!(
                "unsupported scheme {other:?}; use ws:// or wss://"
            )))
        }
    };
    if url.fragment().is_some() {
        return Err(invalid("a WebSocket URL has no fragment"));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(invalid("no host")),
    };
    let port = url.port().unwrap_or(default_port);
    let host_part = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        _ => host.clone(),
    };
    let host_header = if port == default_port {
        host_part
    } else {
        format!("{host_part}:{port}")
    };
    let mut resource = url.path().to_string();
    if let Some(q) = url.query() {
        resource.push('?');
        resource.push_str(q);
    }
    let basic_auth = if !url.username().is_empty() || url.password().is_some() {
        // Invalid UTF-8 is sent as U+FFFD rather than refused.
        let lossy =
            |e: std::string::FromUtf8Error| String::from_utf8_lossy(e.as_bytes()).into_owned();
        let user = decode_userinfo(url.username()).unwrap_or_else(lossy);
        let pass = decode_userinfo(url.password().unwrap_or("")).unwrap_or_else(lossy);
        check_no_controls(&user, &pass).map_err(|why| {
            Error::msg(ErrorKind::Config, format!("invalid URL credentials: {why}")).with_url(raw)
        })?;
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ))
    } else {
        None
    };
    let mut secrets = Secrets::default();
    secrets.add_url(&url);
    Ok(Target {
        tls,
        host,
        port,
        host_header,
        resource,
        basic_auth,
        secrets,
    })
}

/// The URL the user probably meant, credentials redacted: `host:port/path`
/// gets `ws://` (and a `/` when there is no path), `http://` becomes
/// `ws://` and `https://` becomes `wss://`. `None` when no guess is better.
pub(crate) fn scheme_hint(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let guess = match raw.split_once("://") {
        None if raw.is_empty() || raw.contains(char::is_whitespace) => return None,
        None if raw.contains('/') => format!("ws://{raw}"),
        None => format!("ws://{raw}/"),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => format!("ws://{rest}"),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => format!("wss://{rest}"),
        Some(_) => return None,
    };
    url::Url::parse(&guess)
        .ok()
        .filter(|u| u.host().is_some())
        .map(|_| tether_proto::redact::redact_url(&guess))
}

/// Resolves a Location against the current URL; maps http(s) to ws(s);
/// refuses a downgrade from wss to ws.
pub(super) fn redirect_target(
    current: &str,
    location: &str,
) -> std::result::Result<String, String> {
    let base = url::Url::parse(current).map_err(|e| e.to_string())?;
    let mut next = base
        .join(location)
        .map_err(|e| format!("invalid redirect location: {e}"))?;
    let scheme = match next.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => return Err(format!("redirect to unsupported scheme {other:?}")),
    };
    if base.scheme() == "wss" && scheme == "ws" {
        return Err("refusing to follow a redirect from wss:// to ws://".into());
    }
    if next.scheme() != scheme {
        // Url::set_scheme refuses some special-to-special changes; rebuild.
        let s = next.as_str().replacen(next.scheme(), scheme, 1);
        next = url::Url::parse(&s).map_err(|e| e.to_string())?;
    }
    Ok(next.to_string())
}

/// Whether two URLs share scheme, host and port.
pub(super) fn same_origin(a: &str, b: &str) -> Option<bool> {
    let (a, b) = (url::Url::parse(a).ok()?, url::Url::parse(b).ok()?);
    Some(
        a.scheme() == b.scheme()
            && a.host_str() == b.host_str()
            && a.port_or_known_default() == b.port_or_known_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::ClientBuilder;
    use super::*;

    #[test]
    fn url_parsing() {
        let t = parse_url("ws://example.com/chat?x=1").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.host_header.as_str(),
                t.resource.as_str()
            ),
            ("example.com", 80, "example.com", "/chat?x=1")
        );
        let t = parse_url("ws://[::1]:9000").unwrap();
        assert_eq!(
            (t.host_header.as_str(), t.resource.as_str()),
            ("[::1]:9000", "/")
        );
        assert_eq!(
            parse_url("http://x/").unwrap_err().kind(),
            ErrorKind::InvalidUrl
        );
        assert_eq!(
            parse_url("not a url").unwrap_err().kind(),
            ErrorKind::InvalidUrl
        );
        assert_eq!(
            parse_url("ws://x/#frag").unwrap_err().kind(),
            ErrorKind::InvalidUrl
        );
        // RFC 7617 §2: no control character in Basic credentials.
        for url in ["ws://u:p%0D%0Ax@h/", "ws://u%00:p@h/", "ws://u%09@h/"] {
            let e = parse_url(url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
            assert!(e.to_string().contains("control character"), "{e}");
        }
    }

    #[test]
    fn a_url_without_a_ws_scheme_gets_a_hint() {
        for (raw, hint) in [
            ("127.0.0.1:9001", "did you mean ws://127.0.0.1:9001/?"),
            (
                "localhost:8080/feed?x=1",
                "did you mean ws://localhost:8080/feed?x=1?",
            ),
            ("example.com", "did you mean ws://example.com/?"),
            (
                "http://example.com/chat",
                "did you mean ws://example.com/chat?",
            ),
            (
                "https://u:secret@example.com/",
                "did you mean wss://u:<redacted>@example.com/?",
            ),
        ] {
            let e = parse_url(raw).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{raw}");
            assert!(e.to_string().contains(hint), "{raw}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
        assert_eq!(scheme_hint("ftp://x/"), None);
        assert_eq!(scheme_hint("not a url"), None);
    }

    #[test]
    fn url_credentials_become_one_basic_header() {
        let b = ClientBuilder::new("ws://al%40ice:p%3Ass@h/");
        let t = parse_url("ws://al%40ice:p%3Ass@h/").unwrap();
        let req = b.request(&t, &b.headers);
        let v = req
            .headers
            .get_all("authorization")
            .iter()
            .collect::<Vec<_>>();
        assert_eq!(v.len(), 1);
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("al@ice:p:ss")
        );
        assert_eq!(v[0], expected.as_str());
        // An explicit header wins, still only one.
        let b = ClientBuilder::new("ws://u:p@h/")
            .header("Authorization", "Bearer t")
            .unwrap();
        let req = b.request(&parse_url("ws://u:p@h/").unwrap(), &b.headers);
        let v = req
            .headers
            .get_all("authorization")
            .iter()
            .collect::<Vec<_>>();
        assert_eq!(v, vec!["Bearer t"]);
    }

    #[test]
    fn redirect_targets() {
        assert_eq!(redirect_target("ws://a/x", "/y").unwrap(), "ws://a/y");
        assert_eq!(
            redirect_target("ws://a/x", "http://b:81/z").unwrap(),
            "ws://b:81/z"
        );
        assert_eq!(
            redirect_target("ws://a/x", "https://b/z").unwrap(),
            "wss://b/z"
        );
        assert!(redirect_target("wss://a/x", "ws://a/y")
            .unwrap_err()
            .contains("wss:// to ws://"));
        assert!(redirect_target("wss://a/x", "http://a/y").is_err());
        assert!(redirect_target("ws://a/x", "ftp://a/y").is_err());
        assert_eq!(same_origin("ws://a/x", "ws://a:80/y"), Some(true));
        assert_eq!(same_origin("ws://a/x", "ws://a:81/y"), Some(false));
        assert_eq!(same_origin("ws://a/x", "ws://b/y"), Some(false));
    }
}
