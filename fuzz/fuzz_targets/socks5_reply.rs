//! A SOCKS5 proxy's answers (RFC 1928, RFC 1929): `Proxy::tunnel_over` (the
//! code behind every `socks5://` and `socks5h://` proxy) over an in-memory
//! stream that gives arbitrary answers in arbitrary reads, then EOF, with
//! or without credentials, to a host name or an IPv4 or IPv6 address.
//!
//! Checks, against a model of the exchange written from the RFCs: the
//! outcome (tunnel, or the error's kind and whether it is an authentication
//! refusal); a tunnel is open after exactly the bytes of the answers, not
//! one more (the rest is the target's); what was written is the greeting,
//! the RFC 1929 request when the proxy asks for it, and the CONNECT request
//! for the target; errors are the proxy's, name a failure reply's code, and
//! never show the password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::proxy::Proxy;
use tether::ErrorKind;
use tether_fuzz::{runtime, Input, MemStream};

/// What the model expects.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    /// A tunnel, after this many bytes of answers.
    Tunnel(usize),
    /// An error of this kind; true for an authentication refusal.
    Error(ErrorKind, bool),
}

/// RFC 1928 §3, §6 and RFC 1929 §2: what a client that offered "no
/// authentication" (and "username/password" with `creds`) must make of
/// `answer`.
fn model(answer: &[u8], creds: bool) -> Expected {
    let eof = Expected::Error(ErrorKind::Connect, false);
    let bad = Expected::Error(ErrorKind::Handshake, false);
    let mut at = 0;
    let mut take = |n: usize| {
        let got = answer.get(at..at + n);
        at += n;
        got
    };
    // Method selection: VER, METHOD.
    let Some(&[ver, method]) = take(2) else {
        return eof;
    };
    if ver != 5 {
        return bad;
    }
    match (method, creds) {
        (0x00, _) => {}
        (0x02, true) => {
            let Some(&[ver, status]) = take(2) else {
                return eof;
            };
            if ver != 1 {
                return bad;
            }
            if status != 0 {
                return Expected::Error(ErrorKind::Handshake, true);
            }
        }
        (0xFF, false) => return Expected::Error(ErrorKind::Handshake, true),
        _ => return bad,
    }
    // The reply: VER, REP, RSV, ATYP, BND.ADDR, BND.PORT.
    let Some(&[ver, rep]) = take(2) else {
        return eof;
    };
    if ver != 5 {
        return bad;
    }
    match rep {
        0 => {}
        // General failure, network or host unreachable, refused, TTL
        // expired: worth another try.
        1 | 3..=6 => return Expected::Error(ErrorKind::Connect, false),
        _ => return bad,
    }
    let Some(&[_rsv, atyp]) = take(2) else {
        return eof;
    };
    let rest = match atyp {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let Some(&[len]) = take(1) else { return eof };
            usize::from(len) + 2
        }
        _ => return bad,
    };
    if take(rest).is_none() {
        return eof;
    }
    Expected::Tunnel(at)
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let creds = input.a & 1 != 0;
    let (host, address): (&str, &[u8]) = match (input.a >> 1) % 3 {
        0 => ("example.com", b"\x03\x0bexample.com"),
        1 => ("192.0.2.7", &[1, 192, 0, 2, 7]),
        _ => (
            "2001:db8::1",
            &[
                4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            ],
        ),
    };
    let url = if creds {
        "socks5h://alice:hunter2@127.0.0.1:1080"
    } else {
        "socks5h://127.0.0.1:1080"
    };
    let proxy = Proxy::parse(url).expect("a proxy URL");
    let mut stream = MemStream::new(input.payload, input.lens);
    let result = runtime()
        .block_on(proxy.tunnel_over(&mut stream, host, 8443, None))
        .map(|_| ());

    let expected = model(input.payload, creds);
    let got = match &result {
        Ok(_) => Expected::Tunnel(stream.pos),
        Err(e) => Expected::Error(e.kind(), e.is_auth_refused()),
    };
    assert_eq!(got, expected, "{result:?}");

    // What was written: the greeting, the credentials if the proxy chose
    // them, the CONNECT request if it got that far.
    let greeting: &[u8] = if creds { &[5, 2, 0, 2] } else { &[5, 1, 0] };
    let w = &stream.written[..];
    assert!(w.starts_with(greeting), "{w:?}");
    let mut rest = &w[greeting.len()..];
    let auth = b"\x01\x05alice\x07hunter2";
    if creds && input.payload.get(..2) == Some(&[5, 2]) {
        assert!(rest.starts_with(auth), "{w:?}");
        rest = &rest[auth.len()..];
    }
    if !rest.is_empty() {
        let mut connect = vec![5, 1, 0];
        connect.extend_from_slice(address);
        connect.extend_from_slice(&8443u16.to_be_bytes());
        assert_eq!(rest, &connect[..], "{w:?}");
    }
    if let Err(e) = &result {
        assert!(e.is_proxy(), "{e}");
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let rep = match (creds, input.payload) {
            (_, [5, 0, 5, rep, ..]) | (true, [5, 2, 1, 0, 5, rep, ..]) if *rep != 0 => Some(*rep),
            _ => None,
        };
        if let Some(rep) = rep {
            assert!(shown.contains(&format!("reply {rep}")), "{shown}");
        }
    }
});
