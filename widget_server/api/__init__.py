"""The visitor API: one module per resource, shared state in typed app keys."""

from __future__ import annotations

import hashlib
import json
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from rooms.desk import Desk
from rooms.session import Message, Session
from widget_server.client import ClientAddresses, limit_key
from widget_server.errors import ApiError
from widget_server.hub import SessionSignals
from widget_server.settings import WidgetSettings
from widget_server.visitors import Visitors
from widget_server.websocket import Endpoint


class RateLimiter:
    """New sessions per client per minute (sliding window, in memory)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}

    def check(self, client_key: str) -> None:
        now = time.monotonic()
        window = self._seen.setdefault(client_key, deque())
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= self.per_minute:
            retry = int(60 - (now - window[0])) + 1
            raise ApiError(
                429,
                "too_many_requests",
                "Too many new chats from this connection; please wait a minute.",
                retry_after=retry,
            )
        window.append(now)
        if len(self._seen) > 10_000:  # forget idle clients
            for key in [k for k, w in self._seen.items() if not w or now - w[-1] > 60]:
                del self._seen[key]


@dataclass
class WidgetContext:
    desk: Desk
    signals: SessionSignals
    settings: WidgetSettings
    limiter: RateLimiter
    clients: ClientAddresses
    endpoint: Endpoint  # refdesk's own WebSockets (widget_server.websocket)
    # aiohttp's WebSockets: a handshake the endpoint's front door did not take (api/ws.py)
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    # The widgets on the site's pages, by their number in the desk's live list (api/presence.py)
    presence: Visitors = field(default_factory=Visitors)


CONTEXT = web.AppKey("refdesk_context", WidgetContext)


def context(request: web.Request) -> WidgetContext:
    return request.app[CONTEXT]


def client_address(request: web.Request) -> str:
    """The visitor's address: the peer, or what trusted proxies say (widget_server/client.py).

    Everything that limits or bans clients goes through here (via :func:`client_key`), once
    per request. Not kept on the request: str keys there warn, and ``web.RequestKey`` needs
    aiohttp 3.14.
    """
    return context(request).clients.resolve(request.remote, request.headers)


async def client_key(request: web.Request) -> str:
    """The salted hash of the client (its /64 for IPv6) that bans and limits count."""
    return await context(request).desk.client_key(limit_key(client_address(request)))


MAX_INT = 2**62


def parse_json(raw: bytes | str) -> Any:
    """Parse JSON from the internet: too deep, huge numbers and lone surrogates are refused."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, int limits
        raise ApiError(400, "bad_json", "The request body is not valid JSON.") from None
    if not _clean(data):
        raise ApiError(400, "bad_json", "The request body holds text or numbers out of range.")
    return data


def _clean(value: Any, depth: int = 0) -> bool:
    """Strings must encode as UTF-8 (no lone surrogates); integers must fit in 63 bits."""
    if depth > 32:
        return False
    if isinstance(value, str):
        return value.isascii() or _utf8(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return True
    if isinstance(value, int):
        return -MAX_INT <= value <= MAX_INT
    if isinstance(value, list):
        return all(_clean(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(_utf8(k) and _clean(v, depth + 1) for k, v in value.items())
    return False


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    except (RequestPayloadError, ClientPayloadError, HttpProcessingError, ValueError):
        raise ApiError(400, "bad_json", "The request body could not be decoded.") from None
    if not raw:
        raise ApiError(400, "bad_json", "The request needs a JSON body.")
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "The request body must be a JSON object.")
    return data


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise ApiError(401, "missing_token", "This request needs the session token.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing_token", "Use the header 'Authorization: Bearer <token>'.")
    token = token.strip()
    if not token.isascii() or len(token) > 200:
        raise ApiError(403, "invalid_token", "This token is not valid for this session.")
    return token


async def authenticated_session(request: web.Request) -> Session:
    token = bearer_token(request)
    return await context(request).desk.authenticate(request.match_info["session_id"], token)


async def session_view(ctx: WidgetContext, session: Session) -> dict[str, Any]:
    """The session as the visitor sees it, with its live parts (queue position, typing)."""
    return live_view(ctx, session, await ctx.desk.queue.position(session))


def live_view(ctx: WidgetContext, session: Session, position: int | None) -> dict[str, Any]:
    """The session view, its queue position already read (with the messages: one trip)."""
    view = session_json(session, position=position, typing=ctx.signals.typing.get(session.id, ()))
    if view["status"] == "waiting":
        ctx.signals.waiting.add(session.id)
    else:
        ctx.signals.waiting.discard(session.id)
    if session.verification is not None:
        view["verification"] = {
            "state": session.verification,
            "fields": list(ctx.desk.verification_fields),
        }
    return view


def view_tag(view: dict[str, Any]) -> str:
    """A short fingerprint of a session view: what a connection remembers of the last view it
    sent (a long poll gets it as ``view_tag``), so it can tell when the view changed."""
    canonical = json.dumps(view, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def session_json(
    session: Session, position: int | None = None, typing: tuple[str, ...] = ()
) -> dict[str, Any]:
    form = session.form
    return {
        "id": session.id,
        "state": session.state.value,
        "status": session.status.value,
        "queue_position": position,
        "librarian": {"name": session.owner_name} if session.owner_name else None,
        "read_up_to": session.read_up_to,
        "librarian_typing": list(typing) if session.is_open else [],
        "verification": None,
        "offline": session.offline,
        "created_at": session.created_at.isoformat(),
        "closed_at": session.closed_at.isoformat() if session.closed_at else None,
        "visitor": {
            "name": form.name,
            "email": form.email,
            "member_number": form.member_number,
            "topic": form.topic,
            "language": form.language,
        },
    }


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "seq": message.seq,
        "origin": message.origin.value,
        "sender_name": message.sender_name,
        "body": message.body,
        "html": message.html,
        "created_at": message.created_at.isoformat(),
        "edited_at": message.edited_at.isoformat() if message.edited_at else None,
        "deleted": message.deleted_at is not None,
        "client_id": message.client_id,
        "attachment": _attachment_json(message),
    }


def _attachment_json(message: Message) -> dict[str, Any] | None:
    """A file sent with the message, and where the visitor's token fetches it."""
    found = message.attachment
    if found is None or message.deleted_at is not None:
        return None
    return {
        "id": found.id,
        "name": found.name,
        "mimetype": found.mimetype,
        "size": found.size,
        "width": found.width,
        "height": found.height,
        "url": f"/api/sessions/{message.session_id}/attachments/{found.id}",
    }


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"'{name}' must be an integer.") from None
    if not low <= value <= high:
        raise ApiError(400, "bad_parameter", f"'{name}' must be between {low} and {high}.")
    return value
