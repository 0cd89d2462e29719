//! An HTTP proxy's answer to `CONNECT`: `Proxy::tunnel_over` (the code
//! behind every `http://` proxy) over an in-memory stream that gives an
//! arbitrary answer in arbitrary reads, then EOF; and the `ResponseReader`
//! in the configuration it uses (`max_head(8192)`, `max_headers(64)`,
//! `accept_http_1_0()`) fed the same bytes in pieces.
//!
//! Checks: the tunnel opens only after a 2xx head with nothing after it in
//! what was read (RFC 9110 §9.3.6), and the head reads back so; a refusal
//! keeps its non-2xx status and at most `MAX_BODY_KEPT` bytes of body, and
//! is an authentication refusal exactly for 401 and 407; a connection
//! error only at EOF; every error says it is the proxy's and never shows
//! the password; exactly one `CONNECT` was written. The reader alone: the
//! outcome does not depend on the splits, a head is at most 8192 bytes with
//! at most 64 fields, a body at most `MAX_BODY_KEPT` bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::proxy::{Proxy, MAX_CONNECT_HEAD};
use tether::ErrorKind;
use tether_fuzz::{runtime, Input, MemStream};
use tether_proto::handshake::{ResponseProgress, ResponseReader, MAX_BODY_KEPT};

/// The CONNECT reader's limit on header fields (`proxy/http.rs`).
const MAX_CONNECT_HEADERS: usize = 64;

fn connect_reader() -> ResponseReader {
    ResponseReader::new()
        .max_head(MAX_CONNECT_HEAD)
        .max_headers(MAX_CONNECT_HEADERS)
        .accept_http_1_0()
}

/// The reader alone: the head, then the leftover (`take`, as for a 2xx) or
/// the body (as for a refusal), then EOF.
fn read(chunks: &[&[u8]], take: bool) -> String {
    let mut r = connect_reader();
    let mut fed = 0;
    let mut in_body = false;
    for piece in chunks {
        fed += piece.len();
        let progress = match r.receive(piece) {
            Ok(p) => p,
            Err(e) => return format!("{e:?}"),
        };
        let progress = match progress {
            ResponseProgress::Head(head) => {
                assert!(head.headers.len() <= MAX_CONNECT_HEADERS);
                if take {
                    let leftover = r.take_leftover();
                    assert!(fed - leftover.len() <= MAX_CONNECT_HEAD);
                    return format!("{head:?}");
                }
                in_body = true;
                r.read_body(head)
            }
            p => p,
        };
        if let ResponseProgress::Complete(done) = progress {
            assert!(done.body.len() <= MAX_BODY_KEPT);
            return format!("{done:?}");
        }
    }
    match r.receive_eof() {
        Ok(ResponseProgress::Complete(done)) => {
            assert!(in_body);
            assert!(done.body.len() <= MAX_BODY_KEPT);
            format!("{done:?}")
        }
        other => format!("{other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let chunks = input.chunks();
    for take in [false, true] {
        assert_eq!(
            read(&chunks, take),
            read(&[input.payload], take),
            "the reader's outcome depends on the splits"
        );
    }

    // With credentials, "hunter2" is our secret and must never show; without,
    // a body that happens to contain it is the proxy's text, not a leak.
    let with_credentials = input.a & 1 != 0;
    let url = if with_credentials {
        "http://alice:hunter2@127.0.0.1:3128"
    } else {
        "http://127.0.0.1:3128"
    };
    let proxy = Proxy::parse(url).expect("a proxy URL");
    let mut stream = MemStream::new(input.payload, input.lens);
    let result = runtime()
        .block_on(proxy.tunnel_over(&mut stream, "example.com", 443, Some("fuzz")))
        .map(|_| ());
    let request = String::from_utf8(stream.written.clone()).expect("an ASCII request");
    assert!(request.starts_with("CONNECT example.com:443 HTTP/1.1\r\n"));
    assert_eq!(request.matches("\r\n\r\n").count(), 1);
    assert!(request.ends_with("\r\n\r\n"));
    let consumed = &input.payload[..stream.pos];
    match result {
        Ok(_) => {
            let mut r = connect_reader();
            match r.receive(consumed) {
                Ok(ResponseProgress::Head(head)) => {
                    assert!((200..300).contains(&head.status), "{}", head.status);
                    assert!(r.take_leftover().is_empty(), "bytes after the 2xx");
                }
                other => panic!("a tunnel after {other:?}"),
            }
        }
        Err(e) => {
            assert!(e.is_proxy(), "{e}");
            let shown = format!("{e} {e:?}");
            assert!(!with_credentials || !shown.contains("hunter2"), "{shown}");
            match e.kind() {
                ErrorKind::HttpStatus => {
                    let status = e.status().expect("a status");
                    assert!(!(200..300).contains(&status));
                    let response = e.response().expect("the response");
                    assert_eq!(response.status, status);
                    assert!(response.body.len() <= MAX_BODY_KEPT);
                    assert_eq!(e.is_auth_refused(), matches!(status, 401 | 407));
                }
                ErrorKind::Connect => {
                    assert_eq!(
                        stream.pos,
                        input.payload.len(),
                        "a lost connection before EOF: {e}"
                    )
                }
                ErrorKind::Handshake => assert!(!e.is_auth_refused()),
                other => panic!("{other:?}: {e}"),
            }
        }
    }
});
