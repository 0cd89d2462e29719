#!/usr/bin/env python3
"""Interop echo/command server built on the Python `websockets` library.

Usage: <venv>/bin/python interop/py_server.py [DEFLATE OPTIONS]

DEFLATE OPTIONS (see PROTOCOL.md; none: permessage-deflate is off):
  --deflate                        accept permessage-deflate, library defaults
  --server-no-context-takeover     } accept it with these settings
  --client-no-context-takeover     } (each implies --deflate, and replaces the
  --server-max-window-bits N       }  library defaults with the factory's:
  --client-max-window-bits N       }  no window limits unless given)

Listens on 127.0.0.1 with an ephemeral port, prints `LISTENING <port>` on
stdout, then serves until SIGTERM/SIGINT. Implements the command protocol in
PROTOCOL.md: echo everything except text commands starting with `!`.
"""

import argparse
import asyncio
import signal

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

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
    elif name == "!ext":
        # The Sec-WebSocket-Extensions this server answered (empty: none).
        value = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        await ws.send(f"!ext {value}" if value else "!ext")
    elif name == "!offer":
        # The client's Sec-WebSocket-Extensions offer (empty: none).
        value = ", ".join(ws.request.headers.get_all("Sec-WebSocket-Extensions"))
        await ws.send(f"!offer {value}" if value else "!offer")
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="websockets interop server")
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--server-no-context-takeover", action="store_true")
    parser.add_argument("--client-no-context-takeover", action="store_true")
    parser.add_argument("--server-max-window-bits", type=int, metavar="N")
    parser.add_argument("--client-max-window-bits", type=int, metavar="N")
    return parser.parse_args()


def compression_options(args: argparse.Namespace) -> dict:
    """serve() keyword arguments for the permessage-deflate settings."""
    tuned = (args.server_no_context_takeover or args.client_no_context_takeover
             or args.server_max_window_bits is not None
             or args.client_max_window_bits is not None)
    if tuned:
        factory = ServerPerMessageDeflateFactory(
            server_no_context_takeover=args.server_no_context_takeover,
            client_no_context_takeover=args.client_no_context_takeover,
            server_max_window_bits=args.server_max_window_bits,
            client_max_window_bits=args.client_max_window_bits,
        )
        return {"compression": None, "extensions": [factory]}
    if args.deflate:
        # The library's defaults: 12-bit windows both ways, memLevel 5.
        return {"compression": "deflate"}
    return {"compression": None}  # no permessage-deflate


async def main(args: argparse.Namespace) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with serve(
        handler,
        "127.0.0.1",
        0,
        **compression_options(args),
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
    asyncio.run(main(parse_args()))
