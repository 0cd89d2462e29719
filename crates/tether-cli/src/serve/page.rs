//! `--page`: the built-in console at `/`, one self-contained HTML file
//! (`page.html`: no external script, style, font or image) whose script
//! opens a WebSocket back to the server that served it, shows the messages
//! received, and sends what is typed.

use tether::Response;

/// The page, compiled into the binary.
const PAGE: &str = include_str!("page.html");

/// What the page may do (defence in depth: it shows messages with
/// `textContent`, never as HTML): its own inline script and style, a
/// WebSocket to its server (CSP level 3 lets `'self'` match `ws:` and
/// `wss:` of the same host, but not every browser does, hence the
/// schemes), nothing loaded from elsewhere, and no framing by other sites.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'self'";

/// The response to a GET (or HEAD) of `/`.
pub(crate) fn response() -> Response {
    let mut r = Response::new(200);
    r.body = PAGE.into();
    r.header("content-type", "text/html; charset=utf-8")
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("cache-control", "no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        // No src= or href= at all, and no absolute URL but the one the
        // script builds from its own location.
        for needle in ["src=", "href=", "http://", "https://", "@import", "url("] {
            assert!(!PAGE.contains(needle), "page.html contains {needle:?}");
        }
        assert!(PAGE.contains("location.host"));
        // Messages are shown as text.
        assert!(!PAGE.contains("innerHTML"));
    }
}
