//! permessage-deflate negotiation (RFC 7692 §7.1): `Sec-WebSocket-Extensions`
//! offers and responses from arbitrary text, on both sides.
//!
//! Checks: `parse_extensions` yields non-empty names and never a `,` or `;`
//! inside a name or parameter; the parameters a server agrees to are within
//! RFC 7692's ranges, honour its own configuration, and its answer
//! (`to_header`) reads back as the same parameters; a client accepts only
//! what it offered (nothing at all without an offer) and never an answer
//! over its limits; a connection set up with what either side agreed uses
//! it; and our client's own offer, for any configuration, is accepted by
//! our server, and the server's answer by our client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_fuzz::Input;
use tether_proto::deflate::{
    client_accept, parse_extensions, server_negotiate, DeflateConfig, DeflateParams, NAME,
};
use tether_proto::{Connection, ConnectionConfig, Negotiated};

/// A configuration from one byte, with window bits in the documented 9-15.
fn config(byte: u8) -> DeflateConfig {
    let bits = |n: u8| match n & 7 {
        0 => None,
        n => Some(8 + n),
    };
    let mut c = DeflateConfig::default();
    c.server_max_window_bits = bits(byte);
    c.client_max_window_bits = bits(byte >> 3);
    c.server_no_context_takeover = byte & 0x40 != 0;
    c.client_no_context_takeover = byte & 0x80 != 0;
    c
}

fn check_bits(b: Option<u8>) {
    if let Some(b) = b {
        assert!((8..=15).contains(&b), "window bits {b}");
    }
}

/// What a client configured with `offered` may accept (RFC 7692 §7.1).
fn check_accepted(q: &DeflateParams, offered: &DeflateConfig) {
    check_bits(q.server_max_window_bits);
    if let (Some(b), Some(ours)) = (q.server_max_window_bits, offered.server_max_window_bits) {
        assert!(b <= ours, "server window {b} over the {ours} offered");
    }
    if let Some(b) = q.client_max_window_bits {
        assert!((9..=15).contains(&b), "client window {b}");
    }
    if let (Some(b), Some(ours)) = (q.client_max_window_bits, offered.client_max_window_bits) {
        assert!(b <= ours, "client window {b} over our {ours}");
    }
    if offered.server_no_context_takeover {
        assert!(q.server_no_context_takeover);
    }
    if offered.client_no_context_takeover {
        assert!(q.client_no_context_takeover);
    }
}

/// A connection (a client's or a server's) set up with `p` uses `p`.
fn connection_takes(p: DeflateParams, client: bool) {
    let mut c = if client {
        Connection::client(ConnectionConfig::default(), Box::new(|| [0; 4]))
    } else {
        Connection::server(ConnectionConfig::default())
    };
    c.set_negotiated(Negotiated {
        deflate: Some(p),
        ..Negotiated::default()
    });
    assert_eq!(c.deflate(), Some(p));
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let server_cfg = config(input.a);
    let client_cfg = config(input.b);

    // Our own offer and answer agree, for any configuration.
    let offer = client_cfg.client_offer();
    let agreed = server_negotiate([offer.as_str()], &server_cfg)
        .unwrap_or_else(|| panic!("our server declines our offer {offer:?}"));
    let answer = agreed.to_header();
    let accepted = client_accept([answer.as_str()], Some(&client_cfg))
        .unwrap_or_else(|e| panic!("our client refuses {answer:?} to {offer:?}: {e:?}"))
        .expect("an answer");
    check_accepted(&accepted, &client_cfg);

    // Arbitrary header values: the payload's lines.
    let text = String::from_utf8_lossy(input.payload);
    let values: Vec<&str> = text.split('\n').collect();
    for value in &values {
        for (name, params) in parse_extensions(value) {
            assert!(!name.is_empty() && !name.contains([',', ';']));
            for (k, v) in params {
                assert!(!k.contains([',', ';']) && !v.is_some_and(|v| v.contains([',', ';'])));
            }
        }
    }

    // As a server.
    if let Some(p) = server_negotiate(values.iter().copied(), &server_cfg) {
        check_bits(p.server_max_window_bits);
        check_bits(p.client_max_window_bits);
        assert_ne!(
            p.server_max_window_bits,
            Some(8),
            "zlib cannot compress with 8"
        );
        if let (Some(b), Some(ours)) = (p.server_max_window_bits, server_cfg.server_max_window_bits)
        {
            assert!(b <= ours);
        }
        if server_cfg.server_no_context_takeover {
            assert!(p.server_no_context_takeover);
        }
        if server_cfg.client_no_context_takeover {
            assert!(p.client_no_context_takeover);
        }
        // The answer reads back as the same parameters.
        let header = p.to_header();
        let parsed = parse_extensions(&header);
        assert_eq!(parsed.len(), 1, "{header}");
        assert_eq!(parsed[0].0, NAME);
        let mut permissive = DeflateConfig::default();
        permissive.client_max_window_bits = Some(15);
        match p.client_max_window_bits {
            // Our client never offers 8 (its compressor cannot), so it
            // refuses it; any other answer of ours it takes as it is.
            Some(8) => {}
            _ => {
                let q = client_accept([header.as_str()], Some(&permissive))
                    .unwrap_or_else(|e| panic!("{header:?} does not read back: {e:?}"))
                    .expect("an answer");
                assert_eq!(
                    q,
                    DeflateParams {
                        client_max_window_bits: p.client_max_window_bits.or(Some(15)),
                        ..p
                    }
                );
            }
        }
        connection_takes(p, false);
    }

    // As a client, with and without an offer.
    match client_accept(values.iter().copied(), None) {
        Ok(None) | Err(_) => {}
        Ok(Some(q)) => panic!("accepted {q:?} without an offer"),
    }
    if let Ok(Some(q)) = client_accept(values.iter().copied(), Some(&client_cfg)) {
        check_accepted(&q, &client_cfg);
        connection_takes(q, true);
    }
});
