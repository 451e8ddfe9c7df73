"""Membership verification from the widget: the visitor's answer to a librarian's `!verify`.

What the visitor types goes to the directory check and nowhere else: not the store, not the
logs, not the room. The client is identified for rate limits by a salted hash of its address.
"""

from __future__ import annotations

from aiohttp import web

from widget_server.api import authenticated_session, context, json_body
from widget_server.errors import ApiError

routes = web.RouteTableDef()


@routes.post("/api/sessions/{session_id}/verification")
async def verify(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    body = await json_body(request)
    fields = body.get("fields")
    if not isinstance(fields, dict):
        raise ApiError(
            422,
            "validation_failed",
            'Send the form as {"fields": {...}}.',
            fields={"fields": "must be an object"},
        )
    desk = context(request).desk
    client_key = await desk.client_key(request.remote or "unknown")
    outcome = await desk.submit_verification(session, client_key, fields)
    return web.json_response(
        {
            "outcome": str(outcome.code),
            "message": outcome.visitor_text(session.form.language),
            "attempts_left": outcome.attempts_left,
            "locked": outcome.locked,
        }
    )
