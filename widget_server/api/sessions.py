"""Sessions: start one, read it, end it."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web

from rooms.errors import SessionStillOpen
from rooms.hours import format_next_open
from widget_server.api import (
    MAX_INT,
    authenticated_session,
    client_key,
    context,
    json_body,
    session_json,
    session_view,
)
from widget_server.errors import ApiError

routes = web.RouteTableDef()


@routes.get("/api/config")
async def get_widget_config(request: web.Request) -> web.Response:
    ctx = context(request)
    settings = ctx.settings
    desk = ctx.desk
    available = await desk.availability()
    status = available.status
    now = desk.clock()
    next_open = status.next_open if status is not None and not status.open else None
    tz = ZoneInfo(settings.timezone)
    hours = {
        "open": available.open,
        "staffed": available.staffed,
        "live": available.live,
        "reason": status.reason if status is not None else "open",
        "label": status.label if status is not None else None,
        # The same label in each of the desk's languages (a holiday's name is translated).
        "labels": {lang: desk.hours.status(now, lang).label for lang in desk.rules.languages}
        if desk.hours is not None and status is not None and status.label
        else None,
        "next_open": next_open.isoformat() if next_open else None,
        "next_open_text": {
            lang: format_next_open(next_open, now, tz, lang) for lang in desk.rules.languages
        }
        if next_open
        else None,
        "week": {lang: desk.hours.describe_week(lang, now) for lang in desk.rules.languages}
        if desk.hours is not None
        else None,
        "when_closed": settings.when_closed,
    }
    return web.json_response(
        {
            "desk_name": settings.desk_name,
            "default_language": settings.default_language,
            "timezone": settings.timezone,
            "languages": list(desk.rules.languages),
            "topics": [{"id": topic, "label": labels} for topic, labels in settings.topics.items()],
            "max_message_length": settings.max_message_length,
            "fields": {"member_number": True},
            "hours": hours,
            "faq": any(e.public for e in desk.knowledge.entries.values()),
            "transcript_email": desk.rules.email_enabled,
            "edit_window": desk.rules.visitor_edit_window,
            "attachments": {
                "max_size": desk.rules.attachments.max_size,
                "types": list(desk.rules.attachments.types),
            },
            "privacy": {
                "retention_days": settings.retention_days,
                "notice": dict(settings.privacy_notice) or None,
                "link": settings.privacy_link,
            },
            "invitation": {
                "after": settings.invitation.after,
                "pages": list(settings.invitation.pages),
                "text": dict(settings.invitation.text) or None,
            }
            if settings.invitation is not None
            else None,
        },
        headers={"Cache-Control": "no-cache"},
    )


@routes.post("/api/resume")
async def resume_session(request: web.Request) -> web.Response:
    """Trade the signed link from a reply email for this browser's session token."""
    link = (await json_body(request)).get("link")
    if not isinstance(link, str) or not 1 <= len(link) <= 200:
        raise ApiError(
            422, "validation_failed", "Send the link's token.", fields={"link": "required"}
        )
    session, token = await context(request).desk.resume(link)
    view = await session_view(context(request), session)
    return web.json_response({"session": view, "token": token})


@routes.post("/api/sessions")
async def create_session(request: web.Request) -> web.Response:
    desk = context(request).desk
    raw = await json_body(request)
    raw.pop("user_agent", None)
    invitation = raw.pop("invitation", None)  # a librarian's invitation, accepted (presence.py)
    if invitation is not None and not (isinstance(invitation, str) and len(invitation) <= 64):
        raise ApiError(
            422,
            "validation_failed",
            "Some fields are missing or invalid.",
            fields={"invitation": "must be a string of at most 64 characters"},
        )
    user_agent = request.headers.get("User-Agent")
    if user_agent is not None:  # header bytes that are not UTF-8 must not reach the store
        user_agent = user_agent.encode("utf-8", "replace").decode("utf-8")
    form = desk.validate_form({**raw, "user_agent": user_agent} if user_agent else raw)
    client = await client_key(request)
    await desk.check_client(client)
    context(request).limiter.check(client)
    session, token = await desk.start_session(form, client_key=client, invitation=invitation)
    session = await desk.get_session(session.id)  # as stored (timestamps in store precision)
    return web.json_response({"session": session_json(session), "token": token}, status=201)


@routes.get("/api/sessions/{session_id}")
async def get_session(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    return web.json_response({"session": await session_view(context(request), session)})


@routes.post("/api/sessions/{session_id}/end")
async def end_session(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    closed = await context(request).desk.end_session(session.id, by="visitor")
    return web.json_response({"session": await session_view(context(request), closed)})


@routes.delete("/api/sessions/{session_id}")
async def erase_session(request: web.Request) -> web.Response:
    """The visitor deletes their ended chat ("Hapus percakapan ini"): erased from the store and
    the homeserver (docs/PRIVACY.md); the token stops working."""
    session = await authenticated_session(request)
    if session.is_open:
        raise SessionStillOpen("End the chat first; then it can be deleted.")
    erased = await context(request).desk.rights.erase(session_id=session.id, by="visitor")
    return web.json_response({"erased": erased.sessions == 1})


@routes.post("/api/sessions/{session_id}/language")
async def set_language(request: web.Request) -> web.Response:
    """The visitor switched language: the desk's words to them follow from now on."""
    session = await authenticated_session(request)
    raw = await json_body(request)
    ctx = context(request)
    updated = await ctx.desk.set_visitor_language(session, raw.get("language"))
    return web.json_response({"session": await session_view(ctx, updated)})


@routes.post("/api/sessions/{session_id}/typing")
async def set_typing(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    typing = (await json_body(request)).get("typing")
    if not isinstance(typing, bool):
        raise ApiError(
            422,
            "validation_failed",
            "'typing' must be true or false.",
            fields={"typing": "must be a boolean"},
        )
    await context(request).desk.visitor_typing(session, typing)
    return web.Response(status=204)


@routes.post("/api/sessions/{session_id}/read")
async def mark_read(request: web.Request) -> web.Response:
    session = await authenticated_session(request)
    up_to = (await json_body(request)).get("up_to")
    if isinstance(up_to, bool) or not isinstance(up_to, int) or not 0 <= up_to <= MAX_INT:
        raise ApiError(
            422,
            "validation_failed",
            "'up_to' must be a message id.",
            fields={"up_to": "must be a non-negative integer"},
        )
    await context(request).desk.visitor_read(session, up_to)
    return web.Response(status=204)
