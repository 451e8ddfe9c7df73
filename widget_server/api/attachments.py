"""Attachments: a visitor sends a file (the raw bytes as the body), and fetches the files of their
own chat — theirs, and the librarians' — by id."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_exceptions import HttpProcessingError

from rooms.attachments import AttachmentRefused
from widget_server.api import MAX_INT, authenticated_session, context, message_json
from widget_server.errors import ApiError

routes = web.RouteTableDef()

_REFUSED = {
    "attachment_too_large": 413,
    "attachment_type_not_allowed": 415,
    "attachment_unreadable": 422,
    "attachment_empty": 422,
}
_CHUNK = 64 * 1024


async def _body(request: web.Request, limit: int) -> bytes:
    """The upload, read up to ``limit`` (a larger one is refused without reading it all)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise AttachmentRefused("attachment_too_large", "The file is too large.")
    data = bytearray()
    try:
        while chunk := await request.content.read(_CHUNK):
            data += chunk
            if len(data) > limit:
                raise AttachmentRefused("attachment_too_large", "The file is too large.")
    except (ClientPayloadError, HttpProcessingError, ValueError):
        raise ApiError(400, "bad_body", "The upload could not be read.") from None
    return bytes(data)


@routes.post("/api/sessions/{session_id}/attachments")
async def send_attachment(request: web.Request) -> web.Response:
    """``POST …/attachments?client_id=…&filename=…&caption=…`` with the file as the body."""
    session = await authenticated_session(request)
    desk = context(request).desk
    query = request.query
    try:
        data = await _body(request, desk.rules.attachments.max_size)
        message, created = await desk.visitor_attachment(
            session, data, query.get("filename", ""), query.get("caption"), query.get("client_id")
        )
    except AttachmentRefused as exc:
        raise ApiError(_REFUSED.get(exc.code, 422), exc.code, str(exc)) from None
    return web.json_response({"message": message_json(message)}, status=201 if created else 200)


@routes.get("/api/sessions/{session_id}/attachments/{attachment_id}")
async def get_attachment(request: web.Request) -> web.StreamResponse:
    """A file of this chat, only of this chat (another chat's id is unknown here). Images show
    inline; anything else downloads. ``?thumbnail=1``: the small version, where there is one."""
    session = await authenticated_session(request)
    raw = request.match_info["attachment_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 0 < int(raw) <= MAX_INT:
        raise ApiError(404, "unknown_attachment", "No such file in this chat.")
    found = await context(request).desk.attachment(session.id, int(raw))
    if found is None or found.data is None:
        raise ApiError(404, "unknown_attachment", "No such file in this chat.")
    data, mimetype = found.data, found.mimetype
    if request.query.get("thumbnail") and found.thumbnail and found.thumb_mimetype:
        data, mimetype = found.thumbnail, found.thumb_mimetype
    inline = mimetype in ("image/png", "image/jpeg", "image/gif", "image/webp")
    disposition = "inline" if inline else "attachment"
    return web.Response(
        body=data,
        headers={
            "Content-Type": mimetype,
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(found.filename)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "no-store",  # a shared computer keeps no copy
            "Cross-Origin-Resource-Policy": "same-site",
        },
    )
