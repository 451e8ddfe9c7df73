"""The live channel: one WebSocket per open widget, documented in docs/API.md.

The token travels in the first frame (never in the URL, so it stays out of access logs).
The server pushes every message after the client's cursor, reading them from the store each
time the session's signal fires, so a reconnecting widget gets exactly what it missed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from rooms.desk import DeskError
from rooms.session import Message, Session, ValidationError
from widget_server.api import (
    MAX_INT,
    WidgetContext,
    context,
    live_view,
    message_json,
    parse_json,
    view_tag,
)
from widget_server.errors import ApiError, desk_error_status
from widget_server.websocket import Handler, WebSocket

log = logging.getLogger("refdesk.widget_server.ws")

routes = web.RouteTableDef()

HELLO_TIMEOUT = 10.0
MAX_FRAME = 64 * 1024
CLOSE_CODES = {401: 4401, 403: 4403, 404: 4404}
# What ends the connection (the same as ends ``async for msg in ws``), and an error.
_ENDED = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


class Socket(Protocol):
    """What a channel needs of its WebSocket: refdesk's own or aiohttp's."""

    @property
    def closed(self) -> bool: ...

    async def send_json(self, data: Any) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool | None: ...


class _Channel:
    """One visitor connection: its hello, then frames in and the store's changes out.

    The same object serves refdesk's own WebSocket (:mod:`widget_server.websocket`, which calls
    :meth:`on_text` per message and holds no task while idle) and aiohttp's (the route below, for
    a handshake that reached aiohttp). It holds no task while idle either: the hub calls
    :meth:`wake` when the session changes, which starts one short task that reads the store
    after the cursor and pushes what is new (a wake during that read makes it read once more,
    so nothing stored meanwhile is missed). When the hub hands over the message that is the
    whole change, it is pushed without reading.
    """

    __slots__ = (
        "after",
        "again",
        "busy",
        "ctx",
        "hello_timer",
        "sending",
        "session",
        "session_id",
        "shown",
        "task",
        "ws",
    )

    def __init__(self, ws: Socket, ctx: WidgetContext, session_id: str) -> None:
        self.ws = ws
        self.ctx = ctx
        self.session_id = session_id
        self.session: Session | None = None  # once the hello's token is checked
        self.after = 0  # the highest seq pushed
        self.shown: str | None = None  # view_tag of the last session view sent
        self.busy = False  # a read-and-push is under way
        self.again = False  # the session changed during it: read once more
        self.task: asyncio.Task[None] | None = None
        self.sending: str | None = None  # client_id of the visitor's message being stored
        self.hello_timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            HELLO_TIMEOUT, self._no_hello
        )

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json(frame)

    async def on_message(self, text: str | bytes) -> None:
        """One message from the client: the hello first, then frames (a binary message is
        not a frame: it gets ``bad_frame``)."""
        if self.session is None:
            if self.hello_timer is not None:  # else: refused already, or closing
                self.hello_timer.cancel()
                self.hello_timer = None
                await self._hello(text)
            return
        frame = _frame(text)
        try:
            await self.handle_frame(frame)
        except Exception:
            reference = secrets.token_hex(4)
            log.exception("websocket frame failed (reference %s)", reference)
            await self.send(
                {
                    "type": "error",
                    "error": "internal_error",
                    "message": "That frame could not be handled.",
                    "reference": reference,
                }
            )
            if isinstance(frame, dict) and frame.get("type") == "send":
                # A message that could not be stored must not be overtaken by the ones
                # behind it: end the connection; the widget reconnects and sends its outbox
                # again, in order.
                await self.ws.close(code=1011, message=b"internal error")

    def on_close(self) -> None:
        """The connection is gone."""
        if self.hello_timer is not None:
            self.hello_timer.cancel()
            self.hello_timer = None
        if self.session is not None:
            self.ctx.signals.unwatch(self.session.id, self)
        if self.task is not None:
            self.task.cancel()

    def _no_hello(self) -> None:
        self.hello_timer = None
        self.task = asyncio.create_task(
            self._refuse(401, "missing_token", "Send a hello frame with the token first.")
        )

    async def _refuse(self, status: int, code: str, message: str) -> None:
        await self.send({"type": "error", "error": code, "message": message})
        await self.ws.close(code=CLOSE_CODES.get(status, 4400), message=code.encode())

    async def _hello(self, text: str | bytes) -> None:
        """Check the hello frame; then watch the session and send ``ready`` and everything
        after the client's cursor, before any other frame is handled (so no ``ack`` comes
        before ``ready``). On failure tell the client why and close."""
        hello = _frame(text)
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await self._refuse(
                400, "bad_frame", "The first frame must be {type: hello, token, after}."
            )
            return
        token = hello.get("token")
        if not isinstance(token, str) or not token:
            await self._refuse(401, "missing_token", "The hello frame needs the session token.")
            return
        after = hello.get("after", 0)
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_INT:
            await self._refuse(400, "bad_frame", "'after' must be a non-negative integer.")
            return
        try:
            session = await self.ctx.desk.authenticate(self.session_id, token)
        except DeskError as exc:
            await self._refuse(desk_error_status(exc), exc.code, str(exc))
            return
        if self.ws.closed:  # gone while the token was checked
            return
        self.session = session
        self.after = after
        self.ctx.signals.watch(session.id, self)
        self.busy = True
        self.again = True
        await self._pushing()

    def wake(self, message: Message | None = None) -> None:
        """The session changed (only by ``message``, if given): push what is new (called by
        the hub). While a push is under way, the next one reads the store.

        The visitor's own message, being stored for a ``send`` frame of this connection, wakes
        nothing here: its ``ack`` carries it, and the next read brings it along for the cursor.
        A message is pushed as it came only where the hub may carry messages (one process
        writes the store); else the connection reads.
        """
        if message is not None:
            if message.client_id is not None and message.client_id == self.sending:
                return
            if not self.ctx.signals.carry_messages:
                message = None
        if self.busy:
            self.again = True
            return
        self.busy = True
        self.again = message is None  # set here: a wake before the task starts must count
        self.task = asyncio.create_task(self._pushing(message))

    async def _pushing(self, message: Message | None = None) -> None:
        try:
            if message is not None and message.seq > self.after:
                await self.send({"type": "message", "message": message_json(message)})
                self.after = message.seq
            while self.again:
                self.again = await self._push()
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("websocket push for session %s failed; closing", self.session_id)
            await self.ws.close(code=1011, message=b"internal error")
        finally:
            self.busy = False
            self.task = None

    async def _push(self) -> bool:
        """Send every stored change after the cursor and the session view if it changed (the
        first time: the ``ready`` frame first). True if it must read again: there may be more,
        or the session changed meanwhile."""
        self.again = False
        assert self.session is not None
        update = await self.ctx.desk.visitor_update(self.session.id, self.after)
        view = live_view(self.ctx, update.session, update.position)
        tag = view_tag(view)
        if self.shown is None:
            self.shown = tag
            await self.send({"type": "ready", "session": view})
        for message in update.messages:
            await self.send({"type": "message", "message": message_json(message)})
            self.after = message.seq
        if tag != self.shown:
            self.shown = tag
            await self.send({"type": "session", "session": view})
        return len(update.messages) >= 200 or self.again

    async def handle_frame(self, data: Any) -> None:
        assert self.session is not None
        if not isinstance(data, dict):
            await self.send(
                {"type": "error", "error": "bad_frame", "message": "Frames are JSON objects."}
            )
            return
        kind = data.get("type")
        if kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "typing":
            if isinstance(data.get("typing"), bool):
                await self.ctx.desk.visitor_typing(self.session, data["typing"])
        elif kind == "read":
            up_to = data.get("up_to")
            if isinstance(up_to, int) and not isinstance(up_to, bool) and 0 <= up_to <= MAX_INT:
                await self.ctx.desk.visitor_read(self.session, up_to)
        elif kind == "send":
            client_id = data.get("client_id") if isinstance(data.get("client_id"), str) else None
            self.sending = client_id
            try:
                message, _ = await self.ctx.desk.visitor_message(
                    self.session, data.get("body"), data.get("client_id")
                )
            except ValidationError as exc:
                await self.send(
                    {
                        "type": "error",
                        "client_id": client_id,
                        "error": "validation_failed",
                        "message": str(exc),
                        "fields": exc.fields,
                    }
                )
                return
            except DeskError as exc:
                await self.send(
                    {
                        "type": "error",
                        "client_id": client_id,
                        "error": exc.code,
                        "message": str(exc),
                    }
                )
                return
            finally:
                self.sending = None
            await self.send(
                {"type": "ack", "client_id": client_id, "message": message_json(message)}
            )
        else:
            await self.send(
                {
                    "type": "error",
                    "error": "unknown_frame",
                    "message": f"Unknown frame type {kind!r}.",
                }
            )


def _frame(text: str | bytes) -> Any:
    """A frame's JSON, or None when it is not acceptable JSON or not text (the caller answers
    bad_frame)."""
    if isinstance(text, bytes):
        return None
    try:
        return parse_json(text)
    except ApiError:
        return None


_PATH = re.compile(r"/api/sessions/([^{}/]+)/ws")  # as aiohttp matches {session_id}


def accept(
    ctx: WidgetContext, origin_allowed: Callable[[str], bool]
) -> Callable[[str, str | None], Callable[[WebSocket], Handler] | None]:
    """What refdesk's own WebSocket endpoint takes: this route's handshakes from an allowed
    origin (any other origin goes on to aiohttp, whose middleware refuses it)."""

    def take(path: str, origin: str | None) -> Callable[[WebSocket], Handler] | None:
        match = _PATH.fullmatch(path)
        if match is None or (origin is not None and not origin_allowed(origin)):
            return None
        session_id = match.group(1)
        return lambda ws: _Channel(ws, ctx, session_id)

    return take


@routes.get("/api/sessions/{session_id}/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    """The channel on aiohttp's WebSocket: for a handshake the front door did not take (it
    came on a kept-alive connection, e.g. from a proxy that reuses its upstream connections)."""
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_FRAME, compress=False)
    await ws.prepare(request)
    ctx = context(request)
    ctx.sockets.add(ws)
    channel = _Channel(ws, ctx, request.match_info["session_id"])
    try:
        while True:  # not `async for`: one coroutine less per open connection
            msg = await ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await channel.on_message(msg.data)
            elif msg.type in _ENDED:
                break
    finally:
        channel.on_close()
    return ws
