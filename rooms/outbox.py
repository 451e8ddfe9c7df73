"""The desk's outbox: intents (rooms/intents.py) stored inside the caller's unit of work, and
what the chat-network adapter needs to perform them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from rooms.events import EventBus, IntentAdded
from rooms.ids import MessageID
from rooms.intents import DESK_LANE, Intent, IntentKind, Work
from rooms.session import Message, Session
from rooms.store import Database, Tx, sessions
from rooms.store import messages as message_rows
from rooms.store import outbox as rows

Delivered = tuple[MessageID, str | None]


class Outbox:
    def __init__(self, db: Database, bus: EventBus, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock

    async def add(
        self,
        lane: str,
        kind: IntentKind,
        *,
        context: tuple[Session | None, Message | None] | None = None,
        **payload: Any,
    ) -> int:
        """Store an intent (in the unit of work it is called from) and wake the adapter once
        that commits.

        ``context``: the lane's session and the intent's message as they will be at the commit
        (the caller changes neither after this). On a store this process alone writes, if the
        intent is then its lane's first, it goes out with the wake-up (``IntentAdded.work``),
        and the adapter starts on it without reading it back: one trip fewer per message.
        """
        now = self.clock()

        async def unit(tx: Tx) -> tuple[int, Work | None]:
            intent_id = await rows.add(tx, lane, kind, payload, now)
            if context is None or not self.db.sole_writer:
                return intent_id, None
            first = await rows.next_in(tx, lane)
            if first is None or first.id != intent_id:
                return intent_id, None  # others before it: the adapter reads them in order
            return intent_id, Work(first, *context)

        intent_id, work = await self.db.write(unit)
        self.bus.emit(IntentAdded(lane, work))
        return intent_id

    async def take(
        self, lane: str, finished: tuple[int, Delivered | None] | None = None
    ) -> Work | None:
        """The lane's next intent and its context; ``finished``: first record the previous one
        as done (and the message it delivered) — one trip for both."""
        now = self.clock()

        async def unit(tx: Tx) -> Work | None:
            if finished is not None:
                intent_id, delivered = finished
                if delivered is not None:
                    await message_rows.mark_delivered(tx, delivered[0], delivered[1], now)
                await rows.done(tx, intent_id, now)
            intent = await rows.next_in(tx, lane)
            if intent is None:
                return None
            session = None if lane == DESK_LANE else await sessions.get(tx, lane)
            message_id = intent.payload.get("message_id")
            message = await message_rows.get(tx, message_id) if message_id else None
            return Work(intent, session, message)

        if finished is None:
            return await self.db.read(unit)
        return await self.db.write(unit)

    async def lanes(self) -> list[str]:
        return await self.db.read(rows.lanes)

    async def next_in(self, lane: str) -> Intent | None:
        return await self.db.read(lambda tx: rows.next_in(tx, lane))

    async def pending(self, lane: str | None = None) -> list[Intent]:
        return await self.db.read(lambda tx: rows.pending(tx, lane))

    async def last_id(self) -> int:
        return await self.db.read(rows.last_id)

    async def done(self, intent_id: int, delivered: Delivered | None = None) -> None:
        """The intent is performed; ``delivered``: the message it delivered and its event."""
        now = self.clock()

        async def unit(tx: Tx) -> None:
            if delivered is not None:
                await message_rows.mark_delivered(tx, delivered[0], delivered[1], now)
            await rows.done(tx, intent_id, now)

        await self.db.write(unit)

    async def refused(self, intent_id: int, reason: str, *, give_up: bool) -> int:
        return await self.db.write(
            lambda tx: rows.refused(tx, intent_id, reason, self.clock(), give_up)
        )
