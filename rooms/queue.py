"""The queue and the roster: who is on duty, claim, release, transfer, requeue, escalation.

Every rule that decides who serves a visitor lives here; adapters only report what librarians
did and render the events this module emits.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rooms.events import (
    DutyChanged,
    EventBus,
    MessageAdded,
    SessionClaimed,
    SessionEscalated,
    SessionQueued,
    SessionTransferred,
)
from rooms.ids import MessageID, SessionID, UserID
from rooms.intents import IntentKind, Intents
from rooms.session import Message, Origin, Session
from rooms.store import Store
from rooms.texts import text

log = logging.getLogger("refdesk.rooms.queue")


class QueueError(Exception):
    """A queue action that is not allowed; the message says why, for the librarian."""


@dataclass(frozen=True)
class ClaimResult:
    won: bool
    session: Session


@dataclass(frozen=True)
class QueueRules:
    librarians: tuple[str, ...] = ()
    supervisors: tuple[str, ...] = ()
    escalate_after: float = 120.0
    default_on_duty: bool = True


class Queue:
    """Every change here is one unit of work: the new state, what the visitor is told, and the
    intents that tell the librarians (rooms/intents.py) commit together or not at all."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        rules: QueueRules,
        clock: Callable[[], datetime],
        intents: Intents | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.rules = rules
        self.clock = clock
        self.intents = intents or Intents(store, bus, clock)
        self.after_claim: Callable[[Session, UserID], Awaitable[None]] | None = None

    # roster

    def is_librarian(self, user_id: str) -> bool:
        return user_id in self.rules.librarians or user_id in self.rules.supervisors

    async def on_duty(self) -> list[UserID]:
        """Librarians on duty now, in config order."""
        duty = await self.store.duty()
        return [UserID(u) for u in self.rules.librarians if duty.get(u, self.rules.default_on_duty)]

    async def is_on_duty(self, user_id: str) -> bool:
        return user_id in await self.on_duty()

    async def set_duty(self, user_id: UserID, on_duty: bool) -> bool:
        """Go on or off duty. Off duty hands back every session the librarian owns."""
        if user_id not in self.rules.librarians:
            raise QueueError("Only librarians listed in the desk's config can go on duty.")
        async with self.store.unit():
            current = await self.is_on_duty(user_id)
            if current == on_duty:
                return False
            await self.store.set_duty(user_id, on_duty, self.clock())
            self.bus.emit(DutyChanged(user_id, on_duty))
            if not on_duty:
                for session in await self.store.sessions_owned_by(user_id):
                    await self.requeue(session.id, user_id, reason="off_duty")
        log.info("%s is now %s duty", user_id, "on" if on_duty else "off")
        return True

    # claim, transfer, release

    async def _session(self, session_id: SessionID) -> Session:
        found = await self.store.get_session(session_id)
        if found is None:
            raise QueueError("No such session.")
        return found[0]

    async def _tell_visitor(self, session: Session, key: str, **values: object) -> None:
        notice = Message(
            id=MessageID(0),
            session_id=session.id,
            origin=Origin.DESK,
            body=text(key, session.form.language, **values),
            created_at=self.clock(),
        )
        stored, _ = await self.store.insert_message(notice)
        self.bus.emit(MessageAdded(stored))

    async def claim(self, session_id: SessionID, user_id: UserID, name: str) -> ClaimResult:
        """First come, first served: exactly one concurrent caller wins."""
        if not self.is_librarian(user_id):
            raise QueueError("Only librarians can claim a chat.")
        async with self.store.unit():
            won = await self.store.claim(session_id, user_id, name, self.clock())
            session = await self._session(session_id)
            if won:
                await self.intents.add(session.id, IntentKind.CLAIMED, by=user_id, name=name)
                self.bus.emit(SessionClaimed(session, user_id))
                await self._tell_visitor(session, "claimed", librarian=name)
                if self.after_claim is not None:
                    await self.after_claim(session, user_id)
        if won:
            log.info("session %s claimed by %s", session_id, user_id)
        return ClaimResult(won, session)

    async def transfer(
        self, session_id: SessionID, by: UserID, to: UserID, to_name: str
    ) -> Session:
        async with self.store.unit():
            session = await self._session(session_id)
            if not session.is_open:
                raise QueueError("This chat is closed.")
            if to not in self.rules.librarians and to not in self.rules.supervisors:
                raise QueueError(f"{to} is not a librarian of this desk.")
            if to == session.owner:
                raise QueueError(f"{to} already serves this chat.")
            if session.owner is None:
                # Handing an unclaimed chat to someone is a claim on their behalf.
                if not await self.store.claim(session_id, to, to_name, self.clock()):
                    raise QueueError("Someone claimed this chat just now.")
            elif session.owner != by and by not in self.rules.supervisors:
                raise QueueError(
                    f"Only the owner ({session.owner_name}) or a supervisor can transfer."
                )
            elif not await self.store.transfer(
                session_id, session.owner, to, to_name, self.clock()
            ):
                raise QueueError("The chat changed hands just now; try again.")
            updated = await self._session(session_id)
            from_owner = session.owner or by
            await self.intents.add(
                session.id,
                IntentKind.TRANSFERRED,
                from_owner=from_owner,
                from_name=session.owner_name,
                to=to,
                to_name=to_name,
            )
            self.bus.emit(SessionTransferred(updated, from_owner, to))
            await self._tell_visitor(updated, "transferred", librarian=to_name)
        return updated

    async def release(self, session_id: SessionID, by: UserID) -> Session:
        session = await self._session(session_id)
        if session.owner != by:
            raise QueueError("Only the librarian serving this chat can release it.")
        return await self.requeue(session_id, by, reason="released")

    async def requeue(self, session_id: SessionID, owner: UserID, reason: str) -> Session:
        """Back to the queue (released, owner left the room, owner went off duty)."""
        async with self.store.unit():
            before = await self._session(session_id)
            if not await self.store.requeue(session_id, owner, self.clock()):
                return before
            session = await self._session(session_id)
            await self.ring(session, reason, previous_owner=owner, previous_name=before.owner_name)
            await self._tell_visitor(session, "requeued")
        log.info("session %s back in the queue (%s)", session_id, reason)
        return session

    async def ring(
        self,
        session: Session,
        reason: str,
        previous_owner: UserID | None = None,
        previous_name: str | None = None,
    ) -> None:
        """The session (re)entered the queue: ring whoever is on duty now.

        Offline sessions (left while the desk was closed) are queued quietly: nobody is rung.
        """
        users = [] if session.offline else [str(u) for u in await self.on_duty()]
        await self.intents.add(
            session.id,
            IntentKind.RING,
            reason=reason,
            users=users,
            offline=session.offline,
            previous_owner=previous_owner,
            previous_name=previous_name,
        )
        self.bus.emit(SessionQueued(session, reason, previous_owner=previous_owner))

    # waiting

    async def waiting(self) -> list[Session]:
        return await self.store.waiting_sessions()

    async def position(self, session: Session) -> int | None:
        return await self.store.queue_position(session)

    async def tick(self) -> list[Session]:
        """Escalate sessions unclaimed for longer than ``escalate_after``; returns them."""
        now = self.clock()
        cutoff = now - timedelta(seconds=self.rules.escalate_after)
        escalated = []
        for position, session in enumerate(await self.store.waiting_sessions(), start=1):
            if session.escalated_at is not None or session.queued_at is None or session.offline:
                continue
            if session.queued_at > cutoff:
                continue
            async with self.store.unit():
                if not await self.store.mark_escalated(session.id, now):
                    continue
                updated = await self._session(session.id)
                ring = sorted({str(u) for u in await self.on_duty()} | set(self.rules.supervisors))
                waited = int((now - session.queued_at).total_seconds())
                await self.intents.add(
                    session.id, IntentKind.ESCALATED, users=ring, waited=waited, position=position
                )
                self.bus.emit(SessionEscalated(updated, position))
                await self._tell_visitor(updated, "escalated", position=position)
            log.info("session %s escalated after %ss", session.id, self.rules.escalate_after)
            escalated.append(updated)
        return escalated
