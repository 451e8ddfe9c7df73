"""Desk events become Matrix actions: ringing, claim notices, invites, the live queue, typing.

Events are handled one at a time, in the order the desk announced them, by one worker task.
The desk's state is in the store already; what is done here is telling people, so a homeserver
that is briefly down delays these actions (they are retried) but loses no desk state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from bridge.desk_room import DeskRooms
from bridge.formatting import notice
from bridge.ghosts import GhostTemplate
from bridge.matrix_api import HomeserverUnavailable, MatrixClient, MatrixError
from refdesk.background import Worker
from rooms.desk import Desk
from rooms.events import (
    DeskEvent,
    FeedbackGiven,
    OfflineWaiting,
    ReadUpTo,
    RoomAttached,
    SessionClaimed,
    SessionClosed,
    SessionEscalated,
    SessionQueued,
    SessionTransferred,
    Typing,
    VerificationDone,
    VerificationRequested,
)
from rooms.session import Origin, Session

log = logging.getLogger("refdesk.bridge.reactor")

REQUEUE_REASONS = {
    "released": "{owner} released it",
    "owner_left": "{owner} left the room",
    "off_duty": "{owner} went off duty",
}
ATTEMPTS = 6


class Reactor:
    def __init__(
        self,
        desk: Desk,
        client: MatrixClient,
        ghosts: GhostTemplate,
        rooms: DeskRooms,
        supervisors: tuple[str, ...],
    ) -> None:
        self.desk = desk
        self.client = client
        self.ghosts = ghosts
        self.rooms = rooms
        self.supervisors = supervisors
        self._queue: asyncio.Queue[DeskEvent] = asyncio.Queue()
        self._worker = Worker("refdesk-reactor", self._run)

    def on_desk_event(self, event: DeskEvent) -> None:
        if isinstance(event, Typing | ReadUpTo) and event.side != "visitor":
            return
        if isinstance(
            event,
            RoomAttached
            | SessionQueued
            | SessionClaimed
            | SessionTransferred
            | SessionEscalated
            | SessionClosed
            | Typing
            | ReadUpTo
            | FeedbackGiven
            | VerificationRequested
            | VerificationDone
            | OfflineWaiting,
        ):
            self._queue.put_nowait(event)

    def start(self) -> None:
        self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()

    async def idle(self) -> None:
        """Wait until every announced event has been acted on (tests, shutdown)."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._with_retries(event)
            finally:
                self._queue.task_done()

    async def _with_retries(self, event: DeskEvent) -> None:
        delay = 0.5
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self.act(event)
                return
            except (HomeserverUnavailable, MatrixError) as exc:
                transient = isinstance(exc, HomeserverUnavailable) or exc.transient
                if not transient or attempt == ATTEMPTS:
                    log.warning("could not act on %s: %s", type(event).__name__, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
            except Exception:
                log.exception("acting on %s failed", type(event).__name__)
                return

    async def act(self, event: DeskEvent) -> None:
        if isinstance(event, Typing):
            await self._typing(event)
        elif isinstance(event, ReadUpTo):
            await self._read(event)
        elif isinstance(event, RoomAttached):
            await self._room_created(event.session)
        elif isinstance(event, SessionQueued):
            if event.reason != "new":  # a new session rings once its room exists
                await self._requeued(event)
        elif isinstance(event, SessionClaimed):
            await self._claimed(event)
        elif isinstance(event, SessionTransferred):
            await self._transferred(event)
        elif isinstance(event, SessionEscalated):
            await self._escalated(event)
        elif isinstance(event, SessionClosed):
            await self._closed(event)
        elif isinstance(event, FeedbackGiven):
            await self._feedback(event)
        elif isinstance(event, OfflineWaiting):
            on_duty = [str(u) for u in await self.desk.queue.on_duty()]
            noun = "message waits" if event.count == 1 else "messages wait"
            await self.rooms.say(
                f"📨 The desk is open: {event.count} offline {noun} in the queue. "
                "Join from the Space (or !queue), reply, and the visitor gets it by email.",
                on_duty,
                f"refdesk-offline-{int(time.time())}",
            )
        elif isinstance(event, VerificationRequested):
            fields = ", ".join(f.replace("_", " ") for f in self.desk.verification_fields)
            who = "Automatically after the claim: asked" if event.by is None else "Asked"
            body = (
                f"{who} {event.session.form.name} to confirm membership ({fields}) in the widget."
            )
            await self._room_say(event.session, body, [], f"verify-ask-{int(time.time() * 1000)}")
        elif isinstance(event, VerificationDone):
            await self._room_say(
                event.session, event.notice, [], f"verify-{int(time.time() * 1000)}"
            )

    # helpers

    async def _fresh(self, session: Session) -> Session:
        return await self.desk.get_session(session.id)

    async def _first_line(self, session: Session) -> str | None:
        for message in await self.desk.messages_after(session.id, 0, limit=20):
            if message.origin is Origin.VISITOR:
                return message.body.splitlines()[0] if message.body else None
        return None

    async def _queue_notice(self, session: Session, mentions: list[str] | None = None) -> None:
        feedback = await self.desk.store.feedback(session.id)
        await self.rooms.upsert_queue_notice(
            await self._fresh(session),
            await self._first_line(session),
            mentions or [],
            rating=feedback.rating if feedback else None,
        )

    async def _invite_missing(self, room_id: str, users: list[str]) -> None:
        members = await self.client.members(room_id)
        for user_id in users:
            if members.get(user_id) not in ("join", "invite"):
                try:
                    await self.client.invite(room_id, user_id)
                except MatrixError as exc:
                    if exc.transient:
                        raise
                    log.warning("could not invite %s: %s", user_id, exc)

    async def _room_say(self, session: Session, body: str, mentions: list[str], tag: str) -> None:
        if session.room_id is None:
            return
        txn = f"refdesk-n-{session.id}-{tag}"
        await self.client.send_message(session.room_id, notice(body, mentions), txn)

    def _waited(self, session: Session) -> str:
        start = session.queued_at or session.created_at
        seconds = int((datetime.now(start.tzinfo) - start).total_seconds())
        return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"

    # what each event means in Matrix

    async def _room_created(self, session: Session) -> None:
        room_id = session.room_id
        assert room_id is not None
        await self.rooms.link(room_id)
        session = await self._fresh(session)
        topic = self.rooms.topic_labels.get(session.form.topic, session.form.topic)
        first = await self._first_line(session) or ""
        if session.offline:
            # Left while the desk was closed: queued quietly, told at the next opening.
            body = (
                f"📨 Offline message: {session.form.name} · {topic}\n“{first[:300]}”\n"
                "Replies here are emailed to the visitor with a link back to this chat."
            )
            await self._room_say(session, body, [], "new")
            await self._queue_notice(session)
            return
        on_duty = [str(u) for u in await self.desk.queue.on_duty()]
        await self._invite_missing(room_id, on_duty)
        body = (
            f"New chat: {session.form.name} · {topic}\n“{first[:300]}”\n"
            "Reply here, or type !claim, to serve this visitor. !help lists the commands."
        )
        await self._room_say(session, body, on_duty, "new")
        await self._queue_notice(session, on_duty)

    async def _requeued(self, event: SessionQueued) -> None:
        session = await self._fresh(event.session)
        if session.room_id is None:
            return
        on_duty = [str(u) for u in await self.desk.queue.on_duty()]
        await self._invite_missing(session.room_id, on_duty)
        owner = event.previous_owner or "the librarian"
        why = REQUEUE_REASONS.get(event.reason, "{owner} handed it back").format(owner=owner)
        body = (
            f"Back in the queue: {why}. Reply here, or type !claim, to serve {session.form.name}."
        )
        stamp = int(time.time())
        await self._room_say(session, body, on_duty, f"requeue-{stamp}")
        await self.rooms.say(
            f"🔔 Back in the queue: {session.form.name} ({why}).",
            on_duty,
            f"refdesk-d-{session.id}-{stamp}",
        )
        await self._queue_notice(session)

    async def _claimed(self, event: SessionClaimed) -> None:
        session = await self._fresh(event.session)
        if session.room_id is None:
            return
        name = session.owner_name or event.by
        await self._invite_missing(session.room_id, [event.by])
        await self._room_say(
            session,
            f"{name} claimed this chat and is serving {session.form.name}.",
            [],
            f"claim-{event.by}-{int(time.time())}",
        )
        # Invitations nobody needs any more are withdrawn.
        members = await self.client.members(session.room_id)
        for user_id, membership in members.items():
            if membership == "invite" and user_id != event.by and not self.ghosts.is_ghost(user_id):
                await self.client.kick(session.room_id, user_id, f"Claimed by {name}")
        await self._queue_notice(session)

    async def _transferred(self, event: SessionTransferred) -> None:
        session = await self._fresh(event.session)
        if session.room_id is None:
            return
        await self._invite_missing(session.room_id, [event.to])
        body = f"{event.from_owner} passed this chat to {session.owner_name} ({event.to})."
        await self._room_say(session, body, [event.to], f"transfer-{event.to}-{int(time.time())}")
        await self._queue_notice(session, [event.to])

    async def _escalated(self, event: SessionEscalated) -> None:
        session = await self._fresh(event.session)
        if session.room_id is None or session.owner is not None:
            return
        on_duty = [str(u) for u in await self.desk.queue.on_duty()]
        ring = sorted(set(on_duty) | set(self.supervisors))
        await self._invite_missing(session.room_id, ring)
        waited = self._waited(session)
        body = (
            f"⚠️ Still waiting after {waited}: {session.form.name}. "
            "Please claim it now (reply, or !claim)."
        )
        await self._room_say(session, body, ring, "escalated")
        await self.rooms.say(
            f"⚠️ {session.form.name} has waited {waited} with nobody serving.",
            ring,
            f"refdesk-d-{session.id}-escalated",
        )
        await self._queue_notice(session)

    async def _closed(self, event: SessionClosed) -> None:
        session = await self._fresh(event.session)
        if session.room_id is None:
            await self._queue_notice(session)
            return
        if session.closed_by != "visitor":
            await self._room_say(session, "Chat closed. The visitor was told.", [], "closed")
        else:
            await self._wait_delivered(session)
        await self._queue_notice(session)
        # Closed chats leave librarians' room lists; they stay in the Space for history.
        members = await self.client.members(session.room_id)
        for user_id, membership in members.items():
            if user_id == self.client.bot_mxid or self.ghosts.is_ghost(user_id):
                continue
            if membership in ("join", "invite"):
                await self.client.kick(
                    session.room_id, user_id, "Chat closed; it stays in the Reference desk space"
                )

    async def _feedback(self, event: FeedbackGiven) -> None:
        session, feedback = event.session, event.feedback
        comment = f" “{feedback.comment}”" if feedback.comment else ""
        served = f" for {session.owner_name}" if session.owner_name else ""
        body = f"Visitor feedback{served}: {feedback.stars} ({feedback.rating}/5){comment}"
        stamp = int(feedback.updated_at.timestamp() * 1000)
        await self._room_say(session, body, [], f"feedback-{stamp}")
        await self._queue_notice(session)

    async def _wait_delivered(self, session: Session, seconds: float = 15) -> None:
        """Let the visitor's last words reach the room before the librarians leave it."""
        for _ in range(int(seconds * 10)):
            pending = await self.desk.pending_deliveries(limit=1000)
            if not any(m.session_id == session.id for m in pending):
                return
            await asyncio.sleep(0.1)

    async def _typing(self, event: Typing) -> None:
        session = await self.desk.get_session(event.session_id)
        if session.room_id is None or not session.is_open:
            return
        ghost = self.ghosts.format(session.id)
        await self.client.typing(session.room_id, ghost, event.typing, 6000)

    async def _read(self, event: ReadUpTo) -> None:
        session = await self.desk.get_session(event.session_id)
        if session.room_id is None or event.message.remote_id is None:
            return
        ghost = self.ghosts.format(session.id)
        await self.client.read_receipt(session.room_id, event.message.remote_id, ghost)
