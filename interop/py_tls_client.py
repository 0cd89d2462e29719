#!/usr/bin/env python3
"""TLS client check built on the Python `websockets` library.

Usage: <venv>/bin/python interop/py_tls_client.py URL CAFILE

Connects to URL (wss://...) trusting only the CA certificates in CAFILE,
with host-name checking and ALPN `http/1.1`; checks that the server chose
`http/1.1`, sends a text and a binary message, checks that both come back
unchanged, closes with 1000 and exits 0. Any failure prints a line starting
with `FAIL` and exits 1.
"""

import asyncio
import ssl
import sys

from websockets.asyncio.client import connect


async def main(url: str, cafile: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.set_alpn_protocols(["http/1.1"])
    async with connect(url, ssl=context, open_timeout=10) as ws:
        alpn = ws.transport.get_extra_info("ssl_object").selected_alpn_protocol()
        if alpn != "http/1.1":
            raise AssertionError(f"ALPN: expected 'http/1.1', got {alpn!r}")
        for message in ("hello over TLS", bytes(range(256)) * 300):
            await ws.send(message)
            echo = await asyncio.wait_for(ws.recv(), 10)
            if echo != message:
                raise AssertionError(f"echo of {type(message).__name__} differs")
        await ws.close(1000)
    print("ok tls-echo", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: py_tls_client.py URL CAFILE")
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2]))
    except Exception as exc:  # report any failure in one line
        print(f"FAIL {type(exc).__name__}: {exc}", flush=True)
        sys.exit(1)
