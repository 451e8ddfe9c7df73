"""Membership verification from the widget: the visitor's answer to a librarian's `!verify`.

What the visitor types goes to the directory check and nowhere else: not the store, not the
logs, not the room. The client is identified for rate limits by a salted hash of its address
(``client_key``: behind a trusted proxy, the address the proxy reports).
"""

from __future__ import annotations

from aiohttp import web

from widget_server.api import authenticated_session, client_key, context, json_body
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
    outcome = await context(request).desk.submit_verification(
        session, await client_key(request), fields
    )
    return web.json_response(
        {
            "outcome": str(outcome.code),
            "message": outcome.visitor_text(session.form.language),
            "attempts_left": outcome.attempts_left,
            "locked": outcome.locked,
        }
    )
