"""What the live list (rooms/live.py) holds: a visitor on the site, and a librarian's invitation.

Apart from rooms/live.py so that the events (rooms/events.py) can carry them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rooms.ids import UserID


@dataclass(frozen=True)
class Invitation:
    """A librarian asks a visitor on the site to chat. ``token`` is what the visitor's widget
    starts the chat with (random, known only to that widget and the desk)."""

    token: str
    visitor: int
    librarian: UserID
    librarian_name: str
    text: str | None
    page: str
    reply_to: str | None  # the adapter's own: where to tell the librarian the answer
    at: datetime


@dataclass(slots=True)
class LiveVisitor:
    """A visitor on the library's pages with the widget loaded (nothing else is known)."""

    number: int  # in order of arrival, never reused by this process
    page: str  # without query string or fragment
    language: str  # one of the desk's, or "?"
    arrived: datetime  # on this page since
    invitation: Invitation | None = None  # pending
