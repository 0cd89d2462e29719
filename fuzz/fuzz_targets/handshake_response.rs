//! The client side of the opening handshake: after a real request,
//! `ClientHandshake` fed an arbitrary response in arbitrary pieces (then,
//! maybe, EOF); and the `ResponseReader` under it, with the limits and the
//! HTTP/1.0 switch the first bytes choose.
//!
//! Checks: the outcome does not depend on the splits; a handshake accepted
//! has a 101 with the right `Sec-WebSocket-Accept`, a subprotocol and an
//! extension that were offered (RFC 6455 §4.1), and leaves exactly the
//! bytes after the head; a refusal keeps at most `MAX_BODY_KEPT` bytes of
//! body; a head stays within `max_head` and `max_headers`, and a body is
//! never longer than the bytes that followed the head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_fuzz::Input;
use tether_proto::deflate::DeflateConfig;
use tether_proto::handshake::{
    accept_key, ClientHandshake, ClientRequest, Progress, ResponseProgress, ResponseReader,
    MAX_BODY_KEPT,
};
use tether_proto::{Connection, ConnectionConfig, HandshakeError};

const KEY: [u8; 16] = *b"0123456789abcdef";
const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZg==";

fn handshake(a: u8, payload: &[u8], chunks: &[&[u8]], eof: bool) -> String {
    let subprotocols = if a & 1 != 0 {
        vec!["chat".to_string(), "superchat".to_string()]
    } else {
        Vec::new()
    };
    let compression = (a & 2 != 0).then(|| {
        let mut c = DeflateConfig::default();
        c.server_no_context_takeover = a & 4 != 0;
        c.server_max_window_bits = (a & 8 != 0).then_some(10);
        c.client_max_window_bits = (a & 16 != 0).then_some(12);
        c
    });
    let req = ClientRequest {
        host: "example.com".into(),
        target: "/chat".into(),
        subprotocols: subprotocols.clone(),
        compression,
        ..Default::default()
    };
    let mut hs = ClientHandshake::new(&req, KEY);
    assert!(hs.request().starts_with(b"GET /chat HTTP/1.1\r\n"));
    let mut fed = Vec::new();
    let mut result = Ok(Progress::NeedMore);
    for piece in chunks {
        fed.extend_from_slice(piece);
        result = hs.receive(piece);
        if !matches!(result, Ok(Progress::NeedMore)) {
            break;
        }
    }
    if eof && matches!(result, Ok(Progress::NeedMore)) {
        result = hs.receive_eof();
    }
    match &result {
        Ok(Progress::NeedMore) => {}
        Ok(Progress::Done(acc)) => {
            assert_eq!(acc.response.status, 101);
            assert_eq!(
                acc.response.header_str("sec-websocket-accept"),
                Some(accept_key(KEY_B64).as_str())
            );
            if let Some(p) = &acc.subprotocol {
                assert!(subprotocols.contains(p), "{p} was not offered");
            }
            if acc.negotiated.deflate.is_some() {
                assert!(compression.is_some(), "deflate was not offered");
            }
            assert!(fed.ends_with(&acc.leftover), "leftover is what followed");
            // The connection takes what was negotiated.
            let mut c = Connection::client(ConnectionConfig::default(), Box::new(|| [1, 2, 3, 4]));
            c.set_negotiated(acc.negotiated);
            c.receive(&acc.leftover);
            let _ = c.next_event();
        }
        Err(HandshakeError::Status(r)) => {
            assert_ne!(r.status, 101);
            assert!(r.body.len() <= MAX_BODY_KEPT);
        }
        Err(_) => {}
    }
    // What followed in later pieces belongs to the connection too.
    if let Ok(Progress::Done(acc)) = &mut result {
        let mut all = acc.leftover.to_vec();
        all.extend_from_slice(&payload[fed.len()..]);
        acc.leftover = all.into();
    }
    format!("{result:?}")
}

/// What the reader made of the input.
struct Read {
    /// The events, shown.
    shown: String,
    /// The head's length, when the leftover was taken after it.
    head_len: Option<usize>,
    /// The body's length, when the body was read.
    body_len: Option<usize>,
}

/// The reader alone, with the limits `b` chooses: the head, then either
/// the leftover (`take`) or the body, however it ends.
fn reader(a: u8, b: u8, chunks: &[&[u8]], eof: bool, take: bool) -> Read {
    let max_head = [usize::MAX, 8192, 64, 1][usize::from(b & 3)];
    let max_headers = [128, 64, 1, 0][usize::from((b >> 2) & 3)];
    let mut r = ResponseReader::new()
        .max_head(max_head)
        .max_headers(max_headers);
    if a & 32 != 0 {
        r = r.accept_http_1_0();
    }
    let mut out = Read {
        shown: String::new(),
        head_len: None,
        body_len: None,
    };
    let mut fed = 0;
    let mut in_body = false;
    let mut last = ResponseProgress::NeedMore;
    for piece in chunks {
        fed += piece.len();
        let progress = match r.receive(piece) {
            Ok(p) => p,
            Err(e) => {
                assert!(!in_body, "reading a body never fails");
                out.shown = format!("{e:?}");
                return out;
            }
        };
        last = match progress {
            ResponseProgress::Head(head) => {
                assert!(!in_body);
                assert!(head.headers.len() <= max_headers.min(128));
                assert!((100..=599).contains(&head.status), "RFC 9110 §15");
                if take {
                    let leftover = r.take_leftover();
                    let len = fed - leftover.len();
                    assert!(len <= max_head, "head of {len} over {max_head}");
                    out.head_len = Some(len);
                    out.shown = format!("{head:?}");
                    return out;
                }
                in_body = true;
                r.read_body(head)
            }
            p => p,
        };
        if let ResponseProgress::Complete(_) = last {
            break;
        }
    }
    if eof && in_body && matches!(last, ResponseProgress::NeedMore) {
        last = r.receive_eof().expect("EOF ends a body");
    }
    if let ResponseProgress::Complete(done) = &last {
        assert!(done.body.len() <= MAX_BODY_KEPT);
        if matches!(done.status, 100..=199 | 204 | 304) {
            assert!(done.body.is_empty(), "RFC 9112 §6.3: no body");
        }
        out.body_len = Some(done.body.len());
    }
    out.shown = format!("{last:?}");
    out
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let eof = input.b & 0x80 != 0;
    let chunks = input.chunks();
    assert_eq!(
        handshake(input.a, input.payload, &chunks, eof),
        handshake(input.a, input.payload, &[input.payload], eof),
        "handshake outcome depends on the splits"
    );
    let [head, body] = [true, false].map(|take| {
        let split = reader(input.a, input.b, &chunks, eof, take);
        let whole = reader(input.a, input.b, &[input.payload], eof, take);
        assert_eq!(
            split.shown, whole.shown,
            "reader outcome depends on the splits"
        );
        split
    });
    if let (Some(head_len), Some(body_len)) = (head.head_len, body.body_len) {
        let after = input.payload.len() - head_len;
        assert!(body_len <= after, "a body of {body_len} from {after} bytes");
    }
});
