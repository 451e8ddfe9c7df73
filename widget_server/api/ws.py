"""The live channel: one WebSocket per open widget, documented in docs/API.md.

The token travels in the first frame (never in the URL, so it stays out of access logs).
The server pushes every message after the client's cursor, reading them from the store each
time the session's signal fires, so a reconnecting widget gets exactly what it missed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

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

log = logging.getLogger("refdesk.widget_server.ws")

routes = web.RouteTableDef()

HELLO_TIMEOUT = 10.0
MAX_FRAME = 64 * 1024
CLOSE_CODES = {401: 4401, 403: 4403, 404: 4404}
# What ends the connection (the same as ends ``async for msg in ws``), and an error.
_ENDED = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


class _Channel:
    """One visitor connection after its hello: frames in, the store's changes out.

    It holds no task while idle: the hub calls :meth:`wake` when the session changes, which
    starts one short task that reads the store after the cursor and pushes what is new (a wake
    during that read makes it read once more, so nothing stored meanwhile is missed). When the
    hub hands over the message that is the whole change, it is pushed without reading. An idle
    connection costs its socket, aiohttp's handler and this object.
    """

    __slots__ = (
        "after",
        "again",
        "busy",
        "ctx",
        "lock",
        "sending",
        "session",
        "shown",
        "task",
        "ws",
    )

    def __init__(
        self, ws: web.WebSocketResponse, ctx: WidgetContext, session: Session, after: int
    ) -> None:
        self.ws = ws
        self.ctx = ctx
        self.session = session
        self.after = after  # the highest seq pushed
        self.shown: str | None = None  # view_tag of the last session view sent
        self.lock = asyncio.Lock()
        self.busy = False  # a read-and-push is under way
        self.again = False  # the session changed during it: read once more
        self.task: asyncio.Task[None] | None = None
        self.sending: str | None = None  # client_id of the visitor's message being stored

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.lock:
            await self.ws.send_json(frame)

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

    async def start(self) -> None:
        """The ``ready`` frame and everything after the client's cursor, before any frame of
        the client's is handled (so no ``ack`` comes before ``ready``)."""
        self.busy = True
        self.again = True
        await self._pushing()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

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
            log.exception("websocket push for session %s failed; closing", self.session.id)
            await self.ws.close(code=1011, message=b"internal error")
        finally:
            self.busy = False
            self.task = None

    async def _push(self) -> bool:
        """Send every stored change after the cursor and the session view if it changed (the
        first time: the ``ready`` frame first). True if it must read again: there may be more,
        or the session changed meanwhile."""
        self.again = False
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


async def _hello(
    ws: web.WebSocketResponse, ctx: WidgetContext, session_id: str
) -> tuple[Session, int] | None:
    """Read and check the hello frame; on failure tell the client why and close."""

    async def refuse(status: int, code: str, message: str) -> None:
        await ws.send_json({"type": "error", "error": code, "message": message})
        await ws.close(code=CLOSE_CODES.get(status, 4400), message=code.encode())

    try:
        msg = await ws.receive(timeout=HELLO_TIMEOUT)
    except TimeoutError:
        await refuse(401, "missing_token", "Send a hello frame with the token first.")
        return None
    if msg.type != WSMsgType.TEXT:
        await ws.close()
        return None
    hello = _frame(msg.data)
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        await refuse(400, "bad_frame", "The first frame must be {type: hello, token, after}.")
        return None
    token = hello.get("token")
    if not isinstance(token, str) or not token:
        await refuse(401, "missing_token", "The hello frame needs the session token.")
        return None
    after = hello.get("after", 0)
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_INT:
        await refuse(400, "bad_frame", "'after' must be a non-negative integer.")
        return None
    try:
        session = await ctx.desk.authenticate(session_id, token)
    except DeskError as exc:
        await refuse(desk_error_status(exc), exc.code, str(exc))
        return None
    return session, after


def _frame(text: str) -> Any:
    """A frame's JSON, or None when it is not acceptable JSON (the caller answers bad_frame)."""
    try:
        return parse_json(text)
    except ApiError:
        return None


@routes.get("/api/sessions/{session_id}/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_FRAME)
    await ws.prepare(request)
    ctx = context(request)
    ctx.sockets.add(ws)
    hello = await _hello(ws, ctx, request.match_info["session_id"])
    if hello is None:
        return ws
    session, after = hello
    del hello
    channel = _Channel(ws, ctx, session, after)
    ctx.signals.watch(session.id, channel)
    try:
        await channel.start()
        while True:  # not `async for`: one coroutine less per open connection
            msg = await ws.receive()
            if msg.type == WSMsgType.TEXT:
                frame = _frame(msg.data)
                try:
                    await channel.handle_frame(frame)
                except Exception:
                    reference = secrets.token_hex(4)
                    log.exception("websocket frame failed (reference %s)", reference)
                    await channel.send(
                        {
                            "type": "error",
                            "error": "internal_error",
                            "message": "That frame could not be handled.",
                            "reference": reference,
                        }
                    )
                    if isinstance(frame, dict) and frame.get("type") == "send":
                        # A message that could not be stored must not be overtaken by the
                        # ones behind it: end the connection; the widget reconnects and
                        # sends its outbox again, in order.
                        await ws.close(code=1011, message=b"internal error")
                        break
            elif msg.type in _ENDED:
                break
    finally:
        ctx.signals.unwatch(session.id, channel)
        channel.stop()
    return ws
