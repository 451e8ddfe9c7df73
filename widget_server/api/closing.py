"""After the chat: feedback, transcript download, transcript by email."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web

from widget_server.api import authenticated_session, context, json_body
from widget_server.errors import ApiError

routes = web.RouteTableDef()


@routes.post("/api/sessions/{session_id}/feedback")
async def give_feedback(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    feedback = await context(request).desk.give_feedback(session, await json_body(request))
    return web.json_response(
        {
            "feedback": {
                "rating": feedback.rating,
                "comment": feedback.comment,
                "updated_at": feedback.updated_at.isoformat(),
            }
        }
    )


@routes.get("/api/sessions/{session_id}/transcript")
async def get_transcript(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    kind = request.query.get("format", "html")
    if kind not in ("html", "text"):
        raise ApiError(400, "bad_parameter", "'format' must be html or text.")
    text_body, html_body = await context(request).desk.transcript(session)
    # The day as the library counts it (the transcript's times are in its zone too).
    zone = ZoneInfo(context(request).settings.timezone)
    day = session.created_at.astimezone(zone).strftime("%Y-%m-%d")
    extension = "html" if kind == "html" else "txt"
    return web.Response(
        text=html_body if kind == "html" else text_body,
        content_type="text/html" if kind == "html" else "text/plain",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="transcript-{day}.{extension}"',
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
            ),
        },
    )


@routes.post("/api/sessions/{session_id}/transcript/email")
async def email_transcript(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    await context(request).desk.email_transcript(session)
    return web.json_response({"queued": True, "to": session.form.email}, status=202)
