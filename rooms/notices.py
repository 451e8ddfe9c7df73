"""What the desk tells the visitor: a desk message in the conversation, announced once stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from rooms.events import EventBus, MessageAdded
from rooms.ids import MessageID
from rooms.session import Message, Origin, Session
from rooms.store import Database
from rooms.store import messages as rows


async def tell_visitor(
    db: Database,
    bus: EventBus,
    clock: Callable[[], datetime],
    session: Session,
    body: str,
    *,
    to_room: bool = False,
) -> Message:
    """Store a desk notice in the session (``to_room``: it goes to the room too) and announce
    it once the unit of work it belongs to commits."""
    notice = Message(
        id=MessageID(0),
        session_id=session.id,
        origin=Origin.DESK,
        body=body,
        created_at=clock(),
        needs_delivery=to_room,
    )
    stored = await db.write(lambda tx: rows.insert(tx, notice))
    bus.emit(MessageAdded(stored))
    return stored
