"""The load generators: Matrix users on matrix-nio, visitors on the widget API and WebSocket.

Every message body is unique. A sender registers the body it is about to send with the
receiver's :class:`Inbox`, takes the time, sends; the receiver resolves the body's future with
the time it saw it. Nothing here loops without a bound: sync loops and WebSocket readers end
when their actor is closed, and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    LoginResponse,
    RoomCreateResponse,
    RoomSendResponse,
    SyncResponse,
    UploadFilterResponse,
)

log = logging.getLogger("bench.actors")

# The same /sync filter for every Matrix client in the benchmark: timeline only, nothing that
# differs between the baseline and the refdesk runs (presence, receipts, typing, account data).
SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {
        "ephemeral": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
        "timeline": {"limit": 50},
    },
}
SYNC_TIMEOUT_MS = 30_000


class BenchError(Exception):
    """The system under test did not do what the benchmark needs."""


@dataclass(frozen=True)
class Arrival:
    """When and how a message reached its receiver."""

    at: float  # time.perf_counter() in the benchmark process
    wall: float  # time.time() at the same moment
    room_id: str | None = None
    sender: str | None = None
    # Wall-clock seconds stamped on the way: origin_server_ts (Matrix) or created_at (refdesk).
    stamped: float | None = None


class Inbox:
    """Futures for the bodies a receiver is expected to see."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Arrival]] = {}
        self._seen: set[str] = set()
        self.unexpected = 0  # bodies nobody waited for (e.g. a sender's own echo)
        self.duplicates = 0  # bodies seen a second time

    def expect(self, body: str) -> asyncio.Future[Arrival]:
        future: asyncio.Future[Arrival] = asyncio.get_running_loop().create_future()
        self._waiting[body] = future
        return future

    def expect_many(self, bodies: Iterable[str]) -> list[asyncio.Future[Arrival]]:
        return [self.expect(body) for body in bodies]

    def deliver(self, body: str, arrival: Arrival) -> None:
        future = self._waiting.pop(body, None)
        if future is None:
            if body in self._seen:
                self.duplicates += 1
            else:
                self.unexpected += 1
            return
        self._seen.add(body)
        if not future.done():
            future.set_result(arrival)

    def forget(self, bodies: Iterable[str]) -> None:
        for body in bodies:
            future = self._waiting.pop(body, None)
            if future is not None and not future.done():
                future.cancel()


async def wait_arrival(future: asyncio.Future[Arrival], timeout: float, what: str) -> Arrival:
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise BenchError(f"{what}: not received within {timeout:.0f}s") from None


class MatrixUser:
    """A plain Matrix client (matrix-nio) with a /sync loop feeding its inbox."""

    def __init__(self, client: AsyncClient, filter_id: str, auto_join: bool) -> None:
        self.client = client
        self.filter_id = filter_id
        self.auto_join = auto_join
        self.inbox = Inbox()
        self.joined: set[str] = set()
        self.sync_errors = 0
        self._joining: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._joined_event = asyncio.Event()

    @classmethod
    async def login(
        cls,
        homeserver: str,
        user_id: str,
        password: str,
        *,
        auto_join: bool = False,
        sync: bool = True,
    ) -> MatrixUser:
        """Log in; with ``sync`` (default) keep a /sync loop running until :meth:`close`."""
        config = AsyncClientConfig(store_sync_tokens=False, encryption_enabled=False)
        client = AsyncClient(homeserver, user_id, config=config)
        resp = await client.login(password, device_name="refdesk-bench")
        if not isinstance(resp, LoginResponse):
            await client.close()
            raise BenchError(f"login {user_id}: {resp}")
        filt = await client.upload_filter(**SYNC_FILTER)
        if not isinstance(filt, UploadFilterResponse):
            await client.close()
            raise BenchError(f"filter for {user_id}: {filt}")
        user = cls(client, filt.filter_id, auto_join)
        if not sync:
            return user
        first = await client.sync(timeout=0, sync_filter=user.filter_id)
        if not isinstance(first, SyncResponse):
            await client.close()
            raise BenchError(f"first sync of {user_id}: {first}")
        user.joined.update(first.rooms.join)
        user._loop = asyncio.create_task(user._sync_loop(), name=f"sync-{user_id}")
        return user

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    async def close(self) -> None:
        for task in [*self._tasks, *([self._loop] if self._loop else [])]:
            task.cancel()
        for task in [*self._tasks, *([self._loop] if self._loop else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()

    async def _sync_loop(self) -> None:
        """Long-poll /sync until cancelled; each request ends within SYNC_TIMEOUT_MS + 15 s."""
        while True:
            resp = await self.client.sync(timeout=SYNC_TIMEOUT_MS, sync_filter=self.filter_id)
            at, wall = time.perf_counter(), time.time()
            if not isinstance(resp, SyncResponse):
                self.sync_errors += 1
                log.warning("sync of %s failed: %s", self.user_id, resp)
                await asyncio.sleep(0.5)
                continue
            for room_id, room in resp.rooms.join.items():
                if room_id not in self.joined:
                    self.joined.add(room_id)
                    self._joined_event.set()
                for event in room.timeline.events:
                    body = event.source.get("content", {}).get("body")
                    if isinstance(body, str):
                        ts = event.source.get("origin_server_ts")
                        stamped = ts / 1000 if isinstance(ts, int) else None
                        self.inbox.deliver(body, Arrival(at, wall, room_id, event.sender, stamped))
            if self.auto_join:
                for room_id in resp.rooms.invite:
                    if room_id not in self.joined and room_id not in self._joining:
                        self._spawn(self._join(room_id))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _join(self, room_id: str) -> None:
        self._joining.add(room_id)
        try:
            for attempt in range(5):
                resp = await self.client.join(room_id)
                if isinstance(resp, JoinResponse):
                    return
                log.warning("join %s as %s failed (%s): %s", room_id, self.user_id, attempt, resp)
                await asyncio.sleep(0.5)
        finally:
            self._joining.discard(room_id)

    async def create_room(self, invite: list[str]) -> str:
        resp = await self.client.room_create(invite=invite, name="bench baseline")
        if not isinstance(resp, RoomCreateResponse):
            raise BenchError(f"create room: {resp}")
        return resp.room_id

    async def wait_joined(self, room_id: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while room_id not in self.joined:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{self.user_id} did not join {room_id} in {timeout:.0f}s")
            self._joined_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._joined_event.wait(), remaining)

    async def send(self, room_id: str, body: str) -> None:
        resp = await self.client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": body}
        )
        if not isinstance(resp, RoomSendResponse):
            raise BenchError(f"send in {room_id}: {resp}")


def _created_at(message: dict[str, Any]) -> float | None:
    raw = message.get("created_at")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        return None


@dataclass
class Visitor:
    """One widget visitor: a session made with POST /api/sessions, then a WebSocket."""

    http: aiohttp.ClientSession
    base_url: str
    name: str
    session_id: str = ""
    token: str = ""
    inbox: Inbox = field(default_factory=Inbox)  # librarian messages, by body
    acks: Inbox = field(default_factory=Inbox)  # acks of our own sends, by client_id
    ws: aiohttp.ClientWebSocketResponse | None = None
    room_id: str | None = None  # learnt from the librarian's side once the room exists
    errors: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    async def start_session(self, topic: str = "literature") -> None:
        form = {"name": self.name, "email": "bench@example.org", "topic": topic}
        async with self.http.post(f"{self.base_url}/api/sessions", json=form) as resp:
            data = await resp.json(content_type=None)
            if resp.status == 429:
                raise BenchError(
                    "POST /api/sessions: 429, new chats are rate limited; the benchmark's config"
                    " must lift widget.new_sessions_per_minute"
                )
            if resp.status != 201:
                raise BenchError(f"POST /api/sessions: HTTP {resp.status} {data}")
            self.session_id = data["session"]["id"]
            self.token = data["token"]

    async def connect(self, timeout: float = 30) -> None:
        url = f"{self.base_url}/api/sessions/{self.session_id}/ws"
        self.ws = await self.http.ws_connect(url, autoping=True, max_msg_size=1 << 20)
        await self.ws.send_str(json.dumps({"type": "hello", "token": self.token, "after": 0}))
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise BenchError(f"WebSocket of {self.session_id}: {msg.type} {msg.data!r}")
        frame = json.loads(msg.data)
        if frame.get("type") != "ready":
            raise BenchError(f"WebSocket of {self.session_id}: expected ready, got {frame}")
        self._reader = asyncio.create_task(self._read(), name=f"ws-{self.session_id}")

    async def _read(self) -> None:
        """Read frames until the socket closes (the read also answers the server's pings)."""
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            at, wall = time.perf_counter(), time.time()
            frame = json.loads(msg.data)
            kind = frame.get("type")
            if kind == "message":
                message = frame["message"]
                if message.get("origin") == "librarian":
                    self.inbox.deliver(
                        message["body"], Arrival(at, wall, stamped=_created_at(message))
                    )
            elif kind == "ack":
                message = frame.get("message", {})
                self.acks.deliver(
                    str(frame.get("client_id")), Arrival(at, wall, stamped=_created_at(message))
                )
            elif kind == "error":
                self.errors.append(str(frame))

    async def end(self) -> None:
        """End the chat, as the widget's close button does."""
        url = f"{self.base_url}/api/sessions/{self.session_id}/end"
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.post(url, json={}, headers=headers) as resp:
            if resp.status != 200:
                raise BenchError(f"POST {url}: HTTP {resp.status} {await resp.text()}")

    async def send(self, body: str, client_id: str) -> None:
        assert self.ws is not None, "not connected"
        await self.ws.send_str(json.dumps({"type": "send", "client_id": client_id, "body": body}))

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
