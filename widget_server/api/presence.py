"""On the site now: a light WebSocket on which a widget says where it is, and hears of a
librarian's invitation (docs/API.md, "Presence").

The widget opens it while no chat of its own goes on, and sends ``here`` (the page without its
query, its language, its seconds on the page); the desk keeps that in memory (rooms/live.py) for
as long as the connection lives. The same cheap endpoint as the chat's WebSocket carries it
(widget_server/websocket.py: no task while idle, pings every 30 s, a silent client cut off), so
a visitor who leaves, or whose connection dies, is gone from the list at once or within a
minute. No token, no cookie, nothing that outlives the page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from widget_server.api import WidgetContext, context, parse_json
from widget_server.api.ws import MAX_FRAME, Socket
from widget_server.errors import ApiError
from widget_server.websocket import Handler, WebSocket

log = logging.getLogger("refdesk.widget_server.presence")

routes = web.RouteTableDef()

PATH = "/api/presence"
HELLO_TIMEOUT = 10.0


class Presence:
    """One widget on a page: its ``here`` frames in, an invitation out."""

    __slots__ = ("ctx", "number", "timer", "ws")

    def __init__(self, ws: Socket, ctx: WidgetContext) -> None:
        self.ws = ws
        self.ctx = ctx
        self.number: int | None = None
        self.timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            HELLO_TIMEOUT, self._silent
        )

    async def send(self, frame: dict[str, Any]) -> None:
        if not self.ws.closed:
            try:
                await self.ws.send_json(frame)
            except ConnectionError:
                pass  # gone: on_close follows

    def _silent(self) -> None:
        self.timer = None
        self.ctx.presence.keep(asyncio.create_task(self._close(4400, b"say here first")))

    async def _close(self, code: int, message: bytes) -> None:
        await self.ws.close(code=code, message=message)

    async def on_message(self, text: str | bytes) -> None:
        frame = _frame(text)
        kind = frame.get("type") if isinstance(frame, dict) else None
        live = self.ctx.desk.live
        if not isinstance(frame, dict):
            await self.send({"type": "error", "error": "bad_frame", "message": "JSON objects."})
        elif kind == "here":
            if self.number is not None:
                live.heard(self.number, frame.get("page"), frame.get("language"))
                return
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            visitor = live.arrive(frame.get("page"), frame.get("language"), frame.get("on_page"))
            if visitor is None:  # the list is full: come back later
                await self.ws.close(code=1013, message=b"try again later")
                return
            self.number = visitor.number
            self.ctx.presence.by_number[visitor.number] = self
        elif kind == "answer" and self.number is not None:
            live.answer(self.number, frame.get("token"), frame.get("answer"))
        elif kind == "ping":
            await self.send({"type": "pong"})
        else:
            await self.send(
                {"type": "error", "error": "unknown_frame", "message": f"Unknown frame {kind!r}."}
            )

    def on_close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.number is not None:
            self.ctx.presence.by_number.pop(self.number, None)
            self.ctx.desk.live.leave(self.number)
            self.number = None


def _frame(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        return None
    try:
        return parse_json(text)
    except ApiError:
        return None


def accept(
    ctx: WidgetContext, origin_allowed: Callable[[str], bool]
) -> Callable[[str, str | None], Callable[[WebSocket], Handler] | None]:
    """The presence handshakes refdesk's own WebSocket endpoint takes (see api/ws.py)."""

    def take(path: str, origin: str | None) -> Callable[[WebSocket], Handler] | None:
        if path != PATH or (origin is not None and not origin_allowed(origin)):
            return None
        return lambda ws: Presence(ws, ctx)

    return take


@routes.get(PATH)
async def presence(request: web.Request) -> web.WebSocketResponse:
    """The same on aiohttp's WebSocket, for a handshake the front door did not take."""
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_FRAME, compress=False)
    await ws.prepare(request)
    ctx = context(request)
    ctx.sockets.add(ws)
    handler = Presence(ws, ctx)
    try:
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                await handler.on_message(msg.data)
            elif msg.type in (
                WSMsgType.CLOSE,
                WSMsgType.CLOSING,
                WSMsgType.CLOSED,
                WSMsgType.ERROR,
            ):
                break
    finally:
        handler.on_close()
    return ws
