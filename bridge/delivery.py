"""Stored desk messages go out to the homeserver, in order, exactly once.

The worker reads pending messages from the store (never from memory), so messages survive a
restart of refdesk and wait while the homeserver is down. Each send carries the transaction id
``refdesk-<message id>``: if an answer is lost and the send is retried, the homeserver returns
the first event instead of making a second one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.desk_room import DeskRooms
from bridge.ghosts import GhostTemplate
from bridge.matrix_api import HomeserverUnavailable, MatrixClient, MatrixError
from refdesk.background import Worker
from rooms.desk import Desk
from rooms.events import DeskEvent, MessageAdded
from rooms.ids import RoomID
from rooms.session import Message, Origin, Session

log = logging.getLogger("refdesk.bridge.delivery")

SESSION_STATE_EVENT = "org.refdesk.session"


def txn_id_for(message: Message) -> str:
    return f"refdesk-{message.id}"


@dataclass
class Deliverer:
    desk: Desk
    client: MatrixClient
    ghosts: GhostTemplate
    rooms: DeskRooms
    topic_labels: dict[str, str]
    min_backoff: float = 0.5
    max_backoff: float = 30.0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _ready_ghosts: set[str] = field(default_factory=set)
    _sessions: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._worker = Worker("refdesk-delivery", self._run)

    def on_desk_event(self, event: DeskEvent) -> None:
        if isinstance(event, MessageAdded) and event.message.needs_delivery:
            self._wake.set()

    def start(self) -> None:
        self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()
        tasks = list(self._sessions.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sessions.clear()

    async def _run(self) -> None:
        """Hand each session with pending messages to its own task.

        A session that is slow (its room is being created) or failing (the homeserver refuses
        it) backs off on its own; messages of every other chat keep flowing.
        """
        while True:
            self._wake.clear()
            try:
                self.dispatch(await self.desk.pending_deliveries(limit=1000))
            except Exception:
                log.exception("reading the outbox failed")
            try:
                await asyncio.wait_for(self._wake.wait(), 30)
            except TimeoutError:
                pass

    def dispatch(self, pending: Iterable[Message]) -> None:
        for session_id in dict.fromkeys(m.session_id for m in pending):
            task = self._sessions.get(session_id)
            if task is None or task.done():
                self._sessions[session_id] = asyncio.create_task(
                    self._session_loop(session_id), name=f"refdesk-deliver-{session_id}"
                )

    async def _session_loop(self, session_id: str) -> None:
        """Deliver one session's messages in order until none is pending; retry with back-off."""
        backoff = self.min_backoff
        try:
            while True:
                pending = [
                    m
                    for m in await self.desk.pending_deliveries(limit=1000)
                    if m.session_id == session_id
                ]
                if not pending:
                    return
                if await self._deliver_session(pending):
                    backoff = self.min_backoff
                    continue
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
        except Exception:
            log.exception(
                "delivery for session %s failed; it is retried on the next wake", session_id
            )
        finally:
            if self._sessions.get(session_id) is asyncio.current_task():
                del self._sessions[session_id]

    async def deliver_pending(self) -> None:
        """Deliver everything pending now, every session in parallel (tests, start-up)."""
        self.dispatch(await self.desk.pending_deliveries(limit=1000))
        await asyncio.gather(*list(self._sessions.values()), return_exceptions=True)

    async def _deliver_session(self, messages: Iterable[Message]) -> bool:
        """Deliver one session's messages in order; False at the first failure."""
        for message in messages:
            try:
                await self._deliver(message)
            except (HomeserverUnavailable, MatrixError) as exc:
                log.warning(
                    "message %d of session %s not delivered yet: %s",
                    message.id,
                    message.session_id,
                    exc,
                )
                return False
        return True

    async def _deliver(self, message: Message) -> None:
        session = await self.desk.get_session(message.session_id)
        if session.room_id is None:
            if message.origin is not Origin.VISITOR:
                # No room was ever needed (the visitor never wrote): nothing to tell anyone.
                await self.desk.mark_delivered(message.id, None)
                return
            session = await self.ensure_room(session)
        assert session.room_id is not None
        if message.origin is Origin.VISITOR:
            ghost = await self.ensure_ghost(session)
            content = {"msgtype": "m.text", "body": message.body}
            event_id = await self.client.send_message(
                session.room_id, content, txn_id_for(message), user_id=ghost
            )
        else:
            content = {"msgtype": "m.notice", "body": message.body}
            event_id = await self.client.send_message(session.room_id, content, txn_id_for(message))
        await self.desk.mark_delivered(message.id, event_id)

    async def ensure_ghost(self, session: Session) -> str:
        """Register the visitor's ghost and give it the visitor's name (idempotent)."""
        mxid = self.ghosts.format(session.id)
        if mxid not in self._ready_ghosts:
            await self.client.register_ghost(self.ghosts.localpart(session.id))
            await self.client.set_displayname(mxid, f"{session.form.name} (visitor)")
            self._ready_ghosts.add(mxid)
        return mxid

    async def ensure_room(self, session: Session) -> Session:
        """Create the session's room (found again by alias if a retry), ghost joined."""
        ghost = await self.ensure_ghost(session)
        form = session.form
        topic_label = self.topic_labels.get(form.topic, form.topic)
        details = [f"Topic: {topic_label}", f"Email: {form.email}"]
        if form.member_number:
            details.append(f"Member number: {form.member_number}")
        details.append(f"Language: {form.language}")
        state_content: dict[str, Any] = {
            "session_id": session.id,
            "name": form.name,
            "email": form.email,
            "member_number": form.member_number,
            "topic": form.topic,
            "language": form.language,
            "page_url": form.page_url,
            "started_at": session.created_at.isoformat(),
        }
        room_id = await self.client.create_room(
            alias_localpart=self.ghosts.alias_localpart(session.id),
            name=f"{form.name} · {topic_label}",
            topic=" · ".join(details),
            # Only librarians on duty are rung; the others can join from the Space.
            invite=[ghost, *([] if session.offline else await self.desk.queue.on_duty())],
            initial_state=[
                {"type": SESSION_STATE_EVENT, "state_key": "", "content": state_content},
                {"type": "m.room.join_rules", "state_key": "", "content": self.rooms.join_rule()},
            ],
        )
        await self.client.join(room_id, ghost)
        log.info("session %s has room %s", session.id, room_id)
        return await self.desk.attach_room(session.id, RoomID(room_id))
