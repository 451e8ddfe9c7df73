"""``python -m bench.ws_floor [-n 5000]``: what an idle WebSocket costs aiohttp alone.

A bare aiohttp server in a process of its own, with one WebSocket route that does what
refdesk's does for an idle visitor (the same ``heartbeat`` and ``max_msg_size``, read the hello
frame, answer it, then wait for frames) and nothing else: no store, no desk, no middleware.
``n`` clients connect and stay; the server's RSS before and after, divided by ``n``, is the
floor under refdesk's own figure (the capacity test's *KB/conn*): what refdesk adds is the
difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import aiohttp
from aiohttp import WSMsgType, web

from bench.proc import raise_fd_limit, rss_mb
from refdesk.homeserver import free_port

_ENDED = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


async def _socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
    await ws.prepare(request)
    await ws.receive()  # the hello
    await ws.send_str('{"type": "ready"}')
    while (await ws.receive()).type not in _ENDED:
        pass
    return ws


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/ws", _socket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def measure(n: int, warm: int = 200) -> dict[str, float]:
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ws_floor", "--serve", str(port), stdout=asyncio.subprocess.PIPE
    )
    assert server.stdout is not None
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    gate = asyncio.Semaphore(64)

    async def connect() -> None:
        async with gate:
            ws = await http.ws_connect(f"http://127.0.0.1:{port}/ws")
            await ws.send_str(json.dumps({"type": "hello", "token": "t", "after": 0}))
            await ws.receive()
            sockets.append(ws)

    try:
        await asyncio.wait_for(server.stdout.readline(), 30)
        await asyncio.gather(*(connect() for _ in range(warm)))
        await asyncio.sleep(2)
        before = rss_mb(server.pid)
        await asyncio.gather(*(connect() for _ in range(n)))
        await asyncio.sleep(3)
        after = rss_mb(server.pid)
    finally:
        for ws in sockets:
            await ws.close()
        await http.close()
        server.kill()
        await server.wait()
    return {
        "connections": n,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "kb_per_connection": round((after - before) * 1024 / n, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ws_floor", description=__doc__)
    parser.add_argument("-n", type=int, default=5000, help="idle connections to add")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    raise_fd_limit(args.n + 1024)
    found = asyncio.run(measure(args.n))
    print(
        f"bare aiohttp: {found['connections']} idle WebSockets took the server from"
        f" {found['rss_before_mb']} to {found['rss_after_mb']} MB RSS:"
        f" {found['kb_per_connection']} KB per connection"
    )


if __name__ == "__main__":
    main()
