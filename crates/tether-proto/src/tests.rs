//! Connection scenarios: a client and a server `Connection` driven in memory
//! (in the spirit of quinn-proto's `Pair`), and raw frames for each rule.

use crate::*;
use bytes::{Buf, Bytes};
use proptest::prelude::*;

fn fixed_mask() -> Box<dyn MaskSource> {
    Box::new(|| [0xA1, 0xB2, 0xC3, 0xD4])
}

/// Moves every queued byte from `from` to `to`.
fn pump(from: &mut Connection, to: &mut Connection) {
    let out = from.transmit();
    while out.has_remaining() {
        let c = out.chunk().to_vec();
        out.advance(c.len());
        to.receive(&c);
    }
}

/// Everything the connection has queued for the transport.
fn drain(c: &mut Connection) -> Vec<u8> {
    crate::outgoing::drain(c.transmit())
}

/// A raw frame as a client would send it (masked with a fixed key).
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let mut v = vec![b0];
    match payload.len() {
        n if n < 126 => v.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(0x80 | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    v.extend_from_slice(&key);
    let mut p = payload.to_vec();
    mask::apply_mask(&mut p, key, 0);
    v.extend_from_slice(&p);
    v
}

/// Feeds `bytes` to a fresh server and returns what `next_event` yields
/// until an error or the input runs out, plus the close code queued.
fn server_receives(bytes: &[u8]) -> (Vec<Message>, Option<Error>, Option<u16>) {
    let mut s = Connection::server(ConnectionConfig::default());
    s.receive(bytes);
    let mut msgs = Vec::new();
    let err = loop {
        match s.next_event() {
            Ok(Some(m)) => msgs.push(m),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let out = drain(&mut s);
    let code = close_code_in(&out);
    (msgs, err, code)
}

/// The close code of the last close frame in unmasked server output.
fn close_code_in(out: &[u8]) -> Option<u16> {
    let mut i = 0;
    let mut code = None;
    while i + 2 <= out.len() {
        let (h, hl) = frame::FrameHeader::decode(&out[i..]).ok()??;
        let p = &out[i + hl..i + hl + h.len as usize];
        if h.opcode == frame::OpCode::Close && p.len() >= 2 {
            code = Some(u16::from_be_bytes([p[0], p[1]]));
        }
        i += hl + h.len as usize;
    }
    code
}

fn assert_fails(bytes: &[u8], code: u16) -> Error {
    let (_, err, sent) = server_receives(bytes);
    let err = err.expect("an error");
    assert_eq!(sent, Some(code), "close code for {err}");
    err
}

#[test]
fn test_server_receives_unmasked_frame() {
    let e = assert_fails(&[0x81, 0x02, b'h', b'i'], 1002);
    assert!(matches!(e, Error::Protocol(ProtocolError::UnmaskedFrame)));
}

#[test]
fn test_client_receives_masked_frame() {
    let mut c = Connection::client(ConnectionConfig::default(), fixed_mask());
    c.receive(&client_frame(0x81, b"hi"));
    assert!(matches!(
        c.next_event(),
        Err(Error::Protocol(ProtocolError::MaskedFrame))
    ));
    let out = drain(&mut c);
    // The client's close frame is masked: unmask it to read the code.
    let (h, hl) = frame::FrameHeader::decode(&out).unwrap().unwrap();
    let mut p = out[hl..hl + h.len as usize].to_vec();
    mask::apply_mask(&mut p, h.mask.unwrap(), 0);
    assert_eq!(u16::from_be_bytes([p[0], p[1]]), 1002);
}

#[test]
fn test_rsv_bits_without_extension_fail() {
    for rsv in [0x40, 0x20, 0x10] {
        let e = assert_fails(&client_frame(0x81 | rsv, b"x"), 1002);
        assert!(matches!(e, Error::Protocol(ProtocolError::ReservedBits)));
    }
}

#[test]
fn test_rsv1_allowed_when_negotiated() {
    let mut s = Connection::server(ConnectionConfig::default());
    s.set_negotiated(Negotiated {
        rsv_allowed: [true, false, false],
        ..Negotiated::default()
    });
    s.receive(&client_frame(0xC2, b"x"));
    assert!(s.next_event().is_ok());
}

#[test]
fn test_reserved_opcode_fails() {
    assert_fails(&client_frame(0x83, b""), 1002);
    assert_fails(&client_frame(0x8B, b""), 1002);
}

#[test]
fn test_control_frame_too_long_fails() {
    assert_fails(&client_frame(0x89, &[0; 126]), 1002);
}

#[test]
fn test_fragmented_control_frame_fails() {
    assert_fails(&client_frame(0x09, b"x"), 1002);
}

#[test]
fn test_continuation_without_start_fails() {
    let e = assert_fails(&client_frame(0x80, b"x"), 1002);
    assert!(matches!(
        e,
        Error::Protocol(ProtocolError::UnexpectedContinuation)
    ));
}

#[test]
fn test_new_data_frame_inside_fragmented_message_fails() {
    let mut b = client_frame(0x01, b"a");
    b.extend(client_frame(0x81, b"b"));
    let e = assert_fails(&b, 1002);
    assert!(matches!(
        e,
        Error::Protocol(ProtocolError::ExpectedContinuation)
    ));
}

#[test]
fn test_control_frames_interleave_with_fragments() {
    let mut b = client_frame(0x01, b"Hel");
    b.extend(client_frame(0x89, b"p"));
    b.extend(client_frame(0x00, b"lo "));
    b.extend(client_frame(0x8A, b"q"));
    b.extend(client_frame(0x80, b"world"));
    let (msgs, err, _) = server_receives(&b);
    assert!(err.is_none());
    assert_eq!(
        msgs,
        vec![
            Message::Ping(Bytes::from_static(b"p")),
            Message::Pong(Bytes::from_static(b"q")),
            Message::text("Hello world"),
        ]
    );
}

#[test]
fn test_ping_answered_with_pong() {
    let mut s = Connection::server(ConnectionConfig::default());
    s.receive(&client_frame(0x89, b"abc"));
    assert_eq!(
        s.next_event().unwrap(),
        Some(Message::Ping(Bytes::from_static(b"abc")))
    );
    assert_eq!(drain(&mut s), b"\x8a\x03abc");
}

#[test]
fn test_invalid_utf8_fails_with_1007() {
    let e = assert_fails(&client_frame(0x81, &[0xCE, 0xBA, 0xFF]), 1007);
    assert!(matches!(e, Error::Protocol(ProtocolError::InvalidUtf8)));
}

#[test]
fn test_invalid_utf8_fails_on_first_fragment_not_at_end() {
    // The first fragment is already impossible: fail before the message ends.
    let mut s = Connection::server(ConnectionConfig::default());
    s.receive(&client_frame(0x01, &[0xED, 0xA0, 0x80]));
    assert!(matches!(
        s.next_event(),
        Err(Error::Protocol(ProtocolError::InvalidUtf8))
    ));
}

#[test]
fn test_invalid_utf8_fails_inside_a_partial_frame() {
    // Only part of the frame has arrived, and that part is already invalid.
    let full = client_frame(0x81, &[b'a', 0xFF, b'b', b'c', b'd', b'e']);
    let mut s = Connection::server(ConnectionConfig::default());
    s.receive(&full[..full.len() - 3]);
    assert!(matches!(
        s.next_event(),
        Err(Error::Protocol(ProtocolError::InvalidUtf8))
    ));
}

#[test]
fn test_utf8_split_across_fragments_is_valid() {
    let euro = "€".as_bytes();
    let mut b = client_frame(0x01, &euro[..1]);
    b.extend(client_frame(0x00, &euro[1..2]));
    b.extend(client_frame(0x80, &euro[2..]));
    let (msgs, err, _) = server_receives(&b);
    assert!(err.is_none());
    assert_eq!(msgs, vec![Message::text("€")]);
}

/// Every way a text message reaches `Utf8Bytes::from_validated` (one
/// frame, fragments, compressed in one frame or in fragments) yields the
/// string sent, with code points split across frames and reads, and binary
/// data in between that is not UTF-8.
#[test]
fn test_validated_text_paths_yield_the_text_sent() {
    let text = "aé€𝄞".repeat(40);
    let not_utf8 = Message::binary(vec![0xff, 0xc3]);
    for compressed in [false, true] {
        for fragment in [1, 2, 3, 5, 7, 1000] {
            let (mut c, mut s) = if compressed {
                deflate_pair(deflate::DeflateParams::default())
            } else {
                (
                    Connection::client(ConnectionConfig::default(), fixed_mask()),
                    Connection::server(ConnectionConfig::default()),
                )
            };
            for _ in 0..2 {
                c.send_fragmented(Message::text(text.as_str()), fragment)
                    .unwrap();
                c.send(not_utf8.clone()).unwrap();
            }
            let bytes = drain(&mut c);
            assert_eq!(bytes[0] & 0x40 != 0, compressed, "RSV1 of the first frame");
            let mut got = Vec::new();
            for chunk in bytes.chunks(3) {
                s.receive(chunk);
                while let Some(m) = s.next_event().unwrap() {
                    got.push(m);
                }
            }
            let what = format!("compressed {compressed}, fragments of {fragment}");
            assert_eq!(got.len(), 4, "{what}");
            for pair in got.chunks(2) {
                match &pair[0] {
                    Message::Text(t) => {
                        assert_eq!(t.as_str(), text, "{what}");
                        assert_eq!(t.as_bytes(), text.as_bytes(), "{what}");
                    }
                    other => panic!("{what}: {other:?}"),
                }
                assert_eq!(pair[1], not_utf8, "{what}");
            }
        }
    }
}

#[test]
fn test_text_ending_mid_code_point_fails() {
    let euro = "€".as_bytes();
    assert_fails(&client_frame(0x81, &euro[..2]), 1007);
}

#[test]
fn test_close_codes_validated() {
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        let e = assert_fails(&client_frame(0x88, &code.to_be_bytes()), 1002);
        assert!(matches!(e, Error::Protocol(ProtocolError::InvalidCloseCode(c)) if c == code));
    }
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999,
    ] {
        let (msgs, err, echoed) = server_receives(&client_frame(0x88, &code.to_be_bytes()));
        assert!(err.is_none(), "{code}");
        assert_eq!(msgs[0].close_code(), Some(CloseCode(code)));
        assert_eq!(echoed, Some(code), "the close code is echoed");
    }
}

#[test]
fn test_close_with_one_byte_payload_fails() {
    assert_fails(&client_frame(0x88, &[0x03]), 1002);
}

#[test]
fn test_close_reason_invalid_utf8_fails_with_1007() {
    assert_fails(&client_frame(0x88, &[0x03, 0xE8, 0xFF]), 1007);
}

#[test]
fn test_empty_close_echoed_empty_and_reported_as_1005() {
    let mut s = Connection::server(ConnectionConfig::default());
    s.receive(&client_frame(0x88, b""));
    let m = s.next_event().unwrap().unwrap();
    assert_eq!(m.close_code(), Some(CloseCode::NO_STATUS));
    assert_eq!(drain(&mut s), b"\x88\x00");
    assert_eq!(s.state(), State::Closed);
    assert!(
        s.should_close_transport(),
        "server closes TCP after the handshake"
    );
}

#[test]
fn test_data_after_close_is_ignored() {
    let mut b = client_frame(0x88, &1000u16.to_be_bytes());
    b.extend(client_frame(0x81, b"late"));
    let (msgs, err, _) = server_receives(&b);
    assert!(err.is_none());
    assert_eq!(msgs.len(), 1);
}

#[test]
fn test_sending_reserved_close_codes_is_refused() {
    let mut s = Connection::server(ConnectionConfig::default());
    for code in [1005u16, 1006, 1015, 999, 2000] {
        assert!(
            matches!(s.close(CloseCode(code), ""), Err(Error::InvalidInput(_))),
            "{code}"
        );
    }
    let long = "x".repeat(124);
    assert!(matches!(
        s.close(CloseCode::NORMAL, &long),
        Err(Error::InvalidInput(_))
    ));
    s.close(CloseCode::NORMAL, &long[..123]).unwrap();
    assert!(matches!(s.send(Message::text("x")), Err(Error::Closed)));
}

#[test]
fn test_message_over_limit_fails_with_1009_before_payload_arrives() {
    let config = ConnectionConfig::default().with_max_message_size(1000);
    let mut s = Connection::server(config);
    // Only the header of a 1001-byte frame: no payload yet.
    let f = client_frame(0x82, &[0; 1001]);
    s.receive(&f[..8]);
    let e = s.next_event().unwrap_err();
    assert!(
        matches!(e, Error::Protocol(ProtocolError::FrameTooBig { .. })),
        "{e}"
    );
    assert_eq!(close_code_in(&drain(&mut s)), Some(1009));
}

#[test]
fn test_fragmented_message_over_limit_fails_with_1009() {
    let config = ConnectionConfig::default()
        .with_max_message_size(1000)
        .with_max_frame_size(600);
    let mut s = Connection::server(config);
    s.receive(&client_frame(0x02, &[0; 600]));
    assert_eq!(s.next_event().unwrap(), None);
    let f = client_frame(0x80, &[0; 401]);
    s.receive(&f[..8]);
    let e = s.next_event().unwrap_err();
    assert!(matches!(
        e,
        Error::Protocol(ProtocolError::MessageTooBig {
            size: 1001,
            limit: 1000
        })
    ));
    assert_eq!(close_code_in(&drain(&mut s)), Some(1009));
}

#[test]
fn test_message_at_limit_is_accepted() {
    let config = ConnectionConfig::default().with_max_message_size(1000);
    let mut s = Connection::server(config);
    s.receive(&client_frame(0x82, &[7; 1000]));
    assert_eq!(s.next_event().unwrap().unwrap().len(), 1000);
}

#[test]
fn test_errors_are_sticky() {
    let mut s = Connection::server(ConnectionConfig::default());
    s.receive(&[0x81, 0x00]);
    let e1 = s.next_event().unwrap_err();
    s.receive(&client_frame(0x81, b"ok"));
    let e2 = s.next_event().unwrap_err();
    assert_eq!(e1.to_string(), e2.to_string());
}

#[test]
fn test_eof_without_close_is_abnormal() {
    let mut s = Connection::server(ConnectionConfig::default());
    s.receive(&client_frame(0x81, b"hi")[..3]);
    s.receive_eof();
    assert!(matches!(s.next_event(), Err(Error::AbnormalClosure)));
}

#[test]
fn test_closing_handshake_client_initiated() {
    let mut c = Connection::client(ConnectionConfig::default(), fixed_mask());
    let mut s = Connection::server(ConnectionConfig::default());
    c.close(CloseCode(4001), "bye").unwrap();
    assert_eq!(c.state(), State::Closing);
    pump(&mut c, &mut s);
    let m = s.next_event().unwrap().unwrap();
    assert_eq!(m, Message::Close(Some(CloseFrame::new(4001, "bye"))));
    assert!(s.should_close_transport());
    pump(&mut s, &mut c);
    assert_eq!(
        c.next_event().unwrap().unwrap().close_code(),
        Some(CloseCode(4001))
    );
    assert_eq!(c.state(), State::Closed);
    assert!(
        !c.should_close_transport(),
        "the client waits for the server to close TCP"
    );
}

#[test]
fn test_pair_fragmented_send_and_receive() {
    let mut c = Connection::client(ConnectionConfig::default(), fixed_mask());
    let mut s = Connection::server(ConnectionConfig::default());
    let text = "héllo wörld €".repeat(50);
    c.send_fragmented(Message::text(text.as_str()), 7).unwrap();
    pump(&mut c, &mut s);
    assert_eq!(s.next_event().unwrap(), Some(Message::text(text.as_str())));
}

fn deflate_pair(params: deflate::DeflateParams) -> (Connection, Connection) {
    let mut c = Connection::client(ConnectionConfig::default(), fixed_mask());
    let mut s = Connection::server(ConnectionConfig::default());
    let n = Negotiated {
        deflate: Some(params),
        ..Negotiated::default()
    };
    c.set_negotiated(n);
    s.set_negotiated(n);
    (c, s)
}

#[test]
fn test_deflate_roundtrip_both_ways_with_and_without_context_takeover() {
    let json = r#"{"event":"trade","price":"101.25","qty":3,"note":"héllo wörld"}"#.repeat(20);
    for (snct, cnct) in [(false, false), (true, false), (false, true), (true, true)] {
        let params = deflate::DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: Some(12),
            client_max_window_bits: Some(10),
        };
        let (mut c, mut s) = deflate_pair(params);
        for i in 0..5 {
            let msg = Message::text(format!("{i}{json}"));
            c.send(msg.clone()).unwrap();
            let wire = c.buffered_amount();
            assert!(
                wire < json.len() / 2,
                "compressed: {wire} bytes for {}",
                json.len()
            );
            pump(&mut c, &mut s);
            assert_eq!(s.next_event().unwrap(), Some(msg.clone()));
            s.send(msg.clone()).unwrap();
            pump(&mut s, &mut c);
            assert_eq!(c.next_event().unwrap(), Some(msg));
        }
        // Fragmented compressed message; control frames interleave.
        c.send_fragmented(Message::binary(vec![7u8; 50_000]), 100)
            .unwrap();
        pump(&mut c, &mut s);
        assert_eq!(
            s.next_event().unwrap(),
            Some(Message::binary(vec![7u8; 50_000]))
        );
    }
}

#[test]
fn test_deflate_small_messages_below_threshold_are_not_compressed() {
    let (mut c, mut s) = deflate_pair(deflate::DeflateParams::default());
    c.send(Message::text("hi")).unwrap();
    let bytes = drain(&mut c);
    assert_eq!(bytes[0] & 0x40, 0, "RSV1 clear");
    s.receive(&bytes);
    assert_eq!(s.next_event().unwrap(), Some(Message::text("hi")));
    // Control frames are never compressed.
    s.send(Message::Ping(Bytes::from(vec![b'p'; 125]))).unwrap();
    assert_eq!(drain(&mut s)[0], 0x89);
}

#[test]
fn test_deflate_rsv1_on_continuation_or_control_fails() {
    let (_, mut s) = deflate_pair(deflate::DeflateParams::default());
    let mut b = client_frame(0x01, b"a");
    b.extend(client_frame(0xC0, b"b")); // FIN + RSV1 on a continuation
    s.receive(&b);
    assert!(matches!(
        s.next_event(),
        Err(Error::Protocol(ProtocolError::ReservedBits))
    ));
    let (_, mut s) = deflate_pair(deflate::DeflateParams::default());
    s.receive(&client_frame(0xC9, b"x")); // RSV1 on a ping
    assert!(matches!(
        s.next_event(),
        Err(Error::Protocol(ProtocolError::ReservedBits))
    ));
}

#[test]
fn test_deflate_bomb_fails_with_1009_while_inflating() {
    let mut s = Connection::server(ConnectionConfig::default().with_max_message_size(1 << 20));
    s.set_negotiated(Negotiated {
        deflate: Some(deflate::DeflateParams::default()),
        ..Negotiated::default()
    });
    let bomb = deflate::Deflater::new(9, 15, false).compress(&vec![0u8; 64 << 20]);
    s.receive(&client_frame(0xC2, &bomb));
    let e = s.next_event().unwrap_err();
    assert!(
        matches!(e, Error::Protocol(ProtocolError::MessageTooBig { .. })),
        "{e}"
    );
    assert_eq!(close_code_in(&drain(&mut s)), Some(1009));
}

#[test]
fn test_deflate_invalid_utf8_after_inflating_fails_with_1007() {
    let (_, mut s) = deflate_pair(deflate::DeflateParams::default());
    let z = deflate::Deflater::new(6, 15, false).compress(&[b'a', 0xFF, b'b']);
    s.receive(&client_frame(0xC1, &z));
    assert!(matches!(
        s.next_event(),
        Err(Error::Protocol(ProtocolError::InvalidUtf8))
    ));
    assert_eq!(close_code_in(&drain(&mut s)), Some(1007));
}

#[test]
fn test_deflate_corrupt_data_fails_with_1002() {
    let (_, mut s) = deflate_pair(deflate::DeflateParams::default());
    s.receive(&client_frame(0xC2, &[0xff; 20]));
    assert!(matches!(
        s.next_event(),
        Err(Error::Protocol(ProtocolError::Deflate(_)))
    ));
    assert_eq!(close_code_in(&drain(&mut s)), Some(1002));
}

proptest! {
    #[test]
    fn roundtrip_any_message_any_split(
        data in proptest::collection::vec(any::<u8>(), 0..70_000),
        text in any::<bool>(),
        frag in 1usize..100_000,
        chunk in 1usize..5000,
        from_client in any::<bool>(),
    ) {
        let msg = if text {
            Message::text(String::from_utf8_lossy(&data).into_owned())
        } else {
            Message::binary(data.clone())
        };
        let (mut a, mut b) = if from_client {
            (Connection::client(ConnectionConfig::default(), fixed_mask()), Connection::server(ConnectionConfig::default()))
        } else {
            (Connection::server(ConnectionConfig::default()), Connection::client(ConnectionConfig::default(), fixed_mask()))
        };
        a.send_fragmented(msg.clone(), frag).unwrap();
        let bytes = drain(&mut a);
        let mut got = None;
        for piece in bytes.chunks(chunk) {
            b.receive(piece);
            if let Some(m) = b.next_event().unwrap() {
                got = Some(m);
            }
        }
        prop_assert_eq!(got, Some(msg));
    }

    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), client in any::<bool>()) {
        let mut c = if client {
            Connection::client(ConnectionConfig::default(), fixed_mask())
        } else {
            Connection::server(ConnectionConfig::default())
        };
        c.receive(&data);
        for _ in 0..64 {
            match c.next_event() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = drain(&mut c);
    }
}
