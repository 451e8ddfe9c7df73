"""Wakes the visitor connections of a session when something changes for it.

No message is held here: connections read the store after they wake. The hub keeps only what
is never stored: which librarians are typing right now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Protocol

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
from rooms.session import Message


class Watcher(Protocol):
    """A live connection of a session (a WebSocket): told that its session changed, and with
    what message when that is all that changed and it may skip reading the store."""

    def wake(self, message: Message | None = None) -> None: ...


class SessionSignals:
    """Wakes whoever watches a session: WebSockets by a call, long polls by an event.

    A WebSocket registers itself (:meth:`watch`) and is called back (``wake()``) each time its
    session changes; it holds no task and no event while it waits, so an idle connection costs
    only its socket and its handler. A long poll takes the session's current asyncio.Event
    (:meth:`current`), replaced each time it fires, *before* it reads the store, so nothing
    stored in between can be missed; then it reads the store again.

    ``carry_messages``: the store is written by this process alone (SQLite). Events then come
    in the order their changes were committed, and every change of a chat's messages comes with
    its event, so a new or changed message handed to the WebSockets with the wake-up (it always
    is) may be pushed without reading the store. With PostgreSQL another process may commit a
    change of the same chat just before, which we hear of later: there they always read.
    """

    def __init__(self, carry_messages: bool = False) -> None:
        self.carry_messages = carry_messages
        self._events: dict[str, asyncio.Event] = {}
        # Usually one connection per session: the watcher itself, a tuple for several tabs.
        self._watchers: dict[str, Watcher | tuple[Watcher, ...]] = {}
        self.typing: dict[str, tuple[str, ...]] = {}
        # Long polls waiting right now, per session (for :meth:`connected`).
        self._polls: dict[str, int] = {}
        # Sessions whose visitors last saw themselves in the queue: only their positions move
        # when the queue changes (kept up to date as views are computed).
        self.waiting: set[str] = set()

    def current(self, session_id: str) -> asyncio.Event:
        event = self._events.get(session_id)
        if event is None:
            event = self._events[session_id] = asyncio.Event()
        return event

    def watch(self, session_id: str, watcher: Watcher) -> None:
        found = self._watchers.get(session_id)
        if found is None:
            self._watchers[session_id] = watcher
        elif isinstance(found, tuple):
            self._watchers[session_id] = (*found, watcher)
        else:
            self._watchers[session_id] = (found, watcher)

    def unwatch(self, session_id: str, watcher: Watcher) -> None:
        found = self._watchers.get(session_id)
        if found is watcher:
            del self._watchers[session_id]
        elif isinstance(found, tuple):
            rest = tuple(w for w in found if w is not watcher)
            self._watchers[session_id] = rest[0] if len(rest) == 1 else rest

    def fire(self, session_id: str, message: Message | None = None) -> None:
        """``session_id`` changed; ``message``: the change was only this message (a watcher
        pushes it without reading only if ``carry_messages``)."""
        event = self._events.pop(session_id, None)
        if event is not None:
            event.set()
        found = self._watchers.get(session_id)
        if isinstance(found, tuple):
            for watcher in found:
                watcher.wake(message)
        elif found is not None:
            found.wake(message)

    def on_desk_event(self, event: DeskEvent) -> None:
        if isinstance(event, MessageAdded | MessageUpdated):
            message = event.message
            self.fire(message.session_id, message)
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

    @contextlib.contextmanager
    def polling(self, session_id: str) -> Iterator[None]:
        """A long poll of ``session_id`` is waiting for a change (while the block runs)."""
        self._polls[session_id] = self._polls.get(session_id, 0) + 1
        try:
            yield
        finally:
            left = self._polls.pop(session_id) - 1
            if left:
                self._polls[session_id] = left

    def connected(self) -> int:
        """Chats whose visitor is connected now: a live WebSocket or a waiting long poll (a
        chat open in several tabs counts once)."""
        return len(self._watchers.keys() | self._polls.keys())

    def watched(self) -> int:
        """Sessions with a waiting long poll or a live connection."""
        return len(self._events.keys() | self._watchers.keys())
