"""The chaos run's actors: two kinds of widget visitor and a librarian on matrix-nio.

Each actor behaves like a correct client, so that whatever is lost, duplicated or reordered is
refdesk's doing:

* :class:`WebSocketVisitor` speaks the widget's WebSocket protocol (docs/API.md): hello with the
  token and the cursor, ``send`` frames with a ``client_id``, an outbox of unacknowledged
  messages resent in order (same ``client_id``) after every reconnect, ``ping`` every 25 s,
  reconnect with back-off. It pipelines its sends, as the widget does.
* :class:`PollVisitor` is the long-poll fallback: it POSTs one message at a time, strictly in
  order, retrying the same ``client_id`` until it gets a 2xx, while a second loop long-polls
  ``GET .../messages?after=&wait=``.
* :class:`ChaosLibrarian` joins every room it is invited to and answers every visitor message
  it sees (``A-0001`` → ``L-A-0001``), one room at a time in the order it saw them. Its answers
  carry a marker in their content; after an error whose outcome is unknown it looks for the
  marker in the room before sending again (a restarted homeserver forgets transaction ids).

Every loop ends when its task is cancelled; every request has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    LoginResponse,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
    UploadFilterResponse,
)

from bench.actors import BenchError

log = logging.getLogger("bench.chaos.actors")

# "A-0001", "B-0500", "N007-0001": the session's label, a dash, the message's number.
BODY = re.compile(r"^(?P<label>[A-Z][A-Z0-9]*)-(?P<n>\d{4})$")
ANSWER_PREFIX = "L-"
MARKER = "org.refdesk.chaos.answer"  # in the librarian's content: which answer this is
FATAL_CLOSE = (4401, 4403, 4404)  # the session is unusable: the widget forgets it
PING_EVERY = 25.0  # the widget's keep-alive ping ...
PONG_WITHIN = 10.0  # ... and how long it waits for the pong before reconnecting
POLL_WAIT = 25  # the widget's long-poll wait (seconds)
HTTP_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, ValueError)


def answer_for(body: str) -> str:
    return ANSWER_PREFIX + body


def body_number(body: str) -> int:
    match = BODY.match(body)
    return int(match.group("n")) if match else -1


@dataclass(frozen=True)
class Backoff:
    """Waits between reconnects/retries: ``first`` doubling up to ``most``.

    The stock widget waits 1 s doubling to 30 s; the chaos run uses shorter waits so that the
    time it measures is refdesk's, not the client's back-off.
    """

    first: float = 0.25
    most: float = 4.0

    def next(self, current: float) -> float:
        return min(max(current * 2, self.first), self.most)


@dataclass
class Sent:
    """One visitor message: made once, kept in the outbox until acknowledged."""

    body: str
    client_id: str
    queued_at: float  # time.monotonic()
    acked_at: float | None = None
    message_id: int | None = None


@dataclass
class Visitor:
    """What both transports share: the session, the outbox, what arrived live."""

    http: aiohttp.ClientSession
    base_url: str
    label: str  # "A", "B", "N007": the prefix of this visitor's message bodies
    name: str  # the visitor's name in the form; unique, it finds the queue notice
    backoff: Backoff = field(default_factory=Backoff)
    session_id: str = ""
    token: str = ""
    sent: list[Sent] = field(default_factory=list)
    outbox: dict[str, Sent] = field(default_factory=dict)  # client_id → Sent, in send order
    received: dict[int, dict[str, Any]] = field(default_factory=dict)  # live, by message id
    cursor: int = 0
    errors: list[str] = field(default_factory=list)
    fatal: str | None = None
    stats: Counter[str] = field(default_factory=Counter)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def transport(self) -> str:
        raise NotImplementedError

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def url(self, path: str = "") -> str:
        return f"{self.base_url}/api/sessions/{self.session_id}{path}"

    async def create(self, deadline: float) -> None:
        """POST /api/sessions until it answers 201 (a lost answer costs a session nobody uses:
        it never gets a message, so it never gets a room)."""
        form = {"name": self.name, "email": "chaos@example.org", "topic": "literature"}
        delay = self.backoff.first
        while True:
            try:
                async with self.http.post(
                    f"{self.base_url}/api/sessions",
                    json=form,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    data = await resp.json(content_type=None)
                    status = resp.status
            except HTTP_ERRORS:
                status, data = 0, None
            if status == 201 and isinstance(data, dict):
                self.session_id = data["session"]["id"]
                self.token = data["token"]
                return
            if status not in (0, 429) and status < 500:
                raise BenchError(f"{self.label}: POST /api/sessions answered {status} {data}")
            self.stats["create_retries"] += 1
            if time.monotonic() + delay > deadline:
                raise BenchError(f"{self.label}: could not start a session (last HTTP {status})")
            await asyncio.sleep(delay)
            delay = self.backoff.next(delay)

    def queue(self, body: str) -> Sent:
        """The visitor typed ``body`` and pressed enter: it goes to the outbox."""
        sent = Sent(body, uuid.uuid4().hex, time.monotonic())
        self.sent.append(sent)
        self.outbox[sent.client_id] = sent
        self._wake.set()
        return sent

    def _acked(self, client_id: Any, message: Any) -> None:
        sent = self.outbox.pop(client_id, None) if isinstance(client_id, str) else None
        if sent is not None and sent.acked_at is None:
            sent.acked_at = time.monotonic()
            if isinstance(message, dict) and isinstance(message.get("id"), int):
                sent.message_id = message["id"]

    def _apply(self, message: dict[str, Any]) -> None:
        """One message from the server (kept by id: a known id replaces the message)."""
        if not isinstance(message.get("id"), int):
            return
        self.received[message["id"]] = message
        seq = message.get("seq")
        if isinstance(seq, int) and seq > self.cursor:
            self.cursor = seq
        if message.get("origin") == "visitor":
            self._acked(message.get("client_id"), message)

    def live_answers(self) -> set[str]:
        """Bodies of librarian messages that reached this visitor live."""
        return {
            str(m.get("body"))
            for m in self.received.values()
            if m.get("origin") == "librarian" and isinstance(m.get("body"), str)
        }

    def complete(self) -> bool:
        """Everything sent is acknowledged and every message has its answer."""
        if self.outbox or not self.sent:
            return False
        answers = self.live_answers()
        return all(answer_for(s.body) in answers for s in self.sent)

    async def run(self) -> None:
        raise NotImplementedError


class WebSocketVisitor(Visitor):
    @property
    def transport(self) -> str:
        return "websocket"

    async def run(self) -> None:
        """Connect, talk, and reconnect after every loss, until cancelled."""
        delay = self.backoff.first
        while self.fatal is None:
            try:
                talked = await self._connection()
            except HTTP_ERRORS as exc:
                self.stats["connect_errors"] += 1
                log.debug("%s: connection failed: %r", self.label, exc)
                talked = False
            if self.fatal is not None:
                return
            delay = self.backoff.first if talked else self.backoff.next(delay)
            await asyncio.sleep(delay)

    async def _connection(self) -> bool:
        """One connection from hello to loss; True if it got as far as ``ready``."""
        ws = await self.http.ws_connect(
            self.url("/ws"),
            autoping=True,
            max_msg_size=1 << 20,
            timeout=aiohttp.ClientWSTimeout(ws_close=2),
        )
        try:
            hello = {"type": "hello", "token": self.token, "after": self.cursor}
            await ws.send_str(json.dumps(hello))
            msg = await ws.receive(timeout=10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                self._check_close(ws)
                return False
            frame = json.loads(msg.data)
            if frame.get("type") != "ready":
                self.errors.append(f"hello refused: {frame}")
                await ws.receive(timeout=2)
                self._check_close(ws)
                return False
            self.stats["connections"] += 1
            tasks = [
                asyncio.create_task(self._reader(ws)),
                asyncio.create_task(self._writer(ws)),
                asyncio.create_task(self._pinger(ws)),
            ]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            self._check_close(ws)
            return True
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3)

    def _check_close(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if ws.close_code in FATAL_CLOSE:
            self.fatal = f"WebSocket closed with {ws.close_code}: the session is unusable"
            self.errors.append(self.fatal)

    async def _reader(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            kind = frame.get("type")
            if kind == "message" and isinstance(frame.get("message"), dict):
                self._apply(frame["message"])
            elif kind == "ack":
                self._acked(frame.get("client_id"), frame.get("message"))
            elif kind == "pong":
                self._pong = time.monotonic()
            elif kind == "error":
                self.errors.append(f"error frame: {frame}")
                client_id = frame.get("client_id")
                if isinstance(client_id, str) and client_id in self.outbox:
                    # A refused send is never acknowledged: drop it, it is reported as lost.
                    self.outbox.pop(client_id)

    async def _writer(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send the outbox in order: first what is left from before, then each new message."""
        sent_here: set[str] = set()
        while True:
            self._wake.clear()
            for client_id, sent in list(self.outbox.items()):
                if client_id in sent_here:
                    continue
                frame = {"type": "send", "client_id": client_id, "body": sent.body}
                await ws.send_str(json.dumps(frame))
                sent_here.add(client_id)
                self.stats["frames_sent"] += 1
            await self._wake.wait()

    _pong: float = 0.0

    async def _pinger(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(PING_EVERY)
            asked = time.monotonic()
            await ws.send_str(json.dumps({"type": "ping"}))
            await asyncio.sleep(PONG_WITHIN)
            if self._pong < asked:
                self.stats["pong_timeouts"] += 1
                return  # a dead socket: reconnect


class PollVisitor(Visitor):
    """The long-poll fallback; ``until_answered`` stops polling once every answer is in."""

    until_answered: bool = False
    view_tag: str | None = None

    @property
    def transport(self) -> str:
        return "long-poll"

    async def run(self) -> None:
        poller = asyncio.create_task(self._poller())
        try:
            await self._sender()
            await poller
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def _sender(self) -> None:
        """POST the outbox's first message until a 2xx, then the next: strictly in order."""
        delay = self.backoff.first
        while self.fatal is None:
            if not self.outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            sent = next(iter(self.outbox.values()))
            try:
                async with self.http.post(
                    self.url("/messages"),
                    json={"body": sent.body, "client_id": sent.client_id},
                    headers=self.auth,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    status = resp.status
                    data = await resp.json(content_type=None)
            except HTTP_ERRORS:
                status, data = 0, None
            if status in (200, 201) and isinstance(data, dict):
                self._acked(sent.client_id, data.get("message"))
                delay = self.backoff.first
                continue
            if status in (0, 429) or status >= 500:
                self.stats["send_retries"] += 1
                await asyncio.sleep(delay)
                delay = self.backoff.next(delay)
                continue
            self.errors.append(f"POST {sent.body}: HTTP {status} {data}")
            if status in (401, 403, 404):
                self.fatal = f"POST answered {status}: the session is unusable"
                return
            self.outbox.pop(sent.client_id)  # refused for good: reported as lost

    async def _poller(self) -> None:
        delay = self.backoff.first
        while self.fatal is None:
            if self.until_answered and self.complete():
                return
            params = f"?after={self.cursor}&wait={POLL_WAIT}&limit=500"
            if self.view_tag:
                params += f"&view={self.view_tag}"
            asked = time.monotonic()
            try:
                async with self.http.get(
                    self.url("/messages") + params,
                    headers=self.auth,
                    timeout=aiohttp.ClientTimeout(total=POLL_WAIT + 15),
                ) as resp:
                    status = resp.status
                    data = await resp.json(content_type=None)
            except HTTP_ERRORS:
                status, data = 0, None
            if status == 200 and isinstance(data, dict):
                delay = self.backoff.first
                messages = data.get("messages") or []
                for message in messages:
                    if isinstance(message, dict):
                        self._apply(message)
                if isinstance(data.get("cursor"), int):
                    self.cursor = max(self.cursor, data["cursor"])
                self.view_tag = data.get("view_tag")
                if not messages and time.monotonic() - asked < 1:
                    await asyncio.sleep(1)  # the widget's pause after a quick, empty answer
                continue
            if status in (401, 403, 404):
                self.fatal = f"GET messages answered {status}: the session is unusable"
                self.errors.append(self.fatal)
                return
            self.stats["poll_retries"] += 1
            await asyncio.sleep(delay)
            delay = self.backoff.next(delay)


# -- the librarian -------------------------------------------------------------------------

SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {
        "ephemeral": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
        "state": {"lazy_load_members": True},
        "timeline": {"limit": 100},
    },
}
SYNC_TIMEOUT_MS = 10_000
GAP_PAGES = 50  # a gap of up to 50 × 100 events is read back before answering


@dataclass
class Sighting:
    room_id: str
    event_id: str
    seen_at: float  # time.monotonic()


class ChaosLibrarian:
    """A librarian in Element, simplified: joins every invite, answers every visitor message."""

    def __init__(
        self, client: AsyncClient, filter_id: str, is_ghost: Callable[[str], bool]
    ) -> None:
        self.client = client
        self.filter_id = filter_id
        self.is_ghost = is_ghost
        self.sightings: dict[str, list[Sighting]] = {}  # visitor body → where/when seen
        self.answers: dict[str, str] = {}  # answer body → its event id (confirmed)
        self.answered_at: dict[str, float] = {}
        self.joined: set[str] = set()
        self.stats: Counter[str] = Counter()
        self.errors: list[str] = []
        self._known: set[str] = set()  # event ids already looked at
        self._gaps: dict[str, list[str]] = {}  # room → prev_batch tokens of limited timelines
        self._queues: dict[str, asyncio.Queue[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._joining: set[str] = set()
        self._loop: asyncio.Task[None] | None = None

    @classmethod
    async def login(
        cls, homeserver: str, user_id: str, password: str, is_ghost: Callable[[str], bool]
    ) -> ChaosLibrarian:
        # max_timeouts=0: nio must not repeat a request on its own (the outcome of the first
        # try is unknown; the librarian checks the room before it sends again).
        config = AsyncClientConfig(
            store_sync_tokens=False, encryption_enabled=False, max_timeouts=0, request_timeout=20
        )
        client = AsyncClient(homeserver, user_id, config=config)
        resp = await client.login(password, device_name="refdesk-chaos")
        if not isinstance(resp, LoginResponse):
            await client.close()
            raise BenchError(f"login {user_id}: {resp}")
        filt = await client.upload_filter(**SYNC_FILTER)
        if not isinstance(filt, UploadFilterResponse):
            await client.close()
            raise BenchError(f"filter for {user_id}: {filt}")
        return cls(client, filt.filter_id, is_ghost)

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    def start(self) -> None:
        self._loop = asyncio.create_task(self._sync_loop(), name="chaos-librarian-sync")

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._loop] if self._loop else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync_loop(self) -> None:
        while True:
            try:
                resp = await self.client.sync(timeout=SYNC_TIMEOUT_MS, sync_filter=self.filter_id)
            except HTTP_ERRORS:
                resp = None
            if not isinstance(resp, SyncResponse):
                self.stats["sync_errors"] += 1
                await asyncio.sleep(0.5)
                continue
            for room_id in resp.rooms.invite:
                if room_id not in self.joined and room_id not in self._joining:
                    self._spawn(self._join(room_id))
            for room_id, room in resp.rooms.join.items():
                self.joined.add(room_id)
                if room.timeline.limited and room.timeline.prev_batch:
                    self._gaps.setdefault(room_id, []).append(room.timeline.prev_batch)
                self._take(room_id, [e.source for e in room.timeline.events])
            for room_id, tokens in list(self._gaps.items()):
                for token in list(tokens):
                    if await self._read_gap(room_id, token):
                        tokens.remove(token)
                if not tokens:
                    del self._gaps[room_id]

    async def _read_gap(self, room_id: str, token: str) -> bool:
        """Read back what a limited timeline left out, up to events already looked at; False
        if the homeserver did not answer (tried again after the next sync)."""
        found: list[dict[str, Any]] = []
        start: str | None = token
        for _ in range(GAP_PAGES):
            try:
                resp = await self.client.room_messages(room_id, start=start, limit=100)
            except HTTP_ERRORS:
                return False
            if not isinstance(resp, RoomMessagesResponse):
                return False
            chunk = [e.source for e in resp.chunk]
            fresh = [e for e in chunk if e.get("event_id") not in self._known]
            found.extend(fresh)
            if len(fresh) < len(chunk) or not chunk or not resp.end:
                break
            start = resp.end
        self.stats["gaps_read"] += 1
        self._take(room_id, list(reversed(found)))
        return True

    def _take(self, room_id: str, events: list[dict[str, Any]]) -> None:
        for event in events:
            event_id = event.get("event_id")
            if not isinstance(event_id, str) or event_id in self._known:
                continue
            self._known.add(event_id)
            if event.get("type") != "m.room.message" or not self.is_ghost(event.get("sender", "")):
                continue
            body = event.get("content", {}).get("body")
            if not isinstance(body, str) or not BODY.match(body):
                continue
            first = body not in self.sightings
            self.sightings.setdefault(body, []).append(
                Sighting(room_id, event_id, time.monotonic())
            )
            if first:
                queue = self._queues.get(room_id)
                if queue is None:
                    queue = self._queues[room_id] = asyncio.Queue()
                    self._spawn(self._answer_loop(room_id, queue))
                queue.put_nowait(body)

    async def _join(self, room_id: str) -> None:
        self._joining.add(room_id)
        try:
            for attempt in range(60):
                try:
                    resp = await self.client.join(room_id)
                except HTTP_ERRORS:
                    resp = None
                if isinstance(resp, JoinResponse):
                    self.joined.add(room_id)
                    self.stats["joins"] += 1
                    return
                status = getattr(getattr(resp, "transport_response", None), "status", 0)
                if status in (403, 404):
                    self.errors.append(f"join {room_id}: {resp}")
                    return
                await asyncio.sleep(min(0.25 * 2**attempt, 4))
            self.errors.append(f"join {room_id}: gave up")
        finally:
            self._joining.discard(room_id)

    async def _answer_loop(self, room_id: str, queue: asyncio.Queue[str]) -> None:
        while True:
            body = await queue.get()
            await self._answer(room_id, body)

    async def _answer(self, room_id: str, body: str) -> None:
        """Send the answer once: a send with an unknown outcome is looked for before a retry."""
        answer = answer_for(body)
        content = {"msgtype": "m.text", "body": answer, MARKER: answer}
        txn_id = f"chaos-{answer}"
        unknown = False
        delay = 0.25
        while True:
            if unknown:
                try:
                    found = await self._find(room_id, answer)
                except BenchError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 4)
                    continue
                if found is not None:
                    self.stats["found_by_check"] += 1
                    self._answered(answer, found)
                    return
                self.stats["resends"] += 1
            try:
                resp = await self.client.room_send(room_id, "m.room.message", content, txn_id)
            except HTTP_ERRORS:
                resp = None
            if isinstance(resp, RoomSendResponse):
                self._answered(answer, resp.event_id)
                return
            status = getattr(getattr(resp, "transport_response", None), "status", 0)
            if resp is not None and 400 <= status < 500 and status != 429:
                # Refused (e.g. not joined yet): nothing was sent.
                self.stats["send_refused"] += 1
                if room_id not in self.joined and room_id not in self._joining:
                    await self._join(room_id)
            else:
                unknown = True
                self.stats["send_unknown"] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4)

    def _answered(self, answer: str, event_id: str) -> None:
        self.answers[answer] = event_id
        self.answered_at[answer] = time.monotonic()

    async def _find(self, room_id: str, answer: str) -> str | None:
        """The event id of an answer of ours already in the room, if any (latest 500 of ours)."""
        only_ours = {"senders": [self.user_id], "types": ["m.room.message"]}
        start: str | None = None
        for _ in range(5):
            try:
                resp = await self.client.room_messages(
                    room_id, start=start, limit=100, message_filter=only_ours
                )
            except HTTP_ERRORS as exc:
                raise BenchError(f"read {room_id}: {exc!r}") from None
            if not isinstance(resp, RoomMessagesResponse):
                raise BenchError(f"read {room_id}: {resp}")
            for event in resp.chunk:
                if event.source.get("content", {}).get(MARKER) == answer:
                    return str(event.source["event_id"])
            if not resp.chunk or not resp.end:
                return None
            start = resp.end
        return None

    def has_seen(self, body: str) -> bool:
        return body in self.sightings
