#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets: real handshakes, frames and
proxy answers, in the targets' input format (see fuzz/src/lib.rs):
[a, b, n, lens[0..n % 8], payload...]. Run from anywhere; the seeds go
beside this script, one folder per target."""

import base64
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def seed(target, name, payload, a=0, b=0, lens=b""):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    data = bytes([a, b, len(lens)]) + bytes(lens) + payload
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data)


def accept(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def mask(payload, key=b"\x37\xfa\x21\x3d"):
    return bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def frame(opcode, payload, fin=True, rsv1=False, masked=False):
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([m | 127]) + n.to_bytes(8, "big")
    if masked:
        key = b"\x37\xfa\x21\x3d"
        return head + key + mask(payload, key)
    return head + payload


# RFC 7692 §7.2.3.1: "Hello" compressed, and the same in a BFINAL block.
HELLO_DEFLATED = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
HELLO_BFINAL = bytes([0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00])


def frames(masked):
    f = lambda *a, **k: frame(*a, masked=masked, **k)
    close = (1000).to_bytes(2, "big") + b"bye"
    return {
        "text": f(1, "Hello, wörld €".encode()),
        "fragmented": f(1, b"Hel", fin=False) + f(9, b"ping") + f(0, b"lo"),
        "binary_close": f(2, bytes(range(200))) + f(8, close),
        "ping_pong": f(9, b"") + f(10, b"x" * 125),
        "deflated": f(1, HELLO_DEFLATED, rsv1=True)
        + f(2, HELLO_BFINAL, rsv1=True)
        + f(1, HELLO_DEFLATED[:3], rsv1=True, fin=False)
        + f(0, HELLO_DEFLATED[3:]),
        "long": f(2, b"z" * 300),
    }


def main():
    # frame_server: masked client frames; frame_client: unmasked.
    for target, masked in [("frame_server", True), ("frame_client", False)]:
        for name, payload in frames(masked).items():
            deflate = name == "deflated"
            # a: bit 0 deflate; bits 6-7: 1 MiB limit. b: echo (bit 2).
            seed(target, name, payload, a=(1 if deflate else 0) | 0xC0, b=0x04)
            seed(target, name + "_split", payload, a=(1 if deflate else 0) | 0x40,
                 b=0x34, lens=b"\x01\x03\x07")

    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    request = (
        b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    seed("handshake_request", "rfc6455", request + frame(1, b"hi", masked=True))
    seed("handshake_request", "rfc6455_split", request, lens=b"\x05\x11")
    seed("handshake_request", "version_8", request.replace(b"Version: 13", b"Version: 8"))

    # The key the handshake_response target sends: b"0123456789abcdef".
    acc = accept(base64.b64encode(b"0123456789abcdef"))
    ok = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n\r\n"
    )
    seed("handshake_response", "accepted", ok + frame(1, b"hi"), a=0x0B)
    seed("handshake_response", "accepted_split", ok, a=0x0B, lens=b"\x03\x40")
    seed("handshake_response", "refused_length",
         b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!", b=0x80)
    seed("handshake_response", "refused_chunked",
         b"HTTP/1.1 502 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    seed("handshake_response", "refused_eof", b"HTTP/1.0 500 Oops\r\n\r\nuntil the end",
         a=0x20, b=0x80)

    seed("proxy_connect_reply", "established",
         b"HTTP/1.0 200 Connection established\r\nProxy-agent: x\r\n\r\n")
    seed("proxy_connect_reply", "auth", b"HTTP/1.1 407 Proxy Authentication Required\r\n"
         b"Proxy-Authenticate: Basic realm=\"p\"\r\nContent-Length: 6\r\n\r\n<html>", a=1)
    seed("proxy_connect_reply", "refused_chunked",
         b"HTTP/1.1 502 Bad\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"3\r\nabc\r\n0\r\n\r\n", lens=b"\x07")
    seed("proxy_connect_reply", "early_bytes", b"HTTP/1.1 200 OK\r\n\r\nsurprise")

    seed("socks5_reply", "none_domain", bytes([5, 0, 5, 0, 0, 3, 4]) + b"host\x00\x50")
    seed("socks5_reply", "auth_ipv4", bytes([5, 2, 1, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0x1F, 0x90]),
         a=1, lens=b"\x01")
    seed("socks5_reply", "ipv6", bytes([5, 0, 5, 0, 0, 4]) + bytes(16) + b"\x00\x50", a=4)
    seed("socks5_reply", "refused", bytes([5, 0, 5, 5]))
    seed("socks5_reply", "auth_refused", bytes([5, 2, 1, 1]), a=1)

    seed("utf8", "mixed", "ascii é € 𝄞 end".encode(), lens=b"\x01\x02\x03")
    seed("utf8", "surrogate", b"ab\xed\xa0\x80cd")
    seed("utf8", "truncated", "€".encode()[:2])

    for name, value in [
        ("client_offer", b"permessage-deflate; client_max_window_bits"),
        ("full", b"permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
                 b" server_max_window_bits=10; client_max_window_bits=12"),
        ("several", b"x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=\"9\"\n"
                    b"permessage-deflate; client_max_window_bits=15"),
    ]:
        seed("deflate_negotiation", name, value, a=0x12, b=0x7F)


if __name__ == "__main__":
    main()
