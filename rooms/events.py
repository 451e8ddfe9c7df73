"""What happened at the desk. Adapters subscribe; the core never calls them."""

from __future__ import annotations

from dataclasses import dataclass

from rooms.session import Message, Session


@dataclass(frozen=True)
class SessionStarted:
    session: Session


@dataclass(frozen=True)
class MessageAdded:
    """A message was stored. ``message.needs_delivery`` tells the bridge it must go out."""

    message: Message


@dataclass(frozen=True)
class SessionClosed:
    session: Session


@dataclass(frozen=True)
class RoomAttached:
    session: Session


DeskEvent = SessionStarted | MessageAdded | SessionClosed | RoomAttached
