"""Messages: send one (idempotent by client_id), list them after a cursor (optionally waiting),
edit or delete one of the visitor's own."""

from __future__ import annotations

import asyncio

from aiohttp import web

from widget_server.api import (
    MAX_INT,
    authenticated_session,
    context,
    int_param,
    json_body,
    live_view,
    message_json,
    view_tag,
)
from widget_server.errors import ApiError

routes = web.RouteTableDef()

MAX_WAIT = 30


@routes.post("/api/sessions/{session_id}/messages")
async def send_message(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    raw = await json_body(request)
    message, created = await context(request).desk.visitor_message(
        session, raw.get("body"), raw.get("client_id")
    )
    return web.json_response({"message": message_json(message)}, status=201 if created else 200)


def _message_id(request: web.Request) -> int:
    raw = request.match_info["message_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 0 < int(raw) <= MAX_INT:
        raise ApiError(404, "unknown_message", "No such message in this chat.")
    return int(raw)


@routes.patch("/api/sessions/{session_id}/messages/{message_id}")
async def edit_message(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    message_id = _message_id(request)
    raw = await json_body(request)
    message = await context(request).desk.visitor_edit(session, message_id, raw.get("body"))
    return web.json_response({"message": message_json(message)})


@routes.delete("/api/sessions/{session_id}/messages/{message_id}")
async def delete_message(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    message = await context(request).desk.visitor_delete(session, _message_id(request))
    return web.json_response({"message": message_json(message)})


@routes.get("/api/sessions/{session_id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    after = int_param(request, "after", 0, 0, 2**62)
    wait = int_param(request, "wait", 0, 0, MAX_WAIT)
    limit = int_param(request, "limit", 200, 1, 500)
    seen_view = request.query.get("view")
    if seen_view is not None and len(seen_view) > 40:
        raise ApiError(400, "bad_parameter", "'view' is the view_tag of an earlier answer.")
    ctx = context(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    first_view: dict[str, object] | None = None
    while True:
        signal = ctx.signals.current(session.id)
        update = await ctx.desk.visitor_update(session.id, after, limit)
        messages, current = update.messages, update.session
        view = live_view(ctx, current, update.position)
        first_view = first_view or view
        remaining = deadline - loop.time()
        changed = view != first_view or (seen_view is not None and view_tag(view) != seen_view)
        if messages or not current.is_open or changed or remaining <= 0:
            break
        try:
            with ctx.signals.polling(session.id):
                await asyncio.wait_for(signal.wait(), remaining)
        except TimeoutError:
            pass
    cursor = messages[-1].seq if messages else after
    return web.json_response(
        {
            "messages": [message_json(m) for m in messages],
            "cursor": cursor,
            "session": view,
            "view_tag": view_tag(view),
        }
    )
