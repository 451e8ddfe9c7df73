"""Wakes the visitor connections of a session when something changes for it.

No message is held here: connections read the store after they wake. The hub keeps only what
is never stored: which librarians are typing right now.
"""

from __future__ import annotations

import asyncio

from rooms.events import (
    DeskEvent,
    MessageAdded,
    MessageUpdated,
    ReadUpTo,
    SessionChanged,
    SessionClaimed,
    SessionClosed,
    SessionEscalated,
    SessionQueued,
    SessionTransferred,
    Typing,
    VerificationDone,
    VerificationRequested,
)


class SessionSignals:
    """One asyncio.Event per watched session, replaced each time it fires.

    A waiter takes the current event *before* reading the store, so nothing stored in between
    can be missed; then it reads the store again.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self.typing: dict[str, tuple[str, ...]] = {}
        # Sessions whose visitors last saw themselves in the queue: only their positions move
        # when the queue changes (kept up to date as views are computed).
        self.waiting: set[str] = set()

    def current(self, session_id: str) -> asyncio.Event:
        event = self._events.get(session_id)
        if event is None:
            event = self._events[session_id] = asyncio.Event()
        return event

    def fire(self, session_id: str) -> None:
        event = self._events.pop(session_id, None)
        if event is not None:
            event.set()

    def on_desk_event(self, event: DeskEvent) -> None:
        if isinstance(event, MessageAdded | MessageUpdated):
            self.fire(event.message.session_id)
        elif isinstance(event, SessionClosed):
            self.typing.pop(event.session.id, None)
            self.fire(event.session.id)
            self._queue_changed()
        elif isinstance(event, SessionQueued | SessionClaimed):
            self.fire(event.session.id)
            self._queue_changed()
        elif isinstance(
            event, SessionTransferred | SessionEscalated | VerificationRequested | VerificationDone
        ):
            self.fire(event.session.id)
        elif isinstance(event, Typing) and event.side == "librarian":
            if event.names:
                self.typing[event.session_id] = event.names
            else:
                self.typing.pop(event.session_id, None)
            self.fire(event.session_id)
        elif isinstance(event, ReadUpTo) and event.side == "librarian":
            self.fire(event.session_id)
        elif isinstance(event, SessionChanged):  # in another process of this desk
            self.fire(event.session_id)
            if event.queue_moved:
                self._queue_changed()

    def _queue_changed(self) -> None:
        # Positions of the visitors waiting in the queue may have moved: wake those (each
        # compares its view with what it last sent and stays quiet if nothing changed).
        for session_id in list(self.waiting):
            self.fire(session_id)

    def watched(self) -> int:
        return len(self._events)
