//! Conversions between tether's [`Request`]/[`Response`] and the `http`
//! crate's types, for code that lives in the hyper/axum world.
//!
//! "Without loss" means: the method, the request target, the status, the
//! reason phrase, every header field (repeated names and their order
//! included) and the response body come back as they were after a round
//! trip. What tether's types cannot hold is the HTTP version (tether's
//! messages are HTTP/1.1: the `http` values it builds say `HTTP/1.1`, and the
//! version of one given to it is dropped) and the extensions (dropped,
//! except a [`ReasonPhrase`] on a response). A request's body is not part of
//! either side: tether's request is the head of an upgrade request.

use super::{Request, Response};
use bytes::Bytes;

/// A reason phrase other than the status code's standard one, carried in an
/// [`http::Response`]'s extensions (the `http` crate has no field for it).
///
/// Converting a [`Response`] whose `reason` is not the standard phrase of
/// its status adds one; converting back reads it.
///
/// ```
/// use tether_proto::handshake::{ReasonPhrase, Response};
/// let mut ours = Response::new(401);
/// ours.reason = "Token Expired".into();
/// let theirs = http::Response::<bytes::Bytes>::try_from(ours).unwrap();
/// let kept = theirs.extensions().get::<ReasonPhrase>().unwrap();
/// assert_eq!(kept.0, "Token Expired");
/// assert_eq!(Response::from(theirs).reason, "Token Expired");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonPhrase(pub String);

/// The standard reason phrase of `status`, or `""`.
fn canonical_reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

impl TryFrom<Request> for http::Request<()> {
    type Error = http::Error;

    /// The request as an `http::Request<()>`, version HTTP/1.1.
    ///
    /// # Errors
    /// When the method is not a token, or the target is not a URI the `http`
    /// crate accepts. A request read by a tether server converts unless its
    /// target holds one of the few bytes that HTTP/1.1 parsers let through
    /// and `http` refuses: `<`, `>` and `` ` ``, or `"` in the query.
    fn try_from(r: Request) -> Result<Self, http::Error> {
        let method = http::Method::from_bytes(r.method.as_bytes())?;
        let uri = http::Uri::try_from(r.target)?;
        let mut out = http::Request::new(());
        *out.method_mut() = method;
        *out.uri_mut() = uri;
        *out.version_mut() = http::Version::HTTP_11;
        *out.headers_mut() = r.headers;
        Ok(out)
    }
}

impl From<http::Request<()>> for Request {
    /// The method, the URI as the target (origin form `/path?query` for the
    /// requests of an HTTP/1.1 server such as hyper's), and the headers;
    /// the version and the extensions are dropped.
    fn from(r: http::Request<()>) -> Self {
        Request::from(r.into_parts().0)
    }
}

impl From<http::request::Parts> for Request {
    /// As `From<http::Request<()>>`, taking the headers without a copy.
    fn from(p: http::request::Parts) -> Self {
        Request {
            method: p.method.as_str().to_string(),
            target: p.uri.to_string(),
            headers: p.headers,
        }
    }
}

impl From<&http::request::Parts> for Request {
    /// As `From<http::Request<()>>`, from the parts of a request whose body
    /// is elsewhere (hyper's `Request<Incoming>`, an axum extractor).
    fn from(p: &http::request::Parts) -> Self {
        Request {
            method: p.method.as_str().to_string(),
            target: p.uri.to_string(),
            headers: p.headers.clone(),
        }
    }
}

impl TryFrom<Response> for http::Response<Bytes> {
    type Error = http::Error;

    /// The response as an `http::Response<Bytes>`, version HTTP/1.1, with a
    /// [`ReasonPhrase`] in the extensions when the reason is not the
    /// status's standard one.
    ///
    /// # Errors
    /// When the status is not a three-digit code (100 to 999).
    fn try_from(r: Response) -> Result<Self, http::Error> {
        let status = http::StatusCode::from_u16(r.status)?;
        let mut out = http::Response::new(r.body);
        *out.status_mut() = status;
        *out.version_mut() = http::Version::HTTP_11;
        *out.headers_mut() = r.headers;
        if r.reason != canonical_reason(r.status) {
            out.extensions_mut().insert(ReasonPhrase(r.reason));
        }
        Ok(out)
    }
}

impl<B: Into<Bytes>> From<http::Response<B>> for Response {
    /// The status, the reason (a [`ReasonPhrase`] extension, else the
    /// standard phrase), the headers and the body; the version and the other
    /// extensions are dropped.
    fn from(r: http::Response<B>) -> Self {
        let (mut parts, body) = r.into_parts();
        let status = parts.status.as_u16();
        let reason = match parts.extensions.remove::<ReasonPhrase>() {
            Some(ReasonPhrase(r)) => r,
            None => canonical_reason(status).to_string(),
        };
        Response {
            status,
            reason,
            headers: parts.headers,
            body: body.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Every field, repeated names in order included.
    fn same_headers(a: &HeaderMap, b: &HeaderMap) -> bool {
        let list = |h: &HeaderMap| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        list(a) == list(b)
    }

    fn upgrade_request() -> Request {
        Request {
            method: "GET".into(),
            target: "/chat?room=1&token=x".into(),
            headers: headers(&[
                ("host", "example.com"),
                ("upgrade", "websocket"),
                ("cookie", "a=1"),
                ("cookie", "b=2"),
                ("sec-websocket-protocol", "v2, v1"),
            ]),
        }
    }

    #[test]
    fn request_round_trips_through_http() {
        let ours = upgrade_request();
        let theirs = http::Request::try_from(ours.clone()).unwrap();
        assert_eq!(theirs.method(), http::Method::GET);
        assert_eq!(theirs.uri(), "/chat?room=1&token=x");
        assert_eq!(theirs.version(), http::Version::HTTP_11);
        let back = Request::from(theirs);
        assert_eq!(back.method, ours.method);
        assert_eq!(back.target, ours.target);
        assert!(same_headers(&back.headers, &ours.headers));
    }

    #[test]
    fn other_request_targets_round_trip() {
        for (method, target) in [
            ("OPTIONS", "*"),
            ("CONNECT", "example.com:443"),
            ("GET", "http://example.com/a?b=c"),
            ("GET", "/"),
            ("PURGE", "/cache/x"),
            ("GET", "/caf\u{e9}?q={a}|b"),
        ] {
            let ours = Request {
                method: method.into(),
                target: target.into(),
                headers: HeaderMap::new(),
            };
            let theirs = http::Request::try_from(ours).unwrap();
            let back = Request::from(theirs);
            assert_eq!(
                (back.method.as_str(), back.target.as_str()),
                (method, target)
            );
        }
    }

    #[test]
    fn parts_of_a_framework_request_convert() {
        let req = http::Request::post("/hook")
            .version(http::Version::HTTP_2)
            .header("x-a", "1")
            .body("a body that stays with the framework")
            .unwrap();
        let (parts, _body) = req.into_parts();
        let ours = Request::from(&parts);
        assert_eq!(
            (ours.method.as_str(), ours.target.as_str()),
            ("POST", "/hook")
        );
        assert_eq!(ours.header("x-a"), Some("1"));
        // By value: the same, without copying the headers.
        let owned = Request::from(parts);
        assert!(same_headers(&owned.headers, &ours.headers));
        // Back again it says HTTP/1.1: that is all tether's request can be.
        let theirs = http::Request::try_from(owned).unwrap();
        assert_eq!(theirs.version(), http::Version::HTTP_11);
    }

    #[test]
    fn requests_http_cannot_hold_are_errors_not_panics() {
        for (method, target) in [
            ("GET", "/a b"),
            ("GET", "/a\x7f"),
            ("GET", "/a<b>"),
            ("GET", "/a?q=\"b\""),
            ("G E", "/"),
            ("GET", ""),
            ("", "/"),
        ] {
            let ours = Request {
                method: method.into(),
                target: target.into(),
                headers: HeaderMap::new(),
            };
            assert!(
                http::Request::try_from(ours).is_err(),
                "{method:?} {target:?}"
            );
        }
    }

    #[test]
    fn response_round_trips_with_reason_and_body() {
        let ours = Response::with_body(401, "token expired\n")
            .header("www-authenticate", "Bearer")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2");
        let theirs = http::Response::<Bytes>::try_from(ours.clone()).unwrap();
        assert_eq!(theirs.status(), 401);
        assert_eq!(theirs.body(), "token expired\n");
        // The standard phrase needs no extension.
        assert!(theirs.extensions().get::<ReasonPhrase>().is_none());
        let back = Response::from(theirs);
        assert_eq!((back.status, back.reason.as_str()), (401, "Unauthorized"));
        assert!(same_headers(&back.headers, &ours.headers));
        assert_eq!(back.body, ours.body);

        let mut custom = Response::new(101);
        custom.reason = "Web Socket Protocol Handshake".into();
        let theirs = http::Response::<Bytes>::try_from(custom).unwrap();
        assert_eq!(theirs.status(), http::StatusCode::SWITCHING_PROTOCOLS);
        let back = Response::from(theirs);
        assert_eq!(back.reason, "Web Socket Protocol Handshake");

        // A status without a standard phrase and an empty reason.
        let odd = Response::new(599);
        assert_eq!(odd.reason, "");
        let theirs = http::Response::<Bytes>::try_from(odd).unwrap();
        assert!(theirs.extensions().get::<ReasonPhrase>().is_none());
        assert_eq!(Response::from(theirs).reason, "");
    }

    #[test]
    fn an_http_response_with_any_body_type_converts() {
        let theirs = http::Response::builder()
            .status(503)
            .header("retry-after", "5")
            .body("busy")
            .unwrap();
        let ours = Response::from(theirs);
        assert_eq!(
            (ours.status, ours.reason.as_str()),
            (503, "Service Unavailable")
        );
        assert_eq!(ours.header_str("retry-after"), Some("5"));
        assert_eq!(&ours.body[..], b"busy");
    }

    #[test]
    fn a_status_out_of_range_is_an_error() {
        for status in [0, 42, 99, 1000, u16::MAX] {
            let mut r = Response::new(200);
            r.status = status;
            assert!(http::Response::<Bytes>::try_from(r).is_err(), "{status}");
        }
    }

    proptest! {
        /// Any origin-form target, token method and header list survives
        /// tether -> http -> tether.
        #[test]
        fn request_round_trip_is_lossless(
            method in "[A-Z]{1,10}",
            path in "(/[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,12}){1,4}",
            query in proptest::option::of("[A-Za-z0-9=&._~%-]{0,20}"),
            fields in proptest::collection::vec(("x-[a-z]{1,4}", "[ -~]{0,16}"), 0..8),
        ) {
            let target = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let mut h = HeaderMap::new();
            for (k, v) in &fields {
                let v = v.trim();
                h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                         HeaderValue::from_str(v).unwrap());
            }
            let ours = Request { method: method.clone(), target: target.clone(), headers: h.clone() };
            let back = Request::from(http::Request::try_from(ours).unwrap());
            prop_assert_eq!(back.method, method);
            prop_assert_eq!(back.target, target);
            prop_assert!(same_headers(&back.headers, &h));
        }

        /// Any status, reason and body survives tether -> http -> tether.
        #[test]
        fn response_round_trip_is_lossless(
            status in 100u16..1000,
            reason in proptest::option::of("[ -~]{0,20}"),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut ours = Response::new(status);
            if let Some(r) = reason {
                ours.reason = r;
            }
            ours.body = body.into();
            let back = Response::from(http::Response::<Bytes>::try_from(ours.clone()).unwrap());
            prop_assert_eq!(back.status, ours.status);
            prop_assert_eq!(back.reason, ours.reason);
            prop_assert_eq!(back.body, ours.body);
        }
    }
}
