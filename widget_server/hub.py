"""Wakes the visitor connections of a session when the desk stores something for it."""

from __future__ import annotations

import asyncio

from rooms.events import DeskEvent, MessageAdded, SessionClosed


class SessionSignals:
    """One asyncio.Event per watched session, replaced each time it fires.

    A waiter takes the current event *before* reading the store, so nothing stored in between
    can be missed; then it reads the store again. No message is held in memory here.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

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
        if isinstance(event, MessageAdded):
            self.fire(event.message.session_id)
        elif isinstance(event, SessionClosed):
            self.fire(event.session.id)

    def watched(self) -> int:
        return len(self._events)
