"""Fan-out server for tether-bench's fan-out cells: Python websockets'
broadcast(), as its documentation writes a broadcast server: every
connection is kept in a set, and each message received from any of them is
sent to all of them with broadcast(), one asyncio process.

Usage: <venv>/bin/python fanout_server.py
Listens on 127.0.0.1, an ephemeral port, prints `LISTENING <port>`, and
serves until killed.
"""

import asyncio

from websockets.asyncio.server import broadcast, serve
from websockets.exceptions import ConnectionClosed

CONNECTIONS = set()


async def relay(ws):
    CONNECTIONS.add(ws)
    try:
        async for message in ws:
            broadcast(CONNECTIONS, message)
    except ConnectionClosed:
        # The benchmark drops its connections at the end of each run.
        pass
    finally:
        CONNECTIONS.remove(ws)


async def main():
    async with serve(relay, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await server.serve_forever()


asyncio.run(main())
