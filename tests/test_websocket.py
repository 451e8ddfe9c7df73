"""refdesk's own WebSocket endpoint (widget_server/websocket.py), on a real socket.

An aiohttp app served by :class:`Runner` on a free loopback port, with an endpoint whose handler
echoes what it gets. Well-behaved clients are aiohttp's; the protocol's edges are checked with
raw frames written to a plain TCP connection.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from refdesk.homeserver import free_port
from widget_server.websocket import Endpoint, Runner, WebSocket


class Echo:
    def __init__(self, ws: WebSocket, seen: list[str | bytes]) -> None:
        self.ws = ws
        self.seen = seen
        self.closed = False

    async def on_message(self, data: str | bytes) -> None:
        self.seen.append(data)
        if data == "close please":
            await self.ws.close(code=4000, message=b"asked")
        elif data == "slow":
            await asyncio.sleep(0.2)
            await self.ws.send_str("slow done")
        else:
            await self.ws.send_str(f"echo {data!r}")

    def on_close(self) -> None:
        self.closed = True


@dataclass
class Server:
    url: str
    port: int
    endpoint: Endpoint
    seen: list[str | bytes] = field(default_factory=list)
    handlers: list[Echo] = field(default_factory=list)


async def _plain(request: web.Request) -> web.Response:
    return web.Response(text=f"aiohttp {request.path}")


async def _aiohttp_ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str("served by aiohttp")
    await ws.close()
    return ws


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    found: Server | None = None

    def accept(path: str, origin: str | None) -> Callable[[WebSocket], Echo] | None:
        if path != "/ws" or origin == "https://evil.example":
            return None
        assert found is not None

        def handler(ws: WebSocket) -> Echo:
            assert found is not None
            echo = Echo(ws, found.seen)
            found.handlers.append(echo)
            return echo

        return handler

    endpoint = Endpoint(accept, heartbeat=0.4, max_message=1000)
    app = web.Application()
    app.router.add_get("/plain", _plain)
    app.router.add_get("/ws", _aiohttp_ws)
    app.router.add_get("/other-ws", _aiohttp_ws)
    runner = Runner(app, endpoint)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    found = Server(f"http://127.0.0.1:{port}", port, endpoint)
    try:
        yield found
    finally:
        await endpoint.close_all()
        await runner.cleanup()


KEY = base64.b64encode(b"0123456789abcdef")
ACCEPT = base64.b64encode(hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


def handshake(path: str = "/ws", extra: str = "", key: bytes = KEY) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    """A client frame (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 1 << 16:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Raw:
    """A plain TCP client: the handshake, then frames both ways."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: Server, request: bytes | None = None) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        raw = cls(reader, writer)
        if request is not None:
            writer.write(request)
        return raw

    async def upgraded(self) -> bytes:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"Sec-WebSocket-Accept: " + ACCEPT in head
        return head

    async def read_frame(self) -> tuple[int, bytes]:
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 5)
        assert not second & 0x80, "server frames are not masked"
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return first & 0x0F, await self.reader.readexactly(n)

    async def close_code(self) -> int:
        """The code of the close frame that comes next (data frames before it are skipped)."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])

    async def ended(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


async def test_a_client_talks_to_the_endpoint_and_everything_else_reaches_aiohttp(
    server: Server,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.url}/ws") as ws:
            await ws.send_str("hello")
            assert (await ws.receive(timeout=5)).data == "echo 'hello'"
            await ws.send_str("é" * 400)  # 800 bytes: the 16-bit length
            assert (await ws.receive(timeout=5)).data == f"echo {'é' * 400!r}"
            await ws.send_bytes(b"\x00\x01")  # binary reaches the handler as bytes
            assert (await ws.receive(timeout=5)).data == "echo b'\\x00\\x01'"
        async with http.get(f"{server.url}/plain") as response:
            assert await response.text() == "aiohttp /plain"
        # A handshake for a path the endpoint does not take: aiohttp's own route serves it.
        async with http.ws_connect(f"{server.url}/other-ws") as ws:
            assert (await ws.receive(timeout=5)).data == "served by aiohttp"
        # An origin the endpoint refuses goes on to aiohttp too (where a middleware answers).
        async with http.ws_connect(f"{server.url}/ws", origin="https://evil.example") as ws:
            assert (await ws.receive(timeout=5)).data == "served by aiohttp"
    assert server.seen == ["hello", "é" * 400, b"\x00\x01"]
    await asyncio.sleep(0.1)
    assert all(h.closed for h in server.handlers)  # on_close once the client went


async def test_a_handshake_on_a_kept_alive_connection_is_served_by_aiohttp(
    server: Server,
) -> None:
    raw = await Raw.open(server, b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    status = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 5)
    assert status.startswith(b"HTTP/1.1 200"), status
    length = int(status.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert await raw.reader.readexactly(length) == b"aiohttp /plain"
    raw.send(handshake())
    await raw.upgraded()
    assert await raw.read_frame() == (0x1, b"served by aiohttp")
    raw.close()
    assert server.seen == []


@pytest.mark.parametrize(
    "request_",
    [
        handshake(key=base64.b64encode(b"short")),  # the key must be 16 bytes
        handshake().replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
        handshake().replace(b"Upgrade: websocket\r\n", b""),
        handshake().replace(b"HTTP/1.1", b"HTTP/1.0"),
        handshake(extra="Origin: https://a.example\r\nOrigin: https://b.example\r\n"),
        handshake(extra=" folded: line\r\n"),
        handshake(extra="Content-Length: 0\r\n"),
    ],
)
async def test_a_handshake_that_is_not_perfect_goes_to_aiohttp(
    server: Server, request_: bytes
) -> None:
    raw = await Raw.open(server, request_)
    head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 5)
    # aiohttp answers: an error, or its own upgrade (then its route speaks, not the echo).
    if head.split(b" ")[1] == b"101":
        assert await raw.read_frame() == (0x1, b"served by aiohttp")
    else:
        assert head.split(b" ")[1].startswith(b"4"), head
    raw.close()
    assert server.seen == []


async def test_the_head_may_come_in_pieces_and_frames_right_behind_it(server: Server) -> None:
    request = handshake()
    raw = await Raw.open(server)
    for i in range(0, len(request) - 10, 7):  # a slow client
        raw.send(request[i : min(i + 7, len(request) - 10)])
        await raw.writer.drain()
        await asyncio.sleep(0.005)
    raw.send(request[-10:] + frame(0x1, b"at once"))
    await raw.upgraded()
    assert await raw.read_frame() == (0x1, b"echo 'at once'")
    raw.close()


async def test_a_message_in_fragments_and_pings_between_them(server: Server) -> None:
    raw = await Raw.open(server, handshake())
    await raw.upgraded()
    raw.send(frame(0x1, b"frag", fin=False))
    raw.send(frame(0x9, b"ping!"))  # a control frame may come between fragments
    raw.send(frame(0x0, b"men", fin=False))
    raw.send(frame(0x0, b"ted"))
    assert await raw.read_frame() == (0xA, b"ping!")
    assert await raw.read_frame() == (0x1, b"echo 'fragmented'")
    # A frame split across writes, byte by byte.
    for byte in frame(0x1, b"drip"):
        raw.send(bytes([byte]))
        await raw.writer.drain()
    assert await raw.read_frame() == (0x1, b"echo 'drip'")
    raw.close()


async def test_messages_are_handled_one_at_a_time_in_order(server: Server) -> None:
    raw = await Raw.open(server, handshake())
    await raw.upgraded()
    raw.send(frame(0x1, b"slow") + b"".join(frame(0x1, str(i).encode()) for i in range(40)))
    replies = [(await raw.read_frame())[1] for _ in range(41)]
    assert replies == [b"slow done"] + [f"echo '{i}'".encode() for i in range(40)]
    raw.close()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (frame(0x1, b"unmasked", mask=False), 1002),
        (frame(0x1, b"reserved", rsv=0x40), 1002),
        (frame(0x0, b"no start"), 1002),
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),  # a new message mid-message
        (frame(0x9, b"x" * 126), 1002),  # a control frame over 125 bytes
        (frame(0x9, b"x", fin=False), 1002),  # a control frame in pieces
        (frame(0x3, b"reserved opcode"), 1002),
        (frame(0x1, b"\xff\xfe not utf-8"), 1007),
        (frame(0x1, b"x" * 1001), 1009),  # over max_message (1000)
        (frame(0x1, b"x" * 600, fin=False) + frame(0x0, b"x" * 600), 1009),
        (bytes((0x81, 0xFF)) + struct.pack("!Q", 2**40), 1009),  # just the length says it
    ],
)
async def test_a_broken_frame_closes_with_its_code(
    server: Server, frames: bytes, code: int
) -> None:
    raw = await Raw.open(server, handshake())
    await raw.upgraded()
    raw.send(frames)
    assert await raw.close_code() == code
    assert await raw.ended()
    assert server.seen == []
    assert all(h.closed for h in server.handlers)


async def test_the_closing_handshake_both_ways(server: Server) -> None:
    raw = await Raw.open(server, handshake())
    await raw.upgraded()
    raw.send(frame(0x8, struct.pack("!H", 4321) + b"bye"))
    assert await raw.close_code() == 4321  # echoed
    assert await raw.ended()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.url}/ws") as ws:
        await ws.send_str("close please")
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE and msg.data == 4000 and msg.extra == "asked"
    # Once the server closes, what the client had sent behind is not handled.
    raw = await Raw.open(server, handshake())
    await raw.upgraded()
    raw.send(frame(0x1, b"close please") + frame(0x1, b"ignored"))
    assert await raw.close_code() == 4000
    await asyncio.sleep(0.2)
    assert "ignored" not in server.seen
    raw.close()


async def test_a_silent_client_is_cut_off_and_a_live_one_is_kept(server: Server) -> None:
    # The endpoint's heartbeat is 0.4 s: a ping after 0.4 s idle, cut off 0.2 s later unanswered.
    silent = await Raw.open(server, handshake())
    await silent.upgraded()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.url}/ws") as live:
        reply = asyncio.create_task(live.receive(timeout=5))  # it answers pings while it waits
        assert await silent.read_frame() == (0x9, b"")  # pinged
        assert await silent.ended()  # and, not answering, cut off
        await live.send_str("still here")
        assert (await reply).data == "echo 'still here'"
    assert len(server.endpoint.connections) == 0


async def test_shutdown_closes_every_connection_with_1001(server: Server) -> None:
    raw = await Raw.open(server, handshake())
    await raw.upgraded()
    await server.endpoint.close_all()
    assert await raw.close_code() == 1001


# Raw bytes after the handshake: well-formed frames, broken ones, and noise, in any mix.
_FRAMES = st.one_of(
    st.builds(
        frame,
        st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB, 0xF]),
        st.binary(max_size=300),
        st.booleans(),
        st.sampled_from([True] * 9 + [False]),  # mostly masked, so the checks behind it run
        st.sampled_from([0] * 9 + [0x40]),
    ),
    st.binary(max_size=40),
)


@settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(chunks=st.lists(_FRAMES, max_size=6))
@example(chunks=[frame(0x3, b"x")])  # reserved opcodes, each kind once for certain
@example(chunks=[frame(0xB, b"")])
@example(chunks=[frame(0x0, b"stray")])
@example(chunks=[frame(0x1, b"\xc3")])  # half a character
@example(chunks=[frame(0x1, b"half", fin=False), frame(0x9, b"p"), frame(0x0, b" done")])
@example(chunks=[bytes((0x81, 0xFE, 0xFF, 0xFF))])  # a length with no payload behind it
async def test_fuzz_raw_frames_never_break_the_endpoint(
    server: Server, caplog: pytest.LogCaptureFixture, chunks: list[bytes]
) -> None:
    """Whatever comes after a handshake, the server answers within the protocol (frames, a close
    frame, the end of the connection), logs no error (a failing protocol callback would), and
    the next connection works as the first did."""
    raw = await Raw.open(server, handshake())
    await raw.upgraded()
    for chunk in chunks:
        raw.send(chunk)
    raw.send(frame(0x8, struct.pack("!H", 1000)))  # then a proper close
    while True:
        try:
            opcode, _ = await raw.read_frame()
        except (asyncio.IncompleteReadError, ConnectionResetError):
            break  # the server closed the connection
        assert opcode in (0x1, 0x8, 0x9, 0xA), opcode
        if opcode == 0x8:
            assert await raw.ended()
            break
    raw.close()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.url}/ws") as ws:
        await ws.send_str("still fine")
        assert (await ws.receive(timeout=5)).data == "echo 'still fine'"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[0].getMessage()
