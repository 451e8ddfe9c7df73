"""The appservice endpoint the homeserver pushes transactions to.

A transaction is answered 200 only after every event in it is handled and stored, in order;
its txnId is persisted so a retry (same txnId) is acknowledged without handling anything twice.
"""

from __future__ import annotations

import hmac
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.ghosts import GhostTemplate
from rooms.desk import Desk

log = logging.getLogger("refdesk.bridge.appservice")

EventSink = Callable[[dict[str, Any]], Awaitable[None]]


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
    ) -> None:
        self._hs_token = hs_token
        self.desk = desk
        self.ghosts = ghosts
        self.on_event = on_event
        self.on_ephemeral = on_ephemeral

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
        if await self.desk.store.batch_seen(txn_id):
            log.debug("transaction %s already handled", txn_id)
            return web.json_response({})
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "M_NOT_JSON", "Body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "M_BAD_JSON", "Body must be a JSON object")
        events = body.get("events", [])
        ephemeral = body.get("ephemeral", body.get("de.sorunome.msc2409.ephemeral", []))
        if not isinstance(events, list) or not isinstance(ephemeral, list):
            return _error(400, "M_BAD_JSON", "events and ephemeral must be lists")
        failed = 0
        for event in events:
            if not isinstance(event, dict):
                failed += 1
                continue
            try:
                await self.on_event(event)
            except sqlite3.Error:
                # The store could not keep the effect: let the homeserver retry the transaction.
                log.exception("store error in transaction %s; asking for a retry", txn_id)
                return _error(500, "M_UNKNOWN", "Could not store the transaction")
            except Exception:
                failed += 1
                log.exception(
                    "event %s in transaction %s could not be handled", event.get("event_id"), txn_id
                )
        for edu in ephemeral:
            if self.on_ephemeral is not None and isinstance(edu, dict):
                try:
                    await self.on_ephemeral(edu)
                except Exception:
                    log.exception("ephemeral event in transaction %s failed", txn_id)
        await self.desk.store.record_batch(txn_id, self.desk.clock())
        log.info(
            "transaction %s: %d events, %d ephemeral, %d failed",
            txn_id,
            len(events),
            len(ephemeral),
            failed,
        )
        return web.json_response({})

    async def query_user(self, request: web.Request) -> web.Response:
        if denied := self._check_token(request):
            return denied
        session_id = self.ghosts.parse(request.match_info["user_id"])
        if session_id is not None and await self.desk.store.get_session(session_id) is not None:
            return web.json_response({})
        return _error(404, "M_NOT_FOUND", "No such visitor")

    async def query_alias(self, request: web.Request) -> web.Response:
        if denied := self._check_token(request):
            return denied
        return _error(404, "M_NOT_FOUND", "Session rooms are created by the desk")

    async def ping(self, request: web.Request) -> web.Response:
        if denied := self._check_token(request):
            return denied
        return web.json_response({})
