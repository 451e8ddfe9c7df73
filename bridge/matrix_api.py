"""Client-server API as the appservice: bearer ``as_token``, masquerading with ``?user_id=``.

matrix-nio's sans-I/O ``Api`` builds each request (method, path, body); we send it with aiohttp,
move the token from nio's query string into the Authorization header, and raise on every error
so none is silently ignored.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import Api, RoomPreset, RoomVisibility
from yarl import URL

from bridge.metrics import BridgeMetrics
from rooms.names import clean_text

log = logging.getLogger("refdesk.bridge.matrix_api")

_TOKEN_SLOT = "refdesk-token-slot"

# Every event refdesk sends carries its transaction id under this content key, so a send whose
# outcome is unknown can be looked for in the room before it is repeated: a homeserver forgets
# the transaction ids it has seen when it restarts.
SEND_MARKER = "org.refdesk.txn"


def _marker(event: dict[str, Any]) -> object:
    content = event.get("content")
    return content.get(SEND_MARKER) if isinstance(content, dict) else None


class MatrixError(Exception):
    """The homeserver answered with an error (``status``, ``errcode``)."""

    def __init__(self, status: int, errcode: str, error: str, retry_after_ms: int | None = None):
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.retry_after_ms = retry_after_ms

    @property
    def transient(self) -> bool:
        return self.status >= 500 or self.status == 429


class HomeserverUnavailable(Exception):
    """The homeserver could not be reached (connection refused, timeout)."""


class MatrixClient:
    """One aiohttp session to the homeserver, acting as the bot or any ghost."""

    def __init__(
        self,
        base_url: str,
        as_token: str,
        bot_mxid: str,
        timeout: float = 30,
        *,
        admin_token: str | None = None,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self.base_url = URL(base_url)
        self.metrics = metrics or BridgeMetrics()
        self._as_token = as_token
        self._admin_token = admin_token
        self.bot_mxid = bot_mxid
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._as_token}"},
            )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user_id: str | None = None,
        admin: bool = False,
    ) -> dict[str, Any]:
        """Send one request built by nio's ``Api``; returns the JSON body or raises."""
        if self._http is None:
            await self.open()
        assert self._http is not None
        url = URL(path, encoded=True)
        query = {k: v for k, v in url.query.items() if k != "access_token"}
        if user_id is not None and user_id != self.bot_mxid:
            query["user_id"] = user_id
        full = self.base_url.join(url.with_query(query))
        data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"}
        if admin:  # the admin API, with the admin's token rather than the appservice's
            headers["Authorization"] = f"Bearer {self._admin_token}"
        try:
            async with self._http.request(method, full, data=data, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            self.metrics.homeserver_failed(None)
            raise HomeserverUnavailable(f"{method} {url.path}: {exc!r}") from exc
        try:
            payload = json.loads(text) if text else {}
        except json.JSONDecodeError:
            payload = {"errcode": "M_UNKNOWN", "error": text[:200]}
        if status >= 400:
            self.metrics.homeserver_failed(status)
            raise MatrixError(
                status,
                str(payload.get("errcode", "M_UNKNOWN")),
                str(payload.get("error", "")),
                payload.get("retry_after_ms"),
            )
        return payload if isinstance(payload, dict) else {}

    # The calls the bridge makes. Each is a thin wrapper over nio's request builder.

    async def register_ghost(self, localpart: str) -> None:
        """Register an appservice user; an existing one is fine (idempotent)."""
        path = str(URL("/_matrix/client/v3/register"))
        try:
            await self.request(
                "POST",
                path,
                {"type": "m.login.application_service", "username": localpart},
            )
        except MatrixError as exc:
            if exc.errcode != "M_USER_IN_USE":
                raise

    async def ping(self, appservice_id: str) -> None:
        """Ask the homeserver to call us back; a success makes it resend waiting transactions."""
        path = f"/_matrix/client/v1/appservice/{quote(appservice_id, safe='')}/ping"
        await self.request("POST", path, {"transaction_id": f"refdesk-ping-{int(time.time())}"})

    async def set_displayname(self, user_id: str, name: str) -> None:
        method, path, data = Api.profile_set_displayname(_TOKEN_SLOT, user_id, name)
        await self.request(method, path, data, user_id=user_id)

    async def get_displayname(self, user_id: str) -> str | None:
        method, path = Api.profile_get_displayname(user_id, _TOKEN_SLOT)
        try:
            result = await self.request(method, path)
        except MatrixError:
            return None
        name = result.get("displayname")
        return name if isinstance(name, str) else None

    async def name_of(self, user_id: str) -> str:
        """What to call a user in a notice: their display name, else their id's localpart."""
        found = await self.get_displayname(user_id)
        return clean_text(found or "") or user_id.split(":")[0].lstrip("@")

    async def create_room(
        self,
        *,
        alias_localpart: str,
        name: str,
        topic: str,
        invite: list[str],
        initial_state: list[dict[str, Any]],
        space: bool = False,
    ) -> str:
        """Create a room, or find the one a previous attempt created (by its alias).

        The bot creates the room, so it is its creator (room v12: unlimited power) or holds
        power 100 (older versions). A homeserver stopped in the middle of a creation may leave
        the alias pointing at a room that was never finished: the bot is not in it. That room
        is abandoned (its alias removed) and a new one made; one the bot is in gets the state
        the first attempt may not have reached, and its invitations again.
        """
        method, path, data = Api.room_create(
            _TOKEN_SLOT,
            visibility=RoomVisibility.private,
            alias=alias_localpart,
            name=name,
            topic=topic,
            federate=True,
            preset=RoomPreset.private_chat,
            invite=invite,
            initial_state=initial_state,
            space=space,
        )
        for _ in range(2):
            try:
                result = await self.request(method, path, data)
                return str(result["room_id"])
            except MatrixError as exc:
                if exc.errcode != "M_ROOM_IN_USE":
                    raise
            server = self.bot_mxid.split(":", 1)[1]
            alias = f"#{alias_localpart}:{server}"
            room_id = await self.resolve_alias(alias)
            if room_id is None:
                continue  # removed in between: create it
            if await self._bot_joined(room_id):
                await self._finish_room(room_id, name, topic, invite, initial_state)
                return room_id
            log.warning(
                "%s points at %s, which was never finished; making a new room", alias, room_id
            )
            await self.request(
                "DELETE", f"/_matrix/client/v3/directory/room/{quote(alias, safe='')}"
            )
        raise MatrixError(409, "M_ROOM_IN_USE", f"could not create #{alias_localpart}")

    async def _bot_joined(self, room_id: str) -> bool:
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/m.room.member/"
            f"{quote(self.bot_mxid, safe='')}"
        )
        try:
            result = await self.request("GET", path)
        except MatrixError as exc:
            if exc.transient:
                raise
            return False
        return result.get("membership") == "join"

    async def _finish_room(
        self,
        room_id: str,
        name: str,
        topic: str,
        invite: list[str],
        initial_state: list[dict[str, Any]],
    ) -> None:
        """What a creation interrupted half-way may lack (the same state again is a no-op)."""
        for event in initial_state:
            await self.put_state(
                room_id, event["type"], event["content"], event.get("state_key", "")
            )
        await self.put_state(room_id, "m.room.name", {"name": name})
        if topic:
            await self.put_state(room_id, "m.room.topic", {"topic": topic})
        members = await self.members(room_id)
        for user_id in invite:
            if members.get(user_id) not in ("join", "invite"):
                try:
                    await self.invite(room_id, user_id)
                except MatrixError as exc:
                    if exc.transient:
                        raise

    async def join(self, room_id: str, user_id: str) -> None:
        method, path = Api.join(_TOKEN_SLOT, room_id)
        await self.request(method, path, {}, user_id=user_id)

    async def invite(self, room_id: str, user_id: str) -> None:
        method, path, data = Api.room_invite(_TOKEN_SLOT, room_id, user_id)
        await self.request(method, path, data)

    async def send_message(
        self, room_id: str, content: dict[str, Any], txn_id: str, *, user_id: str | None = None
    ) -> str:
        """Send ``m.room.message`` marked with ``txn_id`` (see :data:`SEND_MARKER`).

        The homeserver turns a repeated ``txn_id`` into the first event only while it remembers
        it; :meth:`find_marked` finds an earlier send after the homeserver restarted.
        """
        marked = {**content, SEND_MARKER: txn_id}
        method, path, data = Api.room_send(_TOKEN_SLOT, room_id, "m.room.message", marked, txn_id)
        result = await self.request(method, path, data, user_id=user_id)
        return str(result["event_id"])

    async def redact(
        self, room_id: str, event_id: str, txn_id: str, *, user_id: str | None = None
    ) -> None:
        method, path, data = Api.room_redact(_TOKEN_SLOT, room_id, event_id, txn_id)
        await self.request(method, path, data, user_id=user_id)

    async def find_marked(
        self,
        room_id: str,
        sender: str,
        txn_id: str,
        not_before_ms: int,
        *,
        pages: int = 10,
        steps: int = 50,
    ) -> str | None:
        """The event ``sender`` sent with ``txn_id`` in the room, if it exists.

        First the room's latest messages of that sender, backwards to ``not_before_ms``. A
        homeserver that was killed may hold an event it stored just before that its timeline
        does not show yet (Synapse shows it once a newer event is stored); so, when that finds
        nothing, the room's events are walked by time from ``not_before_ms`` (MSC3030
        ``timestamp_to_event``, which reads the stored events themselves).
        """
        found, newest = await self._find_in_timeline(room_id, sender, txn_id, not_before_ms, pages)
        if found is not None:
            return found
        # A hidden event is newer than every event the timeline shows: walk from there (less a
        # second for clocks and ties), not from not_before_ms, which may be minutes of events.
        since = not_before_ms if newest is None else max(not_before_ms, newest - 1000)
        return await self._find_by_time(room_id, sender, txn_id, since, steps)

    async def _find_in_timeline(
        self, room_id: str, sender: str, txn_id: str, not_before_ms: int, pages: int
    ) -> tuple[str | None, int | None]:
        """The event if the timeline shows it; and the newest time the timeline shows."""
        newest: int | None = None
        room_filter = {"types": ["m.room.message"], "senders": [sender], "lazy_load_members": True}
        start: str | None = None
        for _ in range(pages):
            method, path = Api.room_messages(
                _TOKEN_SLOT, room_id, start=start, direction="b", limit=100,
                message_filter=room_filter,
            )  # fmt: skip
            result = await self.request(method, path)
            chunk = result.get("chunk")
            if not isinstance(chunk, list) or not chunk:
                return None, newest
            for event in chunk:
                if not isinstance(event, dict):
                    continue
                if _marker(event) == txn_id:
                    return str(event.get("event_id")), newest
                stamp = event.get("origin_server_ts")
                if isinstance(stamp, int):
                    newest = stamp if newest is None else max(newest, stamp)
                    if stamp < not_before_ms:
                        return None, newest
            start = result.get("end")
            if not isinstance(start, str):
                return None, newest
        return None, newest

    async def _find_by_time(
        self, room_id: str, sender: str, txn_id: str, since_ms: int, steps: int
    ) -> str | None:
        room = quote(room_id, safe="")
        stamp = since_ms
        for _ in range(steps):
            path = f"/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts={stamp}&dir=f"
            try:
                found = await self.request("GET", path)
            except MatrixError as exc:
                if exc.status in (400, 404, 405):  # nothing after it, or not supported
                    return None
                raise
            event_id, at = found.get("event_id"), found.get("origin_server_ts")
            if not isinstance(event_id, str) or not isinstance(at, int):
                return None
            path = f"/_matrix/client/v3/rooms/{room}/event/{quote(event_id, safe='')}"
            event = await self.request("GET", path)
            if event.get("sender") == sender and _marker(event) == txn_id:
                log.info("%s found in %s by its time (not yet in the timeline)", txn_id, room_id)
                return event_id
            stamp = max(stamp, at) + 1
        log.warning("gave up looking for %s in %s after %d events", txn_id, room_id, steps)
        return None

    async def kick(self, room_id: str, user_id: str, reason: str) -> None:
        """Remove a member, or withdraw a pending invitation."""
        method, path, data = Api.room_kick(_TOKEN_SLOT, room_id, user_id, reason)
        await self.request(method, path, data)

    async def members(self, room_id: str) -> dict[str, str]:
        """Current membership of each user in the room (join, invite, leave, ban)."""
        path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/members"
        result = await self.request("GET", path)
        members: dict[str, str] = {}
        for event in result.get("chunk", []):
            if isinstance(event, dict) and isinstance(event.get("state_key"), str):
                members[event["state_key"]] = str(event.get("content", {}).get("membership"))
        return members

    async def put_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> str:
        method, path, data = Api.room_put_state(
            _TOKEN_SLOT, room_id, event_type, content, state_key
        )
        result = await self.request(method, path, data)
        return str(result.get("event_id", ""))

    async def typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int) -> None:
        method, path, data = Api.room_typing(
            _TOKEN_SLOT, room_id, user_id, typing, timeout=timeout_ms
        )
        await self.request(method, path, data, user_id=user_id)

    async def read_receipt(self, room_id: str, event_id: str, user_id: str) -> None:
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/receipt/m.read/"
            f"{quote(event_id, safe='')}"
        )
        await self.request("POST", path, {}, user_id=user_id)

    async def resolve_alias(self, alias: str) -> str | None:
        method, path = Api.room_resolve_alias(alias)
        try:
            result = await self.request(method, path)
        except MatrixError as exc:
            if exc.errcode == "M_NOT_FOUND":
                return None
            raise
        return str(result["room_id"])

    @property
    def can_delete_rooms(self) -> bool:
        """Whether a homeserver admin's token was given (Synapse's admin API)."""
        return self._admin_token is not None

    async def delete_room(self, room_id: str) -> None:
        """Remove a room and all its events from the homeserver (Synapse's admin API; its
        local members are made to leave). A room that is gone already is fine."""
        path = f"/_synapse/admin/v1/rooms/{quote(room_id, safe='')}"
        try:
            await self.request("GET", path, admin=True)
        except MatrixError as exc:
            if exc.status == 404:
                return
            raise
        await self.request("DELETE", path, {"purge": True}, admin=True)

    async def delete_media(self, mxc: str) -> None:
        """Remove a file from the homeserver's media repository (Synapse's admin API); one that
        is gone already, or on another server, is fine."""
        if not mxc.startswith("mxc://") or mxc.count("/") != 3:
            return
        server, media_id = mxc[len("mxc://") :].split("/", 1)
        path = f"/_synapse/admin/v1/media/{quote(server, safe='')}/{quote(media_id, safe='')}"
        try:
            await self.request("DELETE", path, admin=True)
        except MatrixError as exc:
            if exc.status not in (400, 404):
                raise

    async def history(
        self, room_id: str, start: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the room's events from ``start`` (None: the newest) backwards, and the
        token of the next page (None at the room's beginning)."""
        method, path = Api.room_messages(
            _TOKEN_SLOT, room_id, start=start, direction="b", limit=100
        )
        result = await self.request(method, path)
        chunk = result.get("chunk", [])
        end = result.get("end")
        return (chunk if isinstance(chunk, list) else []), (end if chunk and end else None)

    async def download(self, mxc: str, limit: int) -> bytes | None:
        """A file from the media repository (authenticated media, as the appservice); None if
        it is larger than ``limit`` or the homeserver does not have it."""
        if not mxc.startswith("mxc://") or mxc.count("/") != 3:
            return None
        server, media_id = mxc[len("mxc://") :].split("/", 1)
        if self._http is None:
            await self.open()
        assert self._http is not None
        path = (
            f"/_matrix/client/v1/media/download/{quote(server, safe='')}/{quote(media_id, safe='')}"
        )
        try:
            async with self._http.get(self.base_url.join(URL(path, encoded=True))) as resp:
                if resp.status == 404:
                    return None
                if resp.status >= 400:
                    self.metrics.homeserver_failed(resp.status)
                    raise MatrixError(resp.status, "M_UNKNOWN", f"media download: {resp.status}")
                if (resp.content_length or 0) > limit:
                    return None
                data = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    data += chunk
                    if len(data) > limit:
                        return None
                return bytes(data)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            self.metrics.homeserver_failed(None)
            raise HomeserverUnavailable(f"GET media: {exc!r}") from exc

    async def edits_of(self, room_id: str, event_id: str) -> list[str]:
        """The ids of every edit (``m.replace``) of an event, by its relations."""
        found: list[str] = []
        base = (
            f"/_matrix/client/v1/rooms/{quote(room_id, safe='')}/relations/"
            f"{quote(event_id, safe='')}/m.replace?limit=100"
        )
        token: str | None = None
        while True:
            path = base + (f"&from={quote(token, safe='')}" if token else "")
            result = await self.request("GET", path)
            chunk = result.get("chunk", [])
            found += [str(e["event_id"]) for e in chunk if isinstance(e, dict) and "event_id" in e]
            token = result.get("next_batch")
            if not token or not chunk:
                return found

    async def upload(
        self, data: bytes, content_type: str, filename: str, *, user_id: str | None = None
    ) -> str:
        """Put a file in the homeserver's media repository (as the bot, or as ``user_id``: a
        visitor's ghost); its ``mxc://`` URI."""
        if self._http is None:
            await self.open()
        assert self._http is not None
        query = {"filename": filename}
        if user_id is not None and user_id != self.bot_mxid:
            query["user_id"] = user_id
        url = self.base_url.join(URL("/_matrix/media/v3/upload")).with_query(query)
        try:
            async with self._http.post(
                url, data=data, headers={"Content-Type": content_type}
            ) as resp:
                payload = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            self.metrics.homeserver_failed(None)
            raise HomeserverUnavailable(f"POST upload: {exc!r}") from exc
        if status >= 400 or not isinstance(payload, dict) or "content_uri" not in payload:
            self.metrics.homeserver_failed(status)
            body = payload if isinstance(payload, dict) else {}
            raise MatrixError(status, str(body.get("errcode", "M_UNKNOWN")), str(body.get("error")))
        return str(payload["content_uri"])

    async def leave(
        self, room_id: str, user_id: str | None = None, *, forget: bool = False
    ) -> None:
        """Leave a room (and forget it); fine if not in it."""
        calls = [Api.room_leave(_TOKEN_SLOT, room_id)]
        if forget:
            calls.append(Api.room_forget(_TOKEN_SLOT, room_id))
        for method, path in calls:
            try:
                await self.request(method, path, {}, user_id=user_id)
            except MatrixError as exc:
                if exc.transient:
                    raise

    async def recent_events(self, room_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The room's latest events, oldest first (for catching up after downtime)."""
        method, path = Api.room_messages(_TOKEN_SLOT, room_id, direction="b", limit=limit)
        result = await self.request(method, path)
        chunk = result.get("chunk", [])
        return list(reversed(chunk)) if isinstance(chunk, list) else []
