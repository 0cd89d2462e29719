//! Which proxy the environment chooses: `no_proxy`, then `ws_proxy` or
//! `wss_proxy`, `socks_proxy`, `https_proxy`, `http_proxy` and `all_proxy`
//! (the rules are in the documentation of [`crate::proxy`]).
//!
//! CIDR blocks in `no_proxy` are matched by [`cidr_contains`], not with the
//! `ipnet` crate: ipnet would do the same (parse `net/bits`, test
//! containment, no match across families) but adds a dependency for what
//! is here fifteen lines of masking, tested at /0, /8, /24, over-long
//! prefixes and mixed families.

use super::{Proxy, ProxyScheme};
use crate::error::{Error, ErrorKind, Result};
use std::net::IpAddr;

/// The proxy that the environment chooses for a connection to `url`
/// (`ws://` or `wss://`), by the rules of this module, or `None` for a
/// direct connection.
///
/// # Errors
/// [`ErrorKind::InvalidUrl`] when `url` is not a `ws://` or `wss://` URL, or
/// the chosen variable holds an invalid proxy URL (the error names the
/// variable).
pub fn from_env(url: &str) -> Result<Option<Proxy>> {
    select(url, |name| std::env::var(name).ok())
}

/// As [`from_env`], reading variables through `lookup` instead of the
/// process environment (for tests, or another source of settings).
///
/// ```
/// use tether::proxy::select;
/// let env = |name: &str| match name {
///     "https_proxy" => Some("http://proxy.example:3128".to_string()),
///     "NO_PROXY" => Some(".internal.example".to_string()),
///     _ => None,
/// };
/// let p = select("wss://feed.example/", env)?.expect("a proxy");
/// assert_eq!(p.host(), "proxy.example");
/// assert!(select("ws://chat.internal.example/", env)?.is_none());
/// # Ok::<(), tether::Error>(())
/// ```
///
/// # Errors
/// As [`from_env`].
pub fn select<F>(url: &str, lookup: F) -> Result<Option<Proxy>>
where
    F: Fn(&str) -> Option<String>,
{
    let invalid =
        |why: &str| Error::msg(ErrorKind::InvalidUrl, format!("invalid URL: {why}")).with_url(url);
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    let secure = match parsed.scheme() {
        "ws" => false,
        "wss" => true,
        other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
    };
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(invalid("no host")),
    };
    let port = parsed.port().unwrap_or(if secure { 443 } else { 80 });
    select_for(&host, port, secure, &lookup)
}

/// The variable `<scheme>_proxy` as urllib reads it: lower case first (even
/// empty, which means none), then upper case; `HTTP_PROXY` is ignored in a
/// CGI program. Returns the variable's name and its value.
fn env_var(lookup: &dyn Fn(&str) -> Option<String>, scheme: &str) -> Option<(String, String)> {
    let lower = format!("{scheme}_proxy");
    if let Some(v) = lookup(&lower) {
        return (!v.trim().is_empty()).then_some((lower, v));
    }
    if scheme == "http" && lookup("REQUEST_METHOD").is_some() {
        return None;
    }
    let upper = lower.to_ascii_uppercase();
    let v = lookup(&upper)?;
    (!v.trim().is_empty()).then_some((upper, v))
}

/// The environment's proxy for `host:port` (`host` without brackets).
pub(super) fn select_for(
    host: &str,
    port: u16,
    secure: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>> {
    if let Some((_, list)) = env_var(lookup, "no") {
        if no_proxy_matches(&list, host, port) {
            return Ok(None);
        }
    }
    if is_loopback(host) {
        return Ok(None);
    }
    // websockets' get_proxy(): ["wss", "socks", "https"] for wss://,
    // ["ws", "socks", "https", "http"] for ws:// (websockets/proxy.py, 17.4);
    // "all" is tether's addition.
    let order: &[&str] = if secure {
        &["wss", "socks", "https", "all"]
    } else {
        &["ws", "socks", "https", "http", "all"]
    };
    for scheme in order {
        let Some((name, value)) = env_var(lookup, scheme) else {
            continue;
        };
        let parsed = if *scheme == "socks" {
            // websockets: a socks_proxy of http://host:port means socks5h.
            let v = value.trim();
            match v.strip_prefix("http://") {
                Some(rest) => {
                    Proxy::parse_with_default(&format!("socks5h://{rest}"), ProxyScheme::Socks5h)
                }
                None => Proxy::parse_with_default(v, ProxyScheme::Socks5h),
            }
        } else {
            Proxy::parse_with_default(&value, ProxyScheme::Http)
        };
        return parsed.map(Some).map_err(|e| {
            let m = format!("{e} (from the environment variable {name})");
            e.with_message(m)
        });
    }
    Ok(None)
}

/// Whether `host` is a loopback name or address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

/// Whether a `no_proxy` list matches `host:port` (see the module
/// documentation).
fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let host_ip = host.parse::<IpAddr>().ok();
    for entry in list.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return true;
        }
        let (name, entry_port) = split_port(entry);
        if entry_port.is_some_and(|p| p != port) {
            continue;
        }
        let name = name.trim_start_matches('.');
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        match host_ip {
            Some(ip) => {
                if let Some((net, bits)) = name.split_once('/') {
                    if cidr_contains(net, bits, ip) {
                        return true;
                    }
                } else if name.parse::<IpAddr>().ok() == Some(ip) {
                    return true;
                }
            }
            None => {
                if host == name
                    || (host.len() > name.len()
                        && host.ends_with(name.as_str())
                        && host.as_bytes()[host.len() - name.len() - 1] == b'.')
                {
                    return true;
                }
            }
        }
    }
    false
}

/// Splits an optional port off a `no_proxy` entry: `[::1]:80`, `::1`,
/// `host:80`, `1.2.3.4:80`, `10.0.0.0/8`.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (entry, None),
        };
    }
    if entry.parse::<IpAddr>().is_ok() || entry.matches(':').count() > 1 {
        return (entry, None);
    }
    match entry.rsplit_once(':') {
        Some((name, p)) => match p.parse::<u16>() {
            Ok(p) => (name, Some(p)),
            // An invalid port: an entry that matches nothing.
            Err(_) => ("", None),
        },
        None => (entry, None),
    }
}

/// Whether `ip` is in the block `net/bits` (IPv4 or IPv6, same family).
fn cidr_contains(net: &str, bits: &str, ip: IpAddr) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    /// The proxy host chosen for `url` (`None`: direct).
    fn chosen(url: &str, vars: &[(&str, &str)]) -> Option<String> {
        select(url, env(vars))
            .unwrap()
            .map(|p| format!("{}://{}", p.scheme().as_str(), p.host()))
    }

    const ALL: [(&str, &str); 6] = [
        ("ws_proxy", "http://ws-proxy"),
        ("wss_proxy", "http://wss-proxy"),
        ("socks_proxy", "socks5://socks-proxy"),
        ("https_proxy", "http://https-proxy"),
        ("http_proxy", "http://http-proxy"),
        ("all_proxy", "http://all-proxy"),
    ];

    /// `vars` without the variables named in `drop`.
    fn without(drop: &[&str]) -> Vec<(&'static str, &'static str)> {
        ALL.iter()
            .filter(|(k, _)| !drop.contains(k))
            .copied()
            .collect()
    }

    /// Checks that `url` takes the variables of `order` (from [`ALL`]) one
    /// after the other, as each is removed; returns the removed names.
    fn assert_order(url: &str, order: &[&'static str]) -> Vec<&'static str> {
        let mut gone = vec![];
        for var in order {
            let (_, value) = ALL.iter().find(|(k, _)| k == var).unwrap();
            assert_eq!(
                chosen(url, &without(&gone)).as_deref(),
                Some(*value),
                "{var}"
            );
            gone.push(*var);
        }
        gone
    }

    #[test]
    fn order_for_ws_is_ws_socks_https_http_all() {
        let url = "ws://example.com/";
        let order = [
            "ws_proxy",
            "socks_proxy",
            "https_proxy",
            "http_proxy",
            "all_proxy",
        ];
        let mut gone = assert_order(url, &order);
        gone.push("wss_proxy");
        assert_eq!(chosen(url, &without(&gone)), None);
    }

    #[test]
    fn order_for_wss_is_wss_socks_https_all_never_http() {
        let url = "wss://example.com/";
        let gone = assert_order(
            url,
            &["wss_proxy", "socks_proxy", "https_proxy", "all_proxy"],
        );
        // http_proxy and ws_proxy are left: neither applies to wss://.
        assert_eq!(chosen(url, &without(&gone)), None);
    }

    #[test]
    fn lower_case_wins_and_empty_lower_case_means_none() {
        let url = "ws://example.com/";
        assert_eq!(
            chosen(url, &[("HTTPS_PROXY", "http://upper")]).as_deref(),
            Some("http://upper")
        );
        assert_eq!(
            chosen(
                url,
                &[
                    ("HTTPS_PROXY", "http://upper"),
                    ("https_proxy", "http://lower")
                ]
            )
            .as_deref(),
            Some("http://lower")
        );
        // An empty lower-case variable hides the upper-case one; the next
        // variable in the order applies.
        assert_eq!(
            chosen(
                url,
                &[
                    ("HTTPS_PROXY", "http://upper"),
                    ("https_proxy", ""),
                    ("HTTP_PROXY", "http://plain")
                ]
            )
            .as_deref(),
            Some("http://plain")
        );
        assert_eq!(chosen(url, &[("HTTPS_PROXY", "")]), None);
    }

    #[test]
    fn cgi_ignores_upper_case_http_proxy() {
        let url = "ws://example.com/";
        let cgi = [("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "http://evil")];
        assert_eq!(chosen(url, &cgi), None);
        let cgi = [("REQUEST_METHOD", "GET"), ("http_proxy", "http://ok")];
        assert_eq!(chosen(url, &cgi).as_deref(), Some("http://ok"));
        assert_eq!(
            chosen(url, &[("HTTP_PROXY", "http://fine")]).as_deref(),
            Some("http://fine")
        );
    }

    #[test]
    fn socks_proxy_http_means_socks5h_and_no_scheme_defaults() {
        let url = "ws://example.com/";
        assert_eq!(
            chosen(url, &[("socks_proxy", "http://s:1080")]).as_deref(),
            Some("socks5h://s")
        );
        assert_eq!(
            chosen(url, &[("socks_proxy", "s:1080")]).as_deref(),
            Some("socks5h://s")
        );
        assert_eq!(
            chosen(url, &[("https_proxy", "corp-proxy:3128")]).as_deref(),
            Some("http://corp-proxy")
        );
        let p = select(url, env(&[("ALL_PROXY", "socks5://u:p@s")]))
            .unwrap()
            .unwrap();
        assert_eq!((p.scheme(), p.port()), (ProxyScheme::Socks5, 1080));
    }

    #[test]
    fn no_proxy_comes_first() {
        let vars = [("ws_proxy", "http://p"), ("no_proxy", "example.com")];
        assert_eq!(chosen("ws://example.com/", &vars), None);
        assert_eq!(chosen("ws://a.example.com:81/", &vars), None);
        assert_eq!(
            chosen("ws://other.com/", &vars).as_deref(),
            Some("http://p")
        );
        let vars = [("HTTPS_PROXY", "http://p"), ("NO_PROXY", "*")];
        assert_eq!(chosen("wss://example.com/", &vars), None);
        // An empty lower-case no_proxy hides NO_PROXY.
        let vars = [
            ("HTTPS_PROXY", "http://p"),
            ("NO_PROXY", "*"),
            ("no_proxy", ""),
        ];
        assert_eq!(
            chosen("wss://example.com/", &vars).as_deref(),
            Some("http://p")
        );
    }

    #[test]
    fn loopback_is_never_proxied_from_the_environment() {
        let vars = [("http_proxy", "http://p")];
        for url in [
            "ws://localhost/",
            "ws://LOCALHOST:9001/",
            "ws://app.localhost/",
            "ws://127.0.0.1:9001/",
            "ws://127.1.2.3/",
            "ws://[::1]:9001/",
        ] {
            assert_eq!(chosen(url, &vars), None, "{url}");
        }
        assert_eq!(chosen("ws://10.0.0.1/", &vars).as_deref(), Some("http://p"));
    }

    #[test]
    fn invalid_proxy_in_the_environment_names_the_variable() {
        let e = select(
            "ws://example.com/",
            env(&[("HTTPS_PROXY", "ftp://u:hunter2@p/")]),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidUrl);
        assert!(e.is_proxy());
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("HTTPS_PROXY"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn no_proxy_matching() {
        let m = no_proxy_matches;
        // Names and suffixes, leading dots, case, trailing dots.
        assert!(m("example.com", "example.com", 80));
        assert!(m("example.com", "a.b.example.com", 80));
        assert!(m(".example.com", "example.com", 80));
        assert!(m(".example.com", "a.example.com", 80));
        assert!(m("EXAMPLE.com", "a.Example.COM", 80));
        assert!(m("example.com.", "example.com", 80));
        assert!(!m("example.com", "badexample.com", 80));
        assert!(!m("example.com", "example.com.evil", 80));
        assert!(!m("a.example.com", "example.com", 80));
        // Lists, spaces, empty entries, `*`.
        assert!(m(" foo.org , , example.com ", "example.com", 80));
        assert!(m("*", "anything", 1));
        assert!(m("foo.org,*", "anything", 1));
        assert!(!m("", "example.com", 80));
        assert!(!m(" , ", "example.com", 80));
        // Ports.
        assert!(m("example.com:8080", "example.com", 8080));
        assert!(!m("example.com:8080", "example.com", 80));
        assert!(m(".example.com:8080", "a.example.com", 8080));
        assert!(!m("example.com:bad", "example.com", 80));
        // IP literals: exact, never by suffix.
        assert!(m("10.1.2.3", "10.1.2.3", 80));
        assert!(!m("1.2.3", "10.1.2.3", 80));
        assert!(!m("0.0.1", "127.0.0.1", 80));
        assert!(m("10.1.2.3:9001", "10.1.2.3", 9001));
        assert!(!m("10.1.2.3:9001", "10.1.2.3", 9002));
        assert!(m("::1", "::1", 80));
        assert!(m("[::1]", "::1", 80));
        assert!(m("[::1]:9001", "[::1]", 9001));
        assert!(!m("[::1]:9001", "::1", 9002));
        assert!(m("fe80::1", "FE80::1", 80));
        assert!(!m("10.1.2.3", "example.com", 80));
        // CIDR blocks.
        assert!(m("10.0.0.0/8", "10.200.3.4", 80));
        assert!(!m("10.0.0.0/8", "11.0.0.1", 80));
        assert!(m("192.168.1.0/24", "192.168.1.77", 80));
        assert!(m("0.0.0.0/0", "8.8.8.8", 80));
        assert!(m("fd00::/8", "fd12::1", 80));
        assert!(!m("fd00::/8", "fe80::1", 80));
        assert!(!m("10.0.0.0/33", "10.0.0.1", 80));
        assert!(!m("10.0.0.0/8", "fd00::1", 80));
        assert!(!m("10.0.0.0/8", "ten.example", 80));
    }
}
