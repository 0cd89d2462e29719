//! What a connection is opened to: [`IntoClientRequest`], for URLs in their
//! several types and for an `http::Request<()>` whose headers are sent.

use super::ClientBuilder;
use crate::error::ErrorKind;
use http::header::{self, HeaderName};
use http::{HeaderMap, Method, Version};

/// What [`connect`](crate::connect) and [`ClientBuilder::new`] take: the
/// URL to open (`&str`, `String`, [`url::Url`], [`http::Uri`]) or a whole
/// [`http::Request<()>`](http::Request) whose headers are sent with the
/// upgrade request.
///
/// This is tether's counterpart of tungstenite's `IntoClientRequest`, so
/// that code written for tokio-tungstenite keeps its request-building
/// code. From an `http::Request`:
///
/// - the URI must be absolute, `ws://` or `wss://` (`http(s)://` is
///   refused, as in a URL given as a string). It gives the host to connect
///   to, the `Host` header and the path;
/// - the method must be `GET` and the version HTTP/1.1 (RFC 6455 §4.1);
/// - `Sec-WebSocket-Protocol` becomes the offered subprotocols, in order
///   (as [`ClientBuilder::subprotocol`]);
/// - `Origin` becomes the [`origin`](ClientBuilder::origin) (at most one);
/// - the headers the handshake sets itself are dropped: `Host` (from the
///   URI), `Upgrade`, `Connection`, `Sec-WebSocket-Key` (a fresh random key
///   on every attempt) and `Sec-WebSocket-Version` (which must be 13 if
///   present), so that a request made by tungstenite's
///   `into_client_request()` works as it is;
/// - `Sec-WebSocket-Extensions` is refused: tether makes its own
///   permessage-deflate offer ([`ClientBuilder::compression`]);
/// - every other header is sent, as [`ClientBuilder::header`] would send it
///   (so `Authorization`, cookies and the other headers the redaction rule
///   covers are never shown in `Debug` output nor echoed in errors; mark
///   more with [`ClientBuilder::sensitive_header`]).
///
/// A request that breaks these rules gives a builder whose
/// [`connect`](ClientBuilder::connect) fails with [`ErrorKind::Config`]
/// ([`ErrorKind::InvalidUrl`] for the URI) before any connection is
/// opened, as an invalid header value does; [`ClientBuilder::validate`]
/// reports it at once.
///
/// ```
/// # fn main() -> tether::Result<()> {
/// use tether::{http, ClientBuilder, ErrorKind};
/// let request = http::Request::builder()
///     .uri("ws://127.0.0.1:9001/chat")
///     .header("authorization", "Bearer s3cret")
///     .header("sec-websocket-protocol", "chat.v2, chat.v1")
///     .body(())
///     .unwrap();
/// let builder = ClientBuilder::new(request);
/// builder.validate()?;
/// assert!(!format!("{builder:?}").contains("s3cret"));
///
/// let post = http::Request::post("ws://127.0.0.1:9001/").body(()).unwrap();
/// let err = ClientBuilder::new(post).validate().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Config);
///
/// // A url::Url, and an http::Uri, as well as strings.
/// let url = tether::url::Url::parse("ws://127.0.0.1:9001/feed").unwrap();
/// ClientBuilder::new(&url).validate()?;
/// let uri: http::Uri = "ws://127.0.0.1:9001/feed".parse().unwrap();
/// ClientBuilder::new(uri).validate()?;
/// # Ok(()) }
/// ```
///
/// Your own type can implement it by returning the builder it stands for,
/// settings included:
///
/// ```
/// use tether::{ClientBuilder, IntoClientRequest};
/// struct Feed { host: String }
/// impl IntoClientRequest for Feed {
///     fn into_client_builder(self) -> ClientBuilder {
///         ClientBuilder::new(format!("wss://{}/feed", self.host)).subprotocol("feed.v1")
///     }
/// }
/// let builder = ClientBuilder::new(Feed { host: "example.com".into() });
/// ```
pub trait IntoClientRequest {
    /// The settings to open this connection with: the URL and, from a
    /// request, its headers and subprotocols; the other settings at their
    /// defaults (see [`ClientBuilder::new`]).
    fn into_client_builder(self) -> ClientBuilder;
}

impl IntoClientRequest for &str {
    fn into_client_builder(self) -> ClientBuilder {
        ClientBuilder::for_url(self.to_string())
    }
}

impl IntoClientRequest for String {
    fn into_client_builder(self) -> ClientBuilder {
        ClientBuilder::for_url(self)
    }
}

impl IntoClientRequest for &String {
    fn into_client_builder(self) -> ClientBuilder {
        ClientBuilder::for_url(self.clone())
    }
}

impl IntoClientRequest for url::Url {
    fn into_client_builder(self) -> ClientBuilder {
        ClientBuilder::for_url(self.into())
    }
}

impl IntoClientRequest for &url::Url {
    fn into_client_builder(self) -> ClientBuilder {
        ClientBuilder::for_url(self.as_str().to_string())
    }
}

impl IntoClientRequest for http::Uri {
    fn into_client_builder(self) -> ClientBuilder {
        for_uri(&self)
    }
}

impl IntoClientRequest for &http::Uri {
    fn into_client_builder(self) -> ClientBuilder {
        for_uri(self)
    }
}

impl IntoClientRequest for http::Request<()> {
    fn into_client_builder(self) -> ClientBuilder {
        let (parts, ()) = self.into_parts();
        let mut builder = for_uri(&parts.uri);
        if let Err(why) = check_request_line(&parts.method, parts.version) {
            builder.invalid_request(ErrorKind::Config, why);
            return builder;
        }
        match split_headers(parts.headers) {
            Ok(split) => {
                builder.origin = split.origin;
                builder.subprotocols = split.subprotocols;
                builder.headers = split.headers;
            }
            Err(why) => builder.invalid_request(ErrorKind::Config, why),
        }
        builder
    }
}

/// A builder for `uri`; a relative one (`/chat`) is refused with a message
/// that says what is missing (`url::Url` would only say "relative URL
/// without a base").
fn for_uri(uri: &http::Uri) -> ClientBuilder {
    let mut builder = ClientBuilder::for_url(uri.to_string());
    if uri.scheme().is_none() || uri.authority().is_none() {
        builder.invalid_request(
            ErrorKind::InvalidUrl,
            format!(
                "invalid URL: the request's URI {:?} is not absolute: it needs a scheme \
                 and a host (ws://host/path or wss://host/path)",
                tether_proto::redact::redact_url(&uri.to_string())
            ),
        );
    }
    builder
}

/// RFC 6455 §4.1: "The method of the request MUST be GET, and the HTTP
/// version MUST be at least 1.1"; over HTTP/2 a WebSocket is another
/// protocol (RFC 8441), which tether does not speak.
fn check_request_line(method: &Method, version: Version) -> Result<(), String> {
    if method != Method::GET {
        return Err(format!(
            "the upgrade request's method must be GET, not {method} (RFC 6455 §4.1)"
        ));
    }
    if version != Version::HTTP_11 {
        return Err(format!(
            "the upgrade request's version must be HTTP/1.1, not {version:?} (RFC 6455 §4.1)"
        ));
    }
    Ok(())
}

/// The headers of a request, sorted into what the builder keeps apart.
#[derive(Debug)]
struct SplitHeaders {
    origin: Option<String>,
    subprotocols: Vec<String>,
    headers: HeaderMap,
}

/// Sorts a request's headers (see [`IntoClientRequest`]). The message of an
/// error names a header, never its value (which may be a secret).
fn split_headers(headers: HeaderMap) -> Result<SplitHeaders, String> {
    let mut split = SplitHeaders {
        origin: None,
        subprotocols: Vec::new(),
        headers: HeaderMap::new(),
    };
    let mut last: Option<HeaderName> = None;
    for (name, value) in headers {
        // `HeaderMap::into_iter` gives the name once per group of values.
        let name = match name {
            Some(n) => {
                last = Some(n.clone());
                n
            }
            None => match &last {
                Some(n) => n.clone(),
                None => continue,
            },
        };
        match name {
            header::SEC_WEBSOCKET_PROTOCOL => {
                let list = value
                    .to_str()
                    .map_err(|_| "invalid Sec-WebSocket-Protocol header: not ASCII".to_string())?;
                // A comma-separated list; empty elements are allowed and
                // ignored (RFC 9110 §5.6.1). Each element is checked as a
                // token when connecting, as ClientBuilder::subprotocol's.
                split.subprotocols.extend(
                    list.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(String::from),
                );
            }
            header::ORIGIN => {
                if split.origin.is_some() {
                    return Err("more than one Origin header (RFC 6454 §7.2)".into());
                }
                let origin = value
                    .to_str()
                    .map_err(|_| "invalid Origin header: not ASCII".to_string())?;
                split.origin = Some(origin.to_string());
            }
            header::SEC_WEBSOCKET_VERSION => {
                if value.as_bytes().trim_ascii() != b"13" {
                    return Err(
                        "Sec-WebSocket-Version must be 13 (RFC 6455 §4.1), the only version \
                         tether speaks"
                            .into(),
                    );
                }
            }
            header::SEC_WEBSOCKET_EXTENSIONS => {
                return Err(
                    "the request carries Sec-WebSocket-Extensions: tether makes its \
                            own permessage-deflate offer (ClientBuilder::compression); \
                            remove the header"
                        .into(),
                );
            }
            // Set by the handshake itself, from the URI and a fresh key.
            header::HOST | header::UPGRADE | header::CONNECTION | header::SEC_WEBSOCKET_KEY => {}
            name => {
                split.headers.append(name, value);
            }
        }
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pairs: &[(&str, &str)]) -> Result<SplitHeaders, String> {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        split_headers(h)
    }

    #[test]
    fn subprotocols_come_in_order_from_every_header() {
        let s = split(&[
            ("sec-websocket-protocol", "b.v2, a.v1"),
            ("x-other", "1"),
            ("sec-websocket-protocol", " ,c"),
        ])
        .unwrap();
        assert_eq!(s.subprotocols, ["b.v2", "a.v1", "c"]);
        assert_eq!(s.headers.len(), 1);
    }

    #[test]
    fn handshake_headers_are_dropped_and_repeated_ones_kept() {
        let s = split(&[
            ("host", "elsewhere.example"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("origin", "https://app.example"),
        ])
        .unwrap();
        let cookies: Vec<_> = s.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(s.headers.len(), 2, "{:?}", s.headers);
        assert_eq!(s.origin.as_deref(), Some("https://app.example"));
    }

    #[test]
    fn refused_headers() {
        for (pairs, why) in [
            (&[("sec-websocket-version", "8")][..], "must be 13"),
            (
                &[("sec-websocket-extensions", "permessage-deflate")],
                "compression",
            ),
            (
                &[("origin", "https://a"), ("origin", "https://b")],
                "more than one Origin",
            ),
        ] {
            let e = split(pairs).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn request_line() {
        assert!(check_request_line(&Method::GET, Version::HTTP_11).is_ok());
        assert!(check_request_line(&Method::POST, Version::HTTP_11)
            .unwrap_err()
            .contains("not POST"));
        assert!(check_request_line(&Method::GET, Version::HTTP_2)
            .unwrap_err()
            .contains("HTTP/1.1"));
    }
}
