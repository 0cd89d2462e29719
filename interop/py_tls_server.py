#!/usr/bin/env python3
"""TLS echo server built on the Python `websockets` library.

Usage: <venv>/bin/python interop/py_tls_server.py CERT_PEM KEY_PEM

Serves wss:// on 127.0.0.1 with an ephemeral port, with the certificate
chain and private key given, and ALPN `http/1.1`; prints `LISTENING <port>`
on stdout, then echoes every message (text as text, binary as binary) until
SIGTERM/SIGINT.
"""

import asyncio
import signal
import ssl
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def main(cert: str, key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with serve(echo, "127.0.0.1", 0, ssl=context, max_size=16 * 1024 * 1024) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: py_tls_server.py CERT_PEM KEY_PEM")
    asyncio.run(main(sys.argv[1], sys.argv[2]))
