"""Test actors: a librarian on a real Matrix client (matrix-nio), a visitor on the widget API."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from nio import (
    AsyncClient,
    JoinError,
    LoginResponse,
    RoomLeaveResponse,
    RoomReadMarkersResponse,
    RoomRedactResponse,
    RoomSendResponse,
    RoomTypingResponse,
    SyncResponse,
    UploadResponse,
)

from widget_server.app import runner as widget_runner


@dataclass
class Seen:
    room_id: str
    sender: str
    body: str
    msgtype: str
    event_id: str
    source: dict[str, Any]


@dataclass
class Librarian:
    client: AsyncClient
    timeline: list[Seen] = field(default_factory=list)
    invites: set[str] = field(default_factory=set)
    next_batch: str | None = None
    ephemeral: list[tuple[str, Any]] = field(default_factory=list)
    memberships: dict[str, str] = field(default_factory=dict)

    @classmethod
    async def login(cls, homeserver: str, mxid: str, password: str) -> Librarian:
        client = AsyncClient(homeserver, mxid)
        resp = await client.login(password, device_name="refdesk-tests")
        assert isinstance(resp, LoginResponse), resp
        librarian = cls(client)
        await librarian.sync(timeout_ms=0)
        return librarian

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    async def close(self) -> None:
        await self.client.close()

    async def sync(self, timeout_ms: int = 1000) -> None:
        resp = await self.client.sync(timeout=timeout_ms, since=self.next_batch, full_state=False)
        assert isinstance(resp, SyncResponse), resp
        self.next_batch = resp.next_batch
        # A room can be in two sections (kicked, then invited again): the invite is newer.
        for room_id in resp.rooms.leave:
            self.memberships[room_id] = "leave"
            self.invites.discard(room_id)
        for room_id in resp.rooms.invite:
            self.invites.add(room_id)
            self.memberships[room_id] = "invite"
        for room_id, joined in resp.rooms.join.items():
            self.memberships[room_id] = "join"
            for edu in joined.ephemeral:
                self.ephemeral.append((room_id, edu))
        rooms = [*resp.rooms.join.items(), *resp.rooms.leave.items()]
        for room_id, room in rooms:
            for event in room.timeline.events:
                content = event.source.get("content", {})
                self.timeline.append(
                    Seen(
                        room_id=room_id,
                        sender=event.sender,
                        body=str(content.get("body", "")),
                        msgtype=str(content.get("msgtype", event.source.get("type"))),
                        event_id=event.event_id,
                        source=event.source,
                    )
                )

    async def wait_for(self, predicate: Callable[[Seen], bool], timeout: float = 30) -> Seen:
        deadline = time.monotonic() + timeout
        while True:
            for seen in self.timeline:
                if predicate(seen):
                    return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.user_id} did not see the expected event in {timeout}s")
            await self.sync()

    async def wait_for_invite(self, room_id: str | None = None, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for candidate in self.invites:
                if room_id is None or candidate == room_id:
                    return candidate
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.user_id} got no invite in {timeout}s")
            await self.sync()

    async def join(self, room_id: str) -> None:
        resp = await self.client.join(room_id)
        assert not isinstance(resp, JoinError), resp
        self.invites.discard(room_id)
        self.memberships[room_id] = "join"

    async def send(self, room_id: str, body: str, msgtype: str = "m.text") -> str:
        resp = await self.client.room_send(
            room_id, "m.room.message", {"msgtype": msgtype, "body": body}
        )
        assert isinstance(resp, RoomSendResponse), resp
        return resp.event_id

    async def send_content(
        self, room_id: str, content: dict[str, Any], kind: str = "m.room.message"
    ) -> str:
        resp = await self.client.room_send(room_id, kind, content)
        assert isinstance(resp, RoomSendResponse), resp
        return resp.event_id

    async def send_file(self, room_id: str, data: bytes, mimetype: str, name: str) -> str:
        """What Element does with an attached file: upload it, then post m.image or m.file."""
        uploaded, _ = await self.client.upload(
            io.BytesIO(data), content_type=mimetype, filename=name, filesize=len(data)
        )
        assert isinstance(uploaded, UploadResponse), uploaded
        msgtype = "m.image" if mimetype.startswith("image/") else "m.file"
        content = {"msgtype": msgtype, "body": name, "url": uploaded.content_uri}
        content["info"] = {"mimetype": mimetype, "size": len(data)}
        return await self.send_content(room_id, content)

    async def react(self, room_id: str, event_id: str, key: str = "👍") -> str:
        return await self.send_content(
            room_id,
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}},
            kind="m.reaction",
        )

    async def edit(self, room_id: str, event_id: str, body: str) -> str:
        new = {"msgtype": "m.text", "body": body}
        return await self.send_content(
            room_id,
            {
                "msgtype": "m.text",
                "body": f"* {body}",
                "m.new_content": new,
                "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
            },
        )

    async def redact(self, room_id: str, event_id: str) -> None:
        resp = await self.client.room_redact(room_id, event_id)
        assert isinstance(resp, RoomRedactResponse), resp

    async def leave(self, room_id: str) -> None:
        resp = await self.client.room_leave(room_id)
        assert isinstance(resp, RoomLeaveResponse), resp

    async def typing(self, room_id: str, typing: bool = True) -> None:
        resp = await self.client.room_typing(room_id, typing, timeout=10_000)
        assert isinstance(resp, RoomTypingResponse), resp

    async def read(self, room_id: str, event_id: str) -> None:
        resp = await self.client.room_read_markers(room_id, event_id, event_id)
        assert isinstance(resp, RoomReadMarkersResponse), resp

    async def wait_ephemeral(
        self, predicate: Callable[[str, Any], bool], timeout: float = 30
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for room_id, edu in self.ephemeral:
                if predicate(room_id, edu):
                    return edu
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.user_id} saw no matching ephemeral event")
            await self.sync()

    def last(self, predicate: Callable[[Seen], bool]) -> Seen | None:
        for seen in reversed(self.timeline):
            if predicate(seen):
                return seen
        return None

    def bodies(self, room_id: str, sender: str | None = None) -> list[str]:
        return [
            s.body
            for s in self.timeline
            if s.room_id == room_id
            and s.source.get("type") == "m.room.message"
            and (sender is None or s.sender == sender)
        ]


class Visitor:
    """A visitor driving the visitor API directly (the browser tests drive the real widget)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = aiohttp.ClientSession()
        self.session_id: str | None = None
        self.token: str | None = None
        self.cursor = 0

    async def close(self) -> None:
        await self.http.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | bool | None = True,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {}
        if token is True and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif isinstance(token, str):
            headers["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"headers": headers}
        if raw is not None:
            kwargs["data"] = raw
            headers["Content-Type"] = "application/json"
        elif body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base_url + path, **kwargs) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = await resp.text()
            return resp.status, data

    async def start(self, **fields: Any) -> dict[str, Any]:
        form = {"name": "Budi", "email": "budi@example.org", "topic": "literature", **fields}
        status, data = await self.request("POST", "/api/sessions", form, token=False)
        assert status == 201, (status, data)
        self.session_id = data["session"]["id"]
        self.token = data["token"]
        return data

    async def send(self, body: str, client_id: str | None = None) -> dict[str, Any]:
        status, data = await self.request(
            "POST",
            f"/api/sessions/{self.session_id}/messages",
            {"body": body, "client_id": client_id or uuid.uuid4().hex},
        )
        assert status in (200, 201), (status, data)
        return data["message"]

    async def messages(self, after: int = 0, wait: int = 0) -> dict[str, Any]:
        status, data = await self.request(
            "GET", f"/api/sessions/{self.session_id}/messages?after={after}&wait={wait}"
        )
        assert status == 200, (status, data)
        return data

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        """Long-poll until a message matching ``predicate`` arrives (any time in the history)."""
        deadline = time.monotonic() + timeout
        after = 0
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            data = await self.messages(after=after, wait=5)
            seen.extend(data["messages"])
            after = data["cursor"]
            for message in seen:
                if predicate(message):
                    return message
            await asyncio.sleep(0)
        raise AssertionError(f"visitor did not get the expected message; saw {seen}")

    async def end(self) -> dict[str, Any]:
        status, data = await self.request("POST", f"/api/sessions/{self.session_id}/end", {})
        assert status == 200, (status, data)
        return data["session"]


async def query(db: Any, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    """Rows of one SQL query against a desk's store (for assertions on what is kept)."""

    async def unit(tx: Any) -> list[Any]:
        return list(await tx.fetchall(sql, params))

    return list(await db.read(unit))


class WidgetTestServer(TestServer):
    """aiohttp's in-process test server with the widget's own runner, so a WebSocket handshake
    meets refdesk's endpoint (widget_server/websocket.py) as in production."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return widget_runner(self.app, **kwargs)
