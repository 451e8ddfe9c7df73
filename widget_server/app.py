"""The widget server's aiohttp application: routes, CORS and origin checks, security headers,
static files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from rooms.desk import Desk
from widget_server import script
from widget_server.api import (
    CONTEXT,
    RateLimiter,
    WidgetContext,
    attachments,
    client_address,
    closing,
    faq,
    messages,
    presence,
    sessions,
    verification,
    ws,
)
from widget_server.client import ClientAddresses
from widget_server.dashboard import Dashboard
from widget_server.errors import Handler, api_error
from widget_server.hub import SessionSignals
from widget_server.settings import WidgetSettings
from widget_server.websocket import Endpoint, Runner

log = logging.getLogger("refdesk.widget_server")

STATIC = Path(__file__).parent / "static"
OPENAPI = Path(__file__).parent / "openapi.json"
# Bodies are short JSON documents; 64 KiB leaves room for a long message and rejects abuse early.
MAX_BODY = 64 * 1024


# Requests that change something: a browser sends them cross-site without asking first when
# they look like a form post (e.g. Content-Type text/plain), so CORS alone does not stop them.
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def origin_check(allowed: tuple[str, ...], own: str) -> Callable[[str], bool]:
    """Whether an ``Origin`` may use the API (see :func:`_middleware`)."""
    any_origin = "*" in allowed
    origins = frozenset(allowed) | {own}

    def is_allowed(origin: str) -> bool:
        return any_origin or origin.lower() in origins

    return is_allowed


def _middleware(is_allowed: Callable[[str], bool]) -> web.middleware:  # type: ignore[valid-type]
    """Every request passes one layer (a WebSocket keeps it for as long as it is open, so one
    coroutine, not three): the origin check and CORS, the API's JSON errors, security headers.

    *Origins*: CORS for the sites in ``widget.allowed_origins``, and the server-side check. A
    state-changing request under /api/ or a WebSocket handshake that carries an ``Origin``
    header must come from an allowed origin (or the desk's own, where /demo is served); else
    403 ``origin_not_allowed`` before the handler runs. No ``Origin`` (curl, integrations):
    allowed. ``Origin: null`` (sandboxed frames, file: pages): only with ``*``.

    *Errors*: every failure under /api becomes ``{"error", "message"}`` with a fitting status
    (:func:`widget_server.errors.api_error`); other HTTP exceptions go out as they are, without
    the headers below.
    """

    @web.middleware
    async def widget_layer(request: web.Request, handler: Handler) -> web.StreamResponse:
        is_api = request.path.startswith("/api/")
        sent = request.headers.getall("Origin", [])
        origin = sent[0] if len(sent) == 1 else None
        allowed_origin = origin if origin is not None and is_allowed(origin) else None
        refuse = is_api and bool(sent) and allowed_origin is None
        response: web.StreamResponse
        if refuse and (
            request.method in _STATE_CHANGING
            or request.method == "OPTIONS"
            or request.headers.get("Upgrade", "").lower() == "websocket"
        ):
            response = web.json_response(
                {"error": "origin_not_allowed", "message": "This site may not use the desk."},
                status=403,
                headers={"Vary": "Origin"},
            )
        elif is_api and request.method == "OPTIONS" and allowed_origin:
            response = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            try:
                response = await handler(request)
            except Exception as exc:
                answer = api_error(request, exc)
                if answer is None:
                    raise
                response = answer
        headers = response.headers
        if is_api and allowed_origin:
            headers["Access-Control-Allow-Origin"] = allowed_origin
            headers["Access-Control-Expose-Headers"] = "Content-Disposition, Retry-After"
            headers["Vary"] = "Origin"
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if is_api:
            headers.setdefault("Cache-Control", "no-store")
        return response

    return widget_layer


async def _demo(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(
        STATIC / "demo.html",
        headers={
            "Content-Type": "text/html; charset=utf-8",
            # The demo page proves the widget needs nothing but its own origin.
            "Content-Security-Policy": (
                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                "connect-src 'self' ws: wss:; img-src 'self' data: blob:"
            ),
        },
    )


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(OPENAPI, headers={"Content-Type": "application/json"})


async def _root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/demo")


async def _close_sockets(app: web.Application) -> None:
    ctx = app[CONTEXT]
    await ctx.endpoint.close_all(code=1001, message="server shutting down")
    for socket in list(ctx.sockets):
        await socket.close(code=1001, message=b"server shutting down")


def runner(app: web.Application, **kwargs: Any) -> Runner:
    """The app's runner: its sites serve the visitors' WebSockets with refdesk's own endpoint
    (:mod:`widget_server.websocket`) and everything else with aiohttp."""
    return Runner(app, app[CONTEXT].endpoint, **kwargs)


def create_app(settings: WidgetSettings, desk: Desk) -> web.Application:
    signals = SessionSignals(carry_messages=settings.sole_writer)
    desk.subscribe(signals.on_desk_event)
    is_allowed = origin_check(settings.allowed_origins, settings.own_origin)
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_middleware(is_allowed)])
    ctx = app[CONTEXT] = WidgetContext(
        desk=desk,
        signals=signals,
        settings=settings,
        limiter=RateLimiter(settings.new_sessions_per_minute),
        clients=ClientAddresses(settings.trusted_proxies, settings.forwarded_header),
        endpoint=Endpoint(lambda path, origin: None, heartbeat=30, max_message=ws.MAX_FRAME),
    )
    desk.subscribe(ctx.presence.on_desk_event)
    take_chat, take_presence = ws.accept(ctx, is_allowed), presence.accept(ctx, is_allowed)
    ctx.endpoint.accept = lambda path, origin: (
        take_chat(path, origin) or take_presence(path, origin)
    )
    app.on_shutdown.append(_close_sockets)
    app.add_routes(sessions.routes)
    app.add_routes(messages.routes)
    app.add_routes(attachments.routes)
    app.add_routes(ws.routes)
    app.add_routes(presence.routes)
    app.add_routes(closing.routes)
    app.add_routes(faq.routes)
    app.add_routes(verification.routes)
    app.router.add_get("/api/openapi.json", _openapi)
    widget_js = script.build(settings.languages)
    app.router.add_get("/widget.js", widget_js.response)
    if settings.dashboard:
        labels = {
            t: names.get(settings.default_language, t) for t, names in settings.topics.items()
        }
        dashboard = Dashboard(
            desk, settings.desk_name, labels, settings.verify_openid, client_address
        )
        app.add_routes(dashboard.routes())
    app.router.add_get("/demo", _demo)
    app.router.add_get("/", _root)
    return app
