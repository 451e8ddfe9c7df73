"""The appservice endpoint the homeserver pushes transactions to.

A transaction is answered 200 only after every event in it is handled and stored, in order.
Events are deduplicated by their ids, which are unique forever; a transaction id is not (Synapse
numbers transactions from 1 again after a restart), so it is remembered only briefly, together
with a digest of the body, to answer an immediate retry without work.

A failure that passes by itself (the homeserver or the store briefly unavailable) answers 503:
the homeserver sends the whole transaction again, and the events already handled are skipped by
id. An event that cannot be handled at all (malformed content, a bug) is recorded with its reason
and skipped, so it is never retried for ever and never blocks the events after it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge import store
from bridge.errors import is_transient
from bridge.ghosts import GhostTemplate
from bridge.metrics import BridgeMetrics
from rooms.desk import Desk, DeskError

log = logging.getLogger("refdesk.bridge.appservice")

EventSink = Callable[[dict[str, Any]], Awaitable[None]]
RECENT_TRANSACTIONS = 256


def _error(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


class AppserviceServer:
    """aiohttp routes of the Application Service API (spec: /_matrix/app/v1)."""

    def __init__(
        self,
        hs_token: str,
        desk: Desk,
        ghosts: GhostTemplate,
        on_event: EventSink,
        on_ephemeral: EventSink | None = None,
        on_contact: Callable[[], None] | None = None,
        on_retry_asked: Callable[[], None] | None = None,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self._hs_token = hs_token
        self.desk = desk
        self.ghosts = ghosts
        self.on_event = on_event
        self.on_ephemeral = on_ephemeral
        # The homeserver called: it is up (lanes waiting for it go again).
        self.on_contact = on_contact or (lambda: None)
        # We answered 503: the homeserver backs off, so remind it soon (a ping).
        self.on_retry_asked = on_retry_asked or (lambda: None)
        # txn id -> digest of its body, for the last few transactions of this process only.
        self._recent: OrderedDict[str, str] = OrderedDict()
        self.serial = asyncio.Lock()
        self.metrics = metrics or BridgeMetrics()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        for prefix in ("/_matrix/app/v1", ""):  # "" is the legacy unprefixed API
            app.router.add_put(prefix + "/transactions/{txn_id}", self.transaction)
            app.router.add_get(prefix + "/users/{user_id}", self.query_user)
            app.router.add_get(prefix + "/rooms/{alias}", self.query_alias)
        app.router.add_post("/_matrix/app/v1/ping", self.ping)
        return app

    def _check_token(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else request.query.get("access_token")
        if not token:
            return _error(401, "M_UNAUTHORIZED", "Missing hs_token")
        if not hmac.compare_digest(token.encode(), self._hs_token.encode()):
            log.warning("rejected a request with a wrong hs_token from %s", request.remote)
            return _error(403, "M_FORBIDDEN", "Invalid hs_token")
        return None

    async def transaction(self, request: web.Request) -> web.Response:
        if denied := self._check_token(request):
            return denied
        txn_id = request.match_info["txn_id"]
        self.on_contact()
        started = time.perf_counter()
        raw = await request.read()
        digest = hashlib.sha256(raw).hexdigest()
        if self._recent.get(txn_id) == digest:
            log.debug("transaction %s was handled a moment ago", txn_id)
            return web.json_response({})
        # One transaction at a time (and never beside the catch-up): events are acted on in the
        # order the homeserver sent them, even if it sends a second transaction before the first
        # is answered.
        try:
            async with self.serial:
                return await self._handle(txn_id, raw, digest)
        finally:
            self.metrics.transaction_seconds.observe(time.perf_counter() - started)

    async def _handle(self, txn_id: str, raw: bytes, digest: str) -> web.Response:
        if self._recent.get(txn_id) == digest:
            return web.json_response({})  # the same, handled while this one waited
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "M_NOT_JSON", "Body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "M_BAD_JSON", "Body must be a JSON object")
        events = body.get("events", [])
        ephemeral = body.get("ephemeral", body.get("de.sorunome.msc2409.ephemeral", []))
        if not isinstance(events, list) or not isinstance(ephemeral, list):
            return _error(400, "M_BAD_JSON", "events and ephemeral must be lists")
        skipped = 0
        for event in events:
            if not isinstance(event, dict):
                skipped += 1
                continue
            try:
                await self.on_event(event)
            except Exception as exc:
                if is_transient(exc) or not await self._set_aside(txn_id, event, exc):
                    log.warning("transaction %s must wait (%s); asking for a retry", txn_id, exc)
                    self.on_retry_asked()
                    return _error(503, "M_UNKNOWN", "Temporarily unavailable; send it again")
                skipped += 1
        for edu in ephemeral:
            if self.on_ephemeral is not None and isinstance(edu, dict):
                try:
                    await self.on_ephemeral(edu)
                except Exception:
                    log.exception("ephemeral event in transaction %s failed", txn_id)
        self._recent[txn_id] = digest
        while len(self._recent) > RECENT_TRANSACTIONS:
            self._recent.popitem(last=False)
        log.info(
            "transaction %s: %d events, %d ephemeral, %d skipped",
            txn_id,
            len(events),
            len(ephemeral),
            skipped,
        )
        return web.json_response({})

    async def _set_aside(self, txn_id: str, event: dict[str, Any], exc: Exception) -> bool:
        """Record a poison event so it is never handled again; False if even that failed."""
        reference = secrets.token_hex(4)
        event_id = event.get("event_id")
        log.error(
            "event %s in transaction %s cannot be handled and is skipped (reference %s)",
            event_id,
            txn_id,
            reference,
            exc_info=exc,
        )
        if not isinstance(event_id, str):
            return True
        room_id, kind = event.get("room_id"), event.get("type")
        try:
            await self.desk.transaction(
                lambda tx: store.set_aside(
                    tx,
                    event_id,
                    room_id if isinstance(room_id, str) else None,
                    kind if isinstance(kind, str) else None,
                    f"{type(exc).__name__}: {exc} (reference {reference})"[:500],
                    self.desk.clock(),
                )
            )
        except Exception as again:
            if is_transient(again):
                return False
            raise
        return True

    async def query_user(self, request: web.Request) -> web.Response:
        if denied := self._check_token(request):
            return denied
        session_id = self.ghosts.parse(request.match_info["user_id"])
        if session_id is not None:
            try:
                await self.desk.get_session(session_id)
            except DeskError:
                pass
            else:
                return web.json_response({})
        return _error(404, "M_NOT_FOUND", "No such visitor")

    async def query_alias(self, request: web.Request) -> web.Response:
        if denied := self._check_token(request):
            return denied
        return _error(404, "M_NOT_FOUND", "Session rooms are created by the desk")

    async def ping(self, request: web.Request) -> web.Response:
        if denied := self._check_token(request):
            return denied
        self.on_contact()
        return web.json_response({})
