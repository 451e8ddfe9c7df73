"""The FAQ search offered before "New conversation"."""

from __future__ import annotations

from aiohttp import web

from widget_server.api import context, int_param
from widget_server.errors import ApiError

routes = web.RouteTableDef()

QUERY_MAX = 200


@routes.get("/api/faq")
async def search_faq(request: web.Request) -> web.Response:
    ctx = context(request)
    query = request.query.get("q", "")
    if len(query) > QUERY_MAX:
        raise ApiError(400, "bad_parameter", f"'q' must be at most {QUERY_MAX} characters.")
    language = request.query.get("language") or ctx.settings.default_language
    if language not in ctx.desk.rules.languages:
        raise ApiError(400, "bad_parameter", "'language' must be one of the desk's languages.")
    limit = int_param(request, "limit", 5, 1, 20)
    entries = ctx.desk.knowledge.search(query, language, limit)
    return web.json_response(
        {
            "entries": [
                {"key": e.key, "question": e.title(language), "answer": e.text(language)}
                for e in entries
            ]
        },
        headers={"Cache-Control": "no-cache"},
    )
