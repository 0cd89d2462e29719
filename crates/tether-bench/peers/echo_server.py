"""Echo server for tether-bench's compressed cells: Python websockets with
its default permessage-deflate settings (compression="deflate"), one asyncio
process, one handler per connection that sends back every message.

Usage: <venv>/bin/python echo_server.py
Listens on 127.0.0.1, an ephemeral port, prints `LISTENING <port>`, and
serves until killed.
"""

import asyncio

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        # The benchmark drops its connections at the end of each run.
        pass


async def main():
    async with serve(echo, "127.0.0.1", 0, compression="deflate") as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await server.serve_forever()


asyncio.run(main())
