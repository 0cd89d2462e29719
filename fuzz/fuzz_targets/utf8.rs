//! tether-proto's streaming UTF-8 validator against `std::str::from_utf8`:
//! fed the payload in arbitrary pieces, each `feed` succeeds exactly when
//! the bytes so far are valid UTF-8 or a valid prefix of it (RFC 6455 §8.1
//! fail-fast), and `finish` exactly when the whole payload is valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_fuzz::Input;
use tether_proto::utf8::Utf8Validator;
use tether_proto::Utf8Bytes;

/// Whether `bytes` is valid UTF-8 or could still become valid with more
/// bytes, by `std`.
fn prefix_ok(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let payload = input.payload;
    let mut v = Utf8Validator::new();
    let mut seen = 0;
    let mut failed = false;
    for piece in input.chunks() {
        seen += piece.len();
        let ok = v.feed(piece).is_ok();
        assert_eq!(
            ok,
            prefix_ok(&payload[..seen]),
            "feed disagrees with std after {seen} bytes"
        );
        if !ok {
            failed = true;
            break;
        }
    }
    let whole = std::str::from_utf8(payload).is_ok();
    if !failed {
        assert_eq!(v.finish().is_ok(), whole, "finish disagrees with std");
        // The validator is ready for the next message.
        assert!(v.feed("é".as_bytes()).is_ok() && v.finish().is_ok());
    }
    assert_eq!(
        Utf8Bytes::try_from_bytes(bytes::Bytes::copy_from_slice(payload)).is_ok(),
        whole
    );
});
