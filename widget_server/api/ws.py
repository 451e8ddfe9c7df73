"""The live channel: one WebSocket per open widget, documented in docs/API.md.

The token travels in the first frame (never in the URL, so it stays out of access logs).
The server pushes every message after the client's cursor, reading them from the store each
time the session's signal fires, so a reconnecting widget gets exactly what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from rooms.desk import DeskError
from rooms.session import Session, ValidationError
from widget_server.api import (
    MAX_INT,
    WidgetContext,
    context,
    live_view,
    message_json,
    parse_json,
    session_view,
)
from widget_server.errors import ApiError, desk_error_status

log = logging.getLogger("refdesk.widget_server.ws")

routes = web.RouteTableDef()

HELLO_TIMEOUT = 10.0
MAX_FRAME = 64 * 1024
CLOSE_CODES = {401: 4401, 403: 4403, 404: 4404}


class _Channel:
    def __init__(self, ws: web.WebSocketResponse, ctx: WidgetContext, session: Session) -> None:
        self.ws = ws
        self.ctx = ctx
        self.session = session
        self.lock = asyncio.Lock()

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.lock:
            await self.ws.send_json(frame)

    async def push(self, after: int, sent_view: dict[str, Any]) -> None:
        """Send every stored change after seq ``after`` and each new session view; forever."""
        while True:
            signal = self.ctx.signals.current(self.session.id)
            update = await self.ctx.desk.visitor_update(self.session.id, after)
            messages = update.messages
            for message in messages:
                await self.send({"type": "message", "message": message_json(message)})
                after = message.seq
            view = live_view(self.ctx, update.session, update.position)
            if view != sent_view:
                sent_view = view
                await self.send({"type": "session", "session": view})
            if len(messages) >= 200:
                continue
            await signal.wait()

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


async def _push(channel: _Channel, after: int, view: dict[str, Any]) -> None:
    try:
        await channel.push(after, view)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("websocket push for session %s failed; closing", channel.session.id)
        await channel.ws.close(code=1011, message=b"internal error")


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
    channel = _Channel(ws, ctx, session)
    view = await session_view(ctx, session)
    await channel.send({"type": "ready", "session": view})
    pusher = asyncio.create_task(_push(channel, after, view), name=f"ws-push-{session.id}")
    try:
        async for msg in ws:
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
            elif msg.type == WSMsgType.ERROR:
                break
            if pusher.done():
                break
    finally:
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pusher
    return ws
