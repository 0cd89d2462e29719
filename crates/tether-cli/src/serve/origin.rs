//! `--origin`: which web pages may open a WebSocket to this server.
//!
//! A browser sends the page's origin in the `Origin` header of every
//! WebSocket upgrade, and a page's script cannot change it, so a server
//! that checks it keeps pages of other sites from joining (RFC 6455 §10.2,
//! §4.2.1 item 8; RFC 6454 for the origin's form). The same header proves
//! nothing about other clients: a program sends any `Origin`, or none. So
//! a request without `Origin` (tether connect, curl, a script) is let in:
//! the check protects the people whose browsers can reach the server, not
//! the server from programs.

use tether::Request;

/// Which origins may upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origins {
    /// Any origin (no `--origin`, without a page; or `--origin '*'`).
    Any,
    /// Pages of this server only: the origin's host and port are the
    /// request's `Host` (the default with `--page` or `--static`).
    SameHost,
    /// These origins, normalised (see [`normalise`]).
    List(Vec<String>),
}

impl Origins {
    /// The policy for the `--origin` values given; `serves_pages` (with
    /// `--page` or `--static`) makes the default same-host. `Err` names a
    /// value that is not an origin.
    pub(crate) fn from_args(values: &[String], serves_pages: bool) -> Result<Origins, String> {
        if values.iter().any(|v| v == "*") {
            return Ok(Origins::Any);
        }
        if values.is_empty() {
            return Ok(if serves_pages {
                Origins::SameHost
            } else {
                Origins::Any
            });
        }
        let mut list = Vec::new();
        for v in values {
            match normalise(v) {
                Some(o) => list.push(o),
                None => {
                    return Err(format!(
                        "--origin {v:?}: an origin is scheme://host[:port] without a path \
                         (for example https://app.example.com or http://localhost:3000), \
                         null, or * for any"
                    ))
                }
            }
        }
        Ok(Origins::List(list))
    }

    /// Whether `req` may upgrade; `Err` says why not, for the server's note.
    pub(crate) fn check(&self, req: &Request) -> Result<(), String> {
        if *self == Origins::Any {
            return Ok(());
        }
        let mut values = req.headers.get_all("origin").iter();
        let Some(value) = values.next() else {
            // Not a browser: nothing to check (see the module's docs).
            return Ok(());
        };
        if values.next().is_some() {
            return Err("more than one Origin header".into());
        }
        let shown = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let Some(origin) = value.to_str().ok().and_then(normalise) else {
            return Err(format!("Origin {shown:?} is not an origin"));
        };
        let allowed = match self {
            Origins::Any => true,
            Origins::List(list) => list.contains(&origin),
            Origins::SameHost => req
                .header("host")
                .is_some_and(|host| same_host(&origin, host)),
        };
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "Origin {shown:?} is not allowed ({})",
                self.describe()
            ))
        }
    }

    /// The policy in words, for the startup note and refusals.
    pub(crate) fn describe(&self) -> String {
        match self {
            Origins::Any => "any origin".into(),
            Origins::SameHost => "pages of this server only; add others with --origin".into(),
            Origins::List(l) => format!("--origin {}", l.join(", ")),
        }
    }
}

/// An origin in the form browsers serialise it (RFC 6454 §6.2): scheme and
/// host in lower case, no trailing `/`, no port when it is the scheme's
/// default (80 for http and ws, 443 for https and wss). `null` (the origin
/// of sandboxed frames and `file:` pages) stays `null`. `None` for
/// anything else (a path, no scheme, no host).
pub(crate) fn normalise(origin: &str) -> Option<String> {
    let o = origin.trim().to_ascii_lowercase();
    if o == "null" {
        return Some(o);
    }
    let (scheme, rest) = o.split_once("://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let bad_char = |c: char| "/?#@\\".contains(c) || c.is_whitespace() || c.is_control();
    if !scheme_ok || authority.is_empty() || authority.contains(bad_char) {
        return None;
    }
    Some(format!(
        "{scheme}://{}",
        without_default_port(scheme, authority)
    ))
}

/// `authority` without `:80` or `:443` when that is `scheme`'s default.
fn without_default_port<'a>(scheme: &str, authority: &'a str) -> &'a str {
    let default = match scheme {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => return authority,
    };
    authority.strip_suffix(default).unwrap_or(authority)
}

/// True when the normalised `origin` names the host and port of the `Host`
/// header: the page was served by this server (through any name the client
/// used for it).
fn same_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // `null`
    };
    let host = host.trim().to_ascii_lowercase();
    authority == without_default_port(scheme, &host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origins: &[&str], host: &str) -> Request {
        let mut headers = tether::http::HeaderMap::new();
        headers.insert("host", host.parse().unwrap());
        for o in origins {
            headers.append("origin", o.parse().unwrap());
        }
        Request {
            method: "GET".into(),
            target: "/".into(),
            headers,
        }
    }

    #[test]
    fn origins_are_normalised_as_browsers_send_them() {
        assert_eq!(
            normalise("HTTPS://App.Example:443/").as_deref(),
            Some("https://app.example")
        );
        assert_eq!(
            normalise("http://localhost:3000").as_deref(),
            Some("http://localhost:3000")
        );
        assert_eq!(normalise("null").as_deref(), Some("null"));
        for bad in [
            "app.example",
            "https://",
            "https://a.example/path",
            "https://u@a.example",
            "1http://x",
        ] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_list_admits_its_origins_and_requests_without_origin() {
        let list = Origins::from_args(&["https://app.example".into()], false).unwrap();
        assert_eq!(list.check(&request(&["https://app.example"], "x")), Ok(()));
        assert_eq!(
            list.check(&request(&["https://APP.example:443"], "x")),
            Ok(())
        );
        assert_eq!(list.check(&request(&[], "x")), Ok(()));
        let refused = list
            .check(&request(&["https://evil.example"], "x"))
            .unwrap_err();
        assert!(
            refused.contains("\"https://evil.example\" is not allowed"),
            "{refused}"
        );
        // Two Origin headers: which one would the browser have meant?
        assert!(list
            .check(&request(
                &["https://app.example", "https://evil.example"],
                "x"
            ))
            .is_err());
    }

    #[test]
    fn same_host_compares_the_origin_with_the_host_header() {
        let same = Origins::from_args(&[], true).unwrap();
        assert_eq!(same, Origins::SameHost);
        assert_eq!(
            same.check(&request(&["http://127.0.0.1:9001"], "127.0.0.1:9001")),
            Ok(())
        );
        assert_eq!(
            same.check(&request(&["http://example.com"], "example.com:80")),
            Ok(())
        );
        assert!(same
            .check(&request(&["http://127.0.0.1:9002"], "127.0.0.1:9001"))
            .is_err());
        assert!(same.check(&request(&["null"], "127.0.0.1:9001")).is_err());
        assert!(same
            .check(&request(&["http://evil.example"], "127.0.0.1:9001"))
            .is_err());
    }

    #[test]
    fn defaults_and_wildcard() {
        assert_eq!(Origins::from_args(&[], false), Ok(Origins::Any));
        assert_eq!(Origins::from_args(&["*".into()], true), Ok(Origins::Any));
        assert!(Origins::from_args(&["example.com".into()], false)
            .unwrap_err()
            .contains("scheme://host"));
    }
}
