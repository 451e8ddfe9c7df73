"""WebSockets without a task per connection: the visitor's live channel at 10,000 idle widgets.

aiohttp serves a WebSocket from a request handler that stays suspended for as long as the socket
is open: two tasks, the request with its headers and the HTTP parser, about 14.7 KB per idle
connection before the application holds anything (``python -m bench.ws_floor``). Here an open
WebSocket is one small :class:`WebSocket` protocol object on the connection's transport: frames
are parsed as they arrive, a task exists only while a message is being handled, and one sweep
per endpoint keeps the heartbeats.

:class:`Runner` is aiohttp's ``AppRunner`` with a front door on every connection it accepts. The
door reads the first request's head; if it is a well-formed WebSocket handshake for a path the
:class:`Endpoint` accepts, from an allowed origin, the door answers 101 and hands the connection
to a :class:`WebSocket`. Everything else (any other request, and any handshake that is not
perfectly valid) goes to aiohttp untouched, with the bytes read so far, so errors are answered
by the application's own routes and middleware. A handshake on a kept-alive connection (a proxy
reusing its upstream connection) reaches aiohttp too, whose route serves it the ordinary way.

The frame layer is RFC 6455 for a server: masked client frames, fragments, ping/pong, the
closing handshake; no extensions (permessage-deflate would keep two zlib streams of a few hundred
kilobytes per connection).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import unquote

from aiohttp import web

log = logging.getLogger("refdesk.widget_server.websocket")

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 8192  # aiohttp's own limit for a request line and each header
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_FIELD = re.compile(rb"[\x20-\x7e\t]*")
# Opcodes (RFC 6455 §5.2) and close codes (§7.4.1).
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
PROTOCOL_ERROR, INVALID_TEXT, TOO_BIG = 1002, 1007, 1009
CLOSE_TIMEOUT = 5.0  # how long a closing connection waits for the client's close frame
MAX_INBOX = 16  # messages queued behind the one being handled before reading pauses
SWEEP_SLICE = 250  # connections the heartbeat looks at in one go


class Handler(Protocol):
    """The application's side of one connection."""

    async def on_message(self, data: str | bytes) -> None:
        """A text (str) or binary (bytes) message, one at a time, in order."""

    def on_close(self) -> None:
        """The connection is gone (called once)."""


Accept = Callable[[str, "str | None"], "Callable[[WebSocket], Handler] | None"]


class Endpoint:
    """The WebSockets of one application: which handshakes to take, and their heartbeat.

    ``accept(path, origin)`` answers a handshake's path (percent-decoded) and ``Origin`` (None
    when absent) with a factory of its handler, or None to leave the request to aiohttp.
    Every ``heartbeat`` seconds without a frame from the client, it gets a ping; a client that
    sends nothing more before the next sweep (half that interval) is cut off.
    """

    def __init__(self, accept: Accept, heartbeat: float = 30.0, max_message: int = 64 * 1024):
        self.accept = accept
        self.heartbeat = heartbeat
        self.max_message = max_message
        self.connections: set[WebSocket] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def add(self, ws: WebSocket) -> None:
        self.connections.add(ws)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="refdesk-websocket-heartbeat")

    async def _sweep(self) -> None:
        """Ping the connections idle for ``heartbeat`` seconds; cut off those that have not
        answered a ping sent at least half that long ago. One pass takes about half the
        interval, a slice at a time, so 10,000 idle visitors never hold the event loop for
        more than a slice (their pings, and so their answers, are spread out)."""
        loop = asyncio.get_running_loop()
        grace = self.heartbeat / 2
        while True:
            connections = list(self.connections)
            slices = max(1, -(-len(connections) // SWEEP_SLICE))
            for start in range(0, max(1, len(connections)), SWEEP_SLICE):
                await asyncio.sleep(grace / slices)
                now = loop.time()
                for ws in connections[start : start + SWEEP_SLICE]:
                    if ws.transport is None or ws.closing:
                        continue
                    if ws.pinged:
                        if now - ws.pinged >= grace:
                            ws.abort()  # silent since its ping
                    elif now - ws.last_seen >= self.heartbeat:
                        ws.pinged = now
                        ws.write_frame(PING, b"")

    async def close_all(self, code: int = 1001, message: str = "server shutting down") -> None:
        """Close every connection (the application is shutting down) and stop the heartbeat."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for ws in list(self.connections):
            await ws.close(code=code, message=message.encode())


class Runner(web.AppRunner):
    """aiohttp's runner, whose sites give each connection to a front door (see the module)."""

    __slots__ = ("endpoint",)

    def __init__(self, app: web.Application, endpoint: Endpoint, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.endpoint = endpoint

    @property
    def server(self) -> Any:  # what a site passes to loop.create_server: a protocol factory
        http = super().server
        if http is None:
            return None
        endpoint = self.endpoint
        return lambda: FrontDoor(http, endpoint)


class FrontDoor(asyncio.Protocol):
    """A new connection until its first request's head is read: then a WebSocket or aiohttp's."""

    __slots__ = ("endpoint", "head", "http", "transport")

    def __init__(self, http: Callable[[], asyncio.Protocol], endpoint: Endpoint) -> None:
        self.http = http
        self.endpoint = endpoint
        self.head = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self._to_http()
            return
        handshake = _handshake(self.head[:end], self.endpoint)
        if handshake is None:
            self._to_http()
            return
        key, factory = handshake
        assert self.transport is not None
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        _no_delay(self.transport)  # small frames go out at once (aiohttp does the same)
        ws = WebSocket(self.transport, self.endpoint)
        self.transport.set_protocol(ws)
        ws.start(factory)
        tail = self.head[end + 4 :]
        self.head = b""
        if tail:
            ws.data_received(tail)

    def _to_http(self) -> asyncio.Protocol:
        assert self.transport is not None
        protocol = self.http()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        head, self.head = self.head, b""
        protocol.data_received(head)
        return protocol

    def eof_received(self) -> bool | None:
        if self.head:  # half a request, then the end: aiohttp answers it
            return self._to_http().eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _handshake(
    head: bytes, endpoint: Endpoint
) -> tuple[bytes, Callable[[WebSocket], Handler]] | None:
    """The key and the handler of a valid handshake the endpoint takes, else None."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1":
        return None
    if not _TARGET.fullmatch(parts[1]):
        return None
    headers: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name) or not _FIELD.fullmatch(value):
            return None  # includes obsolete line folding (a line starting with a space)
        headers.setdefault(name.lower(), []).append(value.strip(b" \t"))

    def one(name: bytes) -> bytes | None:
        values = headers.get(name)
        return values[0] if values is not None and len(values) == 1 else None

    upgrade = one(b"upgrade")
    connection = b",".join(headers.get(b"connection", []))
    key = one(b"sec-websocket-key")
    if (
        upgrade is None
        or upgrade.lower() != b"websocket"
        or b"upgrade" not in {t.strip(b" \t").lower() for t in connection.split(b",")}
        or one(b"sec-websocket-version") != b"13"
        or one(b"host") is None
        or key is None
        or b"content-length" in headers
        or b"transfer-encoding" in headers
    ):
        return None
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
        path = unquote(parts[1].partition(b"?")[0].decode("ascii"), errors="strict")
        origins = headers.get(b"origin", [])
        if len(origins) > 1:
            return None
        origin = origins[0].decode("ascii") if origins else None
    except (ValueError, UnicodeDecodeError):
        return None
    factory = endpoint.accept(path, origin)
    return None if factory is None else (key, factory)


class WebSocket(asyncio.Protocol):
    """One open WebSocket: frames in to its handler, ``send_str``/``close`` out.

    The same ``send_json``/``send_str``/``close`` as aiohttp's ``WebSocketResponse``, so the
    application code serves either. Sending to a closed connection does nothing.
    """

    __slots__ = (
        "binary",
        "buffer",
        "closing",
        "drained",
        "endpoint",
        "fragments",
        "handler",
        "inbox",
        "last_seen",
        "paused",
        "pinged",
        "task",
        "timer",
        "transport",
    )

    def __init__(self, transport: asyncio.Transport, endpoint: Endpoint) -> None:
        self.transport: asyncio.Transport | None = transport
        self.endpoint = endpoint
        self.handler: Handler | None = None
        self.buffer: bytearray | None = None  # the start of a frame not yet whole
        self.fragments: list[bytes] | None = None  # a message still coming in pieces
        self.binary = False  # the message coming in is binary
        self.inbox: deque[str | bytes] | None = None  # messages waiting for the one being handled
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.paused = False  # the transport's buffer is full: senders wait
        self.drained: asyncio.Future[None] | None = None
        self.pinged = 0.0  # when the unanswered ping went out (0: none)
        self.last_seen = asyncio.get_running_loop().time()
        self.timer: asyncio.TimerHandle | None = None  # while closing: the deadline

    def start(self, factory: Callable[[WebSocket], Handler]) -> None:
        self.endpoint.add(self)
        self.handler = factory(self)

    # --- sending -------------------------------------------------------------------------

    async def send_str(self, text: str) -> None:
        if self.closing:
            return
        self.write_frame(TEXT, text.encode())
        await self._drain()

    async def send_json(self, data: Any) -> None:
        await self.send_str(json.dumps(data))

    async def close(self, *, code: int = 1000, message: bytes = b"") -> None:
        """Start the closing handshake: the close frame now, the TCP connection when the
        client answers (or after :data:`CLOSE_TIMEOUT`)."""
        if self.closing or self.transport is None:
            return
        self.write_frame(CLOSE, code.to_bytes(2, "big") + message[:123])
        self.closing = True
        self.timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    @property
    def closed(self) -> bool:
        return self.closing or self.transport is None

    def write_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is None:
            return
        n = len(payload)
        if n < 126:
            header = bytes((0x80 | opcode, n))
        elif n < 1 << 16:
            header = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
        self.transport.write(header + payload)

    async def _drain(self) -> None:
        if not self.paused:
            return
        if self.drained is None:
            self.drained = asyncio.get_running_loop().create_future()
        await asyncio.shield(self.drained)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drained is not None:
            self.drained.set_result(None)
            self.drained = None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- receiving -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_seen = asyncio.get_running_loop().time()
        self.pinged = 0.0
        buffer: bytes | bytearray = data
        if self.buffer is not None:
            self.buffer += data
            buffer = self.buffer
        pos = 0
        end = len(buffer)
        while pos < end and self.transport is not None:
            used = self._frame(buffer, pos, end)
            if used == 0:
                if end - pos > self.endpoint.max_message + 14:  # cannot be a frame we take
                    self._fail(TOO_BIG, "message too big")
                    return
                break
            pos += used
        if pos >= end:
            self.buffer = None
        elif self.buffer is None:
            self.buffer = bytearray(buffer[pos:])
        else:
            del self.buffer[:pos]

    def _frame(self, data: bytes | bytearray, pos: int, end: int) -> int:
        """Handle the frame at ``pos``; the bytes it took, or 0 if it is not all here yet."""
        if end - pos < 2:
            return 0
        first, second = data[pos], data[pos + 1]
        fin, opcode, length = first & 0x80, first & 0x0F, second & 0x7F
        at = pos + 2
        if first & 0x70 or not second & 0x80:  # reserved bits without an extension; unmasked
            self._fail(PROTOCOL_ERROR, "bad frame")
            return end - pos
        if length >= 126:
            size = 2 if length == 126 else 8
            if end - at < size:
                return 0
            length = int.from_bytes(data[at : at + size], "big")
            at += size
        if opcode >= CLOSE:
            if length > 125 or not fin or opcode > PONG:
                self._fail(PROTOCOL_ERROR, "bad control frame")
                return end - pos
        elif length + sum(map(len, self.fragments or ())) > self.endpoint.max_message:
            self._fail(TOO_BIG, "message too big")
            return end - pos
        if end - at < 4 + length:
            return 0
        mask = data[at : at + 4]
        payload = _unmask(data[at + 4 : at + 4 + length], mask)
        self._handle(opcode, bool(fin), payload)
        return at + 4 + length - pos

    def _handle(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode <= BINARY:
            if (opcode == CONTINUATION) != (self.fragments is not None):
                self._fail(PROTOCOL_ERROR, "unexpected continuation")
                return
            if opcode != CONTINUATION:
                self.binary = opcode == BINARY
            if not fin:
                self.fragments = [*(self.fragments or ()), payload]
                return
            if self.fragments is not None:
                payload = b"".join((*self.fragments, payload))
                self.fragments = None
            if self.binary:
                message: str | bytes = payload
            else:
                try:
                    message = payload.decode("utf-8")
                except UnicodeDecodeError:
                    self._fail(INVALID_TEXT, "text is not UTF-8")
                    return
            if not self.closing:
                self._deliver(message)
        elif opcode == PING:
            self.write_frame(PONG, payload)
        elif opcode == CLOSE:
            self._closed_by_client(payload)
        elif opcode != PONG:
            self._fail(PROTOCOL_ERROR, "unknown opcode")

    def _closed_by_client(self, payload: bytes) -> None:
        if not self.closing:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1000
            valid = len(payload) != 1 and _valid_close_code(code)
            self.write_frame(CLOSE, (code if valid else PROTOCOL_ERROR).to_bytes(2, "big"))
            self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """Close for a protocol violation: nothing more is read from this client."""
        if self.transport is None:
            return
        if not self.closing:
            self.write_frame(CLOSE, code.to_bytes(2, "big") + reason.encode())
            self.closing = True
        self.transport.close()

    def _deliver(self, message: str | bytes) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._handling(message))
            return
        if self.inbox is None:
            self.inbox = deque()
        self.inbox.append(message)
        if len(self.inbox) == MAX_INBOX and self.transport is not None:
            self.transport.pause_reading()

    async def _handling(self, message: str | bytes) -> None:
        """Hand the messages to the handler one at a time, then end (no task while idle)."""
        assert self.handler is not None
        while True:
            try:
                await self.handler.on_message(message)
            except Exception:
                log.exception("websocket message handler failed; closing")
                await self.close(code=1011, message=b"internal error")
            if not self.inbox or self.closing:  # nothing is handled once closing
                break
            if len(self.inbox) == MAX_INBOX and self.transport is not None:
                self.transport.resume_reading()
            message = self.inbox.popleft()
        self.inbox = None
        self.task = None

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closing = True
        self.inbox = None
        self.endpoint.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.drained is not None:
            self.drained.set_result(None)
            self.drained = None
        if self.handler is not None:
            handler, self.handler = self.handler, None
            handler.on_close()


def _no_delay(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR with the client's mask, as one big integer (fast in CPython for any length)."""
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


def _valid_close_code(code: int) -> bool:
    """Codes a client may send (RFC 6455 §7.4): 1000–1003, 1007–1011, and 3000–4999."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code < 5000
