//! The server side of the opening handshake: `ServerHandshake::receive`
//! fed arbitrary bytes in arbitrary pieces, then `validate`.
//!
//! Checks: the outcome does not depend on the splits; a request keeps the
//! header limits and leaves exactly the bytes after its head; every error
//! maps to one of the statuses the server answers with, and the rejection
//! is a valid HTTP response (read back with `ResponseReader`, with
//! `Sec-WebSocket-Version: 13` on a 426, RFC 6455 §4.4); a valid request's
//! 101 is accepted by our client handshake given the same key (RFC 6455
//! §4.2.2), with the subprotocol the server chose.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use tether_fuzz::Input;
use tether_proto::handshake::{
    ClientHandshake, ClientRequest, Progress, Request, ResponseProgress, ResponseReader,
    ServerHandshake, MAX_HEADERS,
};
use tether_proto::HandshakeError;

/// The request and leftover, or the error (as `Debug`: it has no
/// `PartialEq`); `None` when the head never completed.
type Outcome = Option<Result<(Request, bytes::Bytes), String>>;

/// `chunks` fed in turn; the leftover of a request also gets the pieces
/// that were not fed (they belong to the connection as well).
fn read(chunks: &[&[u8]]) -> (Outcome, Option<HandshakeError>) {
    let mut hs = ServerHandshake::new();
    for (i, piece) in chunks.iter().enumerate() {
        match hs.receive(piece) {
            Ok(None) => {}
            Ok(Some((request, leftover))) => {
                let mut all = leftover.to_vec();
                chunks[i + 1..]
                    .iter()
                    .for_each(|c| all.extend_from_slice(c));
                return (Some(Ok((request, all.into()))), None);
            }
            Err(e) => return (Some(Err(format!("{e:?}"))), Some(e)),
        }
    }
    (None, None)
}

fn summary(o: &Outcome) -> Option<Result<String, String>> {
    o.as_ref().map(|r| match r {
        Ok((req, left)) => Ok(format!(
            "{} {} {:?} {:?}",
            req.method, req.target, req.headers, left
        )),
        Err(e) => Err(e.clone()),
    })
}

fn check_rejection(e: &HandshakeError) {
    let status = e.http_status();
    assert!(
        [400, 405, 414, 426, 431, 505].contains(&status),
        "{e:?} -> {status}"
    );
    let bytes = ServerHandshake::reject(e).to_bytes();
    let mut reader = ResponseReader::new();
    let head = match reader.receive(&bytes) {
        Ok(ResponseProgress::Head(head)) => head,
        other => panic!("the rejection of {e:?} does not read back: {other:?}"),
    };
    assert_eq!(head.status, status);
    if status == 426 {
        assert_eq!(head.header_str("sec-websocket-version"), Some("13"));
    }
    match reader.read_body(head) {
        ResponseProgress::Complete(r) => assert!(r.body.starts_with(b"Failed")),
        other => panic!("the rejection's body does not read back: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let (split, split_err) = read(&input.chunks());
    let (whole, _) = read(&[input.payload]);
    assert_eq!(
        summary(&split),
        summary(&whole),
        "outcome depends on the splits"
    );
    if let Some(e) = split_err {
        check_rejection(&e);
    }
    let Some(Ok((request, leftover))) = split else {
        return;
    };
    assert!(request.headers.len() <= MAX_HEADERS);
    assert!(
        input.payload.ends_with(&leftover),
        "leftover is what followed"
    );
    assert!(request.method.bytes().all(|b| b.is_ascii_graphic()));

    let offer = match ServerHandshake::validate(&request) {
        Ok(offer) => offer,
        Err(e) => {
            check_rejection(&e);
            return;
        }
    };
    assert_eq!(request.method, "GET");
    let key: [u8; 16] = base64::engine::general_purpose::STANDARD
        .decode(&offer.key)
        .expect("a valid key is base64")
        .try_into()
        .expect("of 16 bytes");
    // Our server picks the client's first subprotocol; our client, with the
    // same key and subprotocols, must accept that 101.
    let chosen = offer.select_subprotocol(&offer.subprotocols);
    let response = offer.accept(chosen).to_bytes();
    let client_request = ClientRequest {
        host: "h".into(),
        subprotocols: offer.subprotocols.clone(),
        ..Default::default()
    };
    let mut client = ClientHandshake::new(&client_request, key);
    match client.receive(&response) {
        Ok(Progress::Done(acc)) => {
            assert_eq!(acc.subprotocol.as_deref(), chosen);
            assert!(acc.leftover.is_empty());
        }
        other => panic!("our client refuses our 101: {other:?}"),
    }
});
