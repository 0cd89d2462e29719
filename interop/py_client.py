#!/usr/bin/env python3
"""Interop test client built on the Python `websockets` library.

Usage: <venv>/bin/python interop/py_client.py [--subprotocol NAME] [DEFLATE OPTIONS] ws://127.0.0.1:PORT/

--subprotocol NAME                 offer the subprotocol NAME on every
                                   connection, and check that it is agreed

DEFLATE OPTIONS (see PROTOCOL.md; none: permessage-deflate is off):
  --deflate                        offer permessage-deflate, library defaults
  --server-no-context-takeover     } offer it with these settings
  --client-no-context-takeover     } (each implies --deflate)
  --server-max-window-bits N       }
  --client-max-window-bits N       }
With compression, the deflate checks of PROTOCOL.md run too.

Runs the scripted checks of PROTOCOL.md against a server implementing the
command protocol. Prints `ok <name>` or `FAIL <name>: <detail>` per check and
a final `# N checks, P ok, F failed` line; exits 0 only if every check passed.
"""

import argparse
import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

MAX_SIZE = 64 * 1024 * 1024  # incoming message limit (protocol: >= 16 MiB)
TIMEOUT = 15  # seconds allowed for any single check
SIZES = [0, 125, 126, 65535, 65536, 1048576]


class CheckFailed(Exception):
    """A check's expectation was not met; the message is the detail."""


def expect(cond: bool, detail: str) -> None:
    if not cond:
        raise CheckFailed(detail)


def pattern(kind: str, size: int) -> bytes:
    """Payload of `!frag` (and of the echo tests): a-z or i % 251, repeating."""
    cycle = b"abcdefghijklmnopqrstuvwxyz" if kind == "text" else bytes(range(251))
    return (cycle * (size // len(cycle) + 1))[:size]


def describe(got, want) -> str:
    """Short explanation of why two messages differ (type, length, offset)."""
    if type(got) is not type(want):
        return f"expected {type(want).__name__}, got {type(got).__name__}"
    if len(got) <= 64 and len(want) <= 64:
        return f"expected {want!r}, got {got!r}"
    if len(got) != len(want):
        return f"expected {len(want)} {type(want).__name__} items, got {len(got)}"
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    return f"content differs at offset {first}"


def expect_same(got, want) -> None:
    """Exact comparison of two messages, including str (text) vs bytes."""
    if type(got) is not type(want) or got != want:
        raise CheckFailed(describe(got, want))


def compression_options(args: argparse.Namespace) -> dict:
    """connect() keyword arguments for the permessage-deflate settings."""
    if args.tuned:
        factory = ClientPerMessageDeflateFactory(
            server_no_context_takeover=args.server_no_context_takeover,
            client_no_context_takeover=args.client_no_context_takeover,
            server_max_window_bits=args.server_max_window_bits,
            # None would not offer the parameter; True offers it bare.
            client_max_window_bits=args.client_max_window_bits or True,
        )
        return {"compression": None, "extensions": [factory]}
    if args.deflate:
        return {"compression": "deflate"}  # the library's default offer
    return {"compression": None}


def deflate_params(value: str) -> dict:
    """The parameters of the permessage-deflate in an extensions header."""
    for ext in value.split(","):
        name, *params = [p.strip() for p in ext.split(";")]
        if name == "permessage-deflate":
            return dict((p.split("=", 1) + [None])[:2] for p in params if p)
    raise CheckFailed(f"permessage-deflate was not negotiated (extensions: {value!r})")


# The message of `echo-context-takeover`: ~300 bytes of JSON-like text.
CONTEXT_MESSAGE = (
    '{"type":"quote","symbol":"TETHER","venue":"XWBS","bid":101.25,"ask":101.5,'
    '"sizes":[100,250,500,1000],"flags":{"halted":false,"auction":false},'
    '"trader":"héllo wörld €","seq":%d,"note":"the same message, again and '
    'again, so that the second copy compresses to a few bytes"}'
)


class Client:
    def __init__(self, url: str, args: argparse.Namespace):
        self.url = url
        self.args = args
        self.compression = compression_options(args)
        self.ws = None  # the shared connection for the non-close checks
        self.results = []  # (name, passed)

    async def open(self):
        """A new connection: big limits, no keepalive pings, compression only
        if asked for."""
        protocols = [self.args.subprotocol] if self.args.subprotocol else None
        return await connect(
            self.url,
            **self.compression,
            subprotocols=protocols,
            max_size=MAX_SIZE,
            ping_interval=None,
            proxy=None,  # never route loopback tests through an env proxy
            close_timeout=5,
        )

    async def shared(self):
        """The shared connection, reopened if an earlier check broke it."""
        if self.ws is None or self.ws.protocol.close_rcvd or self.ws.protocol.close_sent:
            self.ws = await self.open()
        return self.ws

    async def check(self, name: str, coro_fn, *args) -> None:
        """Run one check with a timeout and print its result line."""
        try:
            async with asyncio.timeout(TIMEOUT):
                await coro_fn(*args)
        except CheckFailed as exc:
            self.report(name, str(exc))
        except TimeoutError:
            self.report(name, f"timed out after {TIMEOUT} s")
            self.ws = None  # state unknown: use a fresh connection from now on
        except Exception as exc:  # connection errors, protocol errors, ...
            self.report(name, f"{type(exc).__name__}: {exc}")
            self.ws = None
        else:
            self.report(name, None)

    def report(self, name: str, failure) -> None:
        self.results.append((name, failure is None))
        line = f"ok {name}" if failure is None else f"FAIL {name}: {failure}"
        print(line.replace("\n", " "), flush=True)

    # --- checks on the shared connection ----------------------------------

    async def echo(self, message, fragments=None) -> None:
        """Send `message` (optionally as a list of fragments), expect an echo."""
        ws = await self.shared()
        if fragments is None:
            await ws.send(message)
        else:
            # send(iterable) sends one frame per item; bytes + text=True lets
            # fragment boundaries fall inside multibyte UTF-8 sequences.
            await ws.send(fragments, text=isinstance(message, str))
        expect_same(await ws.recv(), message)

    async def client_ping(self) -> None:
        ws = await self.shared()
        # The returned future resolves only on a Pong with the same payload.
        pong = await ws.ping(b"tether-ping")
        await pong

    async def server_ping(self) -> None:
        ws = await self.shared()
        await ws.send("!ping 0102ff")  # websockets answers the Ping by itself
        expect_same(await ws.recv(), "!pong 0102ff")

    async def server_frag(self, kind: str, size: int, parts: int) -> None:
        ws = await self.shared()
        await ws.send(f"!frag {kind} {size} {parts}")
        # recv_streaming() yields the message frame by frame (str for a Text
        # message, bytes for Binary), so the frame count can be checked too;
        # empty frames don't count (see PROTOCOL.md).
        frames = [f async for f in ws.recv_streaming()]
        want_type = str if kind == "text" else bytes
        expect(all(type(f) is want_type for f in frames),
               f"expected a {kind} message, got {type(frames[0]).__name__} frames")
        got = b"".join(f.encode() if kind == "text" else f for f in frames)
        want = pattern(kind, size)
        expect_same(got, want)
        if self.args.deflate:
            # With compression, the server may compress the whole message and
            # split the compressed bytes into frames of any size.
            return
        nonempty = sum(1 for f in frames if f)
        expect(nonempty == parts, f"expected {parts} non-empty frames, got {nonempty}")

    # --- deflate checks (with compression only) ---------------------------

    async def deflate_negotiated(self) -> None:
        ws = await self.shared()
        value = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        print(f"extensions {value}", flush=True)
        params = deflate_params(value)
        a = self.args
        if a.server_no_context_takeover:
            expect("server_no_context_takeover" in params,
                   f"server_no_context_takeover was not accepted: {value!r}")
        if a.server_max_window_bits is not None:
            got = params.get("server_max_window_bits")
            expect(got is not None and int(got) <= a.server_max_window_bits,
                   f"server_max_window_bits={a.server_max_window_bits} was not honoured: {value!r}")
        if a.client_max_window_bits is not None and params.get("client_max_window_bits"):
            expect(int(params["client_max_window_bits"]) <= a.client_max_window_bits,
                   f"client_max_window_bits above {a.client_max_window_bits}: {value!r}")

    async def server_ext(self) -> None:
        ws = await self.shared()
        value = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        await ws.send("!ext")
        expect_same(await ws.recv(), f"!ext {value}" if value else "!ext")

    async def context_takeover(self) -> None:
        ws = await self.shared()
        for seq in (1, 1, 1, 2, 3, 1):
            await self.echo(CONTEXT_MESSAGE % seq)
        # Pipelined: all sent before any echo is read.
        msgs = [CONTEXT_MESSAGE % seq for seq in range(20)]
        for m in msgs:
            await ws.send(m)
        for m in msgs:
            expect_same(await ws.recv(), m)

    # --- checks that own their connection ---------------------------------

    async def client_close(self, code: int, reason: str) -> None:
        ws = await self.open()
        await ws.close(code, reason)  # waits for the server's Close and EOF
        rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        expect(sent is not None, "no Close frame was sent")
        expect(rcvd is not None, "no Close frame received from the server")
        expect(rcvd.code == code, f"server's Close has code {rcvd.code} "
               f"reason {rcvd.reason!r}, expected {code}")

    async def server_close(self) -> None:
        ws = await self.open()
        await ws.send("!close 4002 server-bye")
        try:
            extra = await ws.recv()
            raise CheckFailed(f"expected the connection to close, got {extra!r}")
        except ConnectionClosed as exc:
            rcvd, sent = exc.rcvd, exc.sent
        await ws.wait_closed()
        expect(rcvd is not None, "no Close frame received from the server")
        expect((rcvd.code, rcvd.reason) == (4002, "server-bye"),
               f"got Close {rcvd.code} {rcvd.reason!r}, expected 4002 'server-bye'")
        expect(sent is not None and sent.code == 4002,
               f"client answered with {sent}, expected an echo of 4002")

    async def subprotocol(self) -> None:
        ws = await self.shared()
        expect(ws.subprotocol == self.args.subprotocol,
               f"agreed subprotocol {ws.subprotocol!r}, expected {self.args.subprotocol!r}")

    async def run(self) -> bool:
        if self.args.subprotocol:
            await self.check("subprotocol", self.subprotocol)
        if self.args.deflate:
            await self.check("deflate-negotiated", self.deflate_negotiated)
            await self.check("server-ext", self.server_ext)
            await self.check("echo-context-takeover", self.context_takeover)

        for kind in ("text", "binary"):
            for size in SIZES:
                data = pattern(kind, size)
                msg = data.decode() if kind == "text" else data
                await self.check(f"echo-{kind}-{size}", self.echo, msg)

        # 70006 bytes of UTF-8 in 7 fragments, each boundary moved forward to
        # land inside a multibyte character.
        text = "héllo wörld €" * 4118
        raw = text.encode()
        cuts = []
        for k in range(1, 7):
            i = k * len(raw) // 7
            while raw[i] & 0xC0 != 0x80:  # advance to a continuation byte
                i += 1
            cuts.append(i)
        bounds = [0, *cuts, len(raw)]
        frags = [raw[a:b] for a, b in zip(bounds, bounds[1:])]
        await self.check("echo-fragmented-text", self.echo, text, frags)

        blob = bytes((i * 7 + 3) % 256 for i in range(100000))
        bounds = [0, 1, 125, 126, 65661, 99999, 100000]  # odd sizes, incl. 1-byte
        frags = [blob[a:b] for a, b in zip(bounds, bounds[1:])]
        await self.check("echo-fragmented-binary", self.echo, blob, frags)

        await self.check("client-ping", self.client_ping)
        await self.check("server-ping", self.server_ping)
        await self.check("server-frag-text", self.server_frag, "text", 70000, 5)
        await self.check("server-frag-binary", self.server_frag, "binary", 65536, 4)
        if self.ws is not None:
            await self.ws.close()

        await self.check("client-close-4001", self.client_close, 4001, "bye")
        await self.check("server-close-4002", self.server_close)
        await self.check("client-close-1000", self.client_close, 1000, "")

        passed = sum(1 for _, ok in self.results if ok)
        failed = len(self.results) - passed
        print(f"# {len(self.results)} checks, {passed} ok, {failed} failed", flush=True)
        return failed == 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="websockets interop client")
    parser.add_argument("--subprotocol", metavar="NAME")
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--server-no-context-takeover", action="store_true")
    parser.add_argument("--client-no-context-takeover", action="store_true")
    parser.add_argument("--server-max-window-bits", type=int, metavar="N")
    parser.add_argument("--client-max-window-bits", type=int, metavar="N")
    parser.add_argument("url")
    args = parser.parse_args()
    if not args.url.startswith("ws://"):
        parser.error("the URL must start with ws://")
    args.tuned = (args.server_no_context_takeover or args.client_no_context_takeover
                  or args.server_max_window_bits is not None
                  or args.client_max_window_bits is not None)
    args.deflate = args.deflate or args.tuned
    return args


def main() -> int:
    args = parse_args()
    return 0 if asyncio.run(Client(args.url, args).run()) else 1


if __name__ == "__main__":
    sys.exit(main())
