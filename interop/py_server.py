#!/usr/bin/env python3
"""Interop echo/command server built on the Python `websockets` library.

Usage: <venv>/bin/python interop/py_server.py

Listens on 127.0.0.1 with an ephemeral port, prints `LISTENING <port>` on
stdout, then serves until SIGTERM/SIGINT. Implements the command protocol in
PROTOCOL.md: echo everything except text commands starting with `!`.
"""

import asyncio
import signal
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

MAX_SIZE = 64 * 1024 * 1024  # incoming message limit (protocol: >= 16 MiB)
PONG_TIMEOUT = 30  # seconds to wait for the Pong answering a `!ping`


def pattern(kind: str, size: int) -> bytes:
    """Payload of `!frag`: 'a'..'z' repeating for text, i % 251 for binary."""
    cycle = b"abcdefghijklmnopqrstuvwxyz" if kind == "text" else bytes(range(251))
    return (cycle * (size // len(cycle) + 1))[:size]


def split(data: bytes, parts: int) -> list:
    """Fragment k is data[k*n/parts : (k+1)*n/parts] (integer division)."""
    n = len(data)
    return [data[k * n // parts:(k + 1) * n // parts] for k in range(parts)]


async def run_command(ws, line: str) -> None:
    """Execute one `!...` command; malformed ones are answered with `!error`."""
    name, _, rest = line.partition(" ")
    if name == "!close":
        code_s, _, reason = rest.partition(" ")
        if not code_s.isdigit():
            await ws.send(f"!error bad close code {code_s!r}")
            return
        try:
            await ws.close(int(code_s), reason)
        except Exception as exc:  # invalid code or reason too long
            await ws.send(f"!error close failed: {exc}")
    elif name == "!ping":
        try:
            payload = bytes.fromhex(rest)
            if len(payload) > 125:
                raise ValueError("ping payload longer than 125 bytes")
        except ValueError as exc:
            await ws.send(f"!error bad ping payload: {exc}")
            return
        # ping() returns a future resolved by the Pong with the same payload.
        pong = await ws.ping(payload)
        try:
            await asyncio.wait_for(pong, PONG_TIMEOUT)
        except asyncio.TimeoutError:
            await ws.send(f"!error no pong within {PONG_TIMEOUT} s")
            return
        await ws.send(f"!pong {payload.hex()}" if payload else "!pong")
    elif name == "!frag":
        args = rest.split(" ")
        if (len(args) != 3 or args[0] not in ("text", "binary")
                or not args[1].isdigit() or not args[2].isdigit()
                or int(args[2]) < 1):
            await ws.send(f"!error usage: !frag text|binary SIZE PARTS (got {rest!r})")
            return
        kind, size, parts = args[0], int(args[1]), int(args[2])
        data = pattern(kind, size)
        if parts == 1:
            # A single frame: send() of an iterable would add an empty FIN frame.
            await ws.send(data, text=(kind == "text"))
        else:
            # send() of an iterable emits one frame per item (FIN=0), then an
            # empty continuation frame with FIN=1 (see PROTOCOL.md).
            await ws.send(split(data, parts), text=(kind == "text"))
    else:
        await ws.send(f"!error unknown command {name!r}")


async def handler(ws) -> None:
    """Per-connection loop: echo data, run commands, until the peer closes."""
    try:
        async for message in ws:
            if isinstance(message, str) and message.startswith("!"):
                await run_command(ws, message)
            else:
                await ws.send(message)  # str -> text frame, bytes -> binary
    except ConnectionClosed:
        pass  # abnormal closure by the client; nothing to do


async def main() -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with serve(
        handler,
        "127.0.0.1",
        0,
        compression=None,  # no permessage-deflate
        max_size=MAX_SIZE,
        ping_interval=None,  # no unsolicited keepalive pings
        close_timeout=5,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass


if __name__ == "__main__":
    if len(sys.argv) != 1:
        sys.exit("usage: py_server.py   (takes no arguments)")
    asyncio.run(main())
