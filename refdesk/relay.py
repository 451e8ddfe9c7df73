"""Several processes, one desk: they wake each other through PostgreSQL ``LISTEN/NOTIFY``.

With PostgreSQL, visitor-facing processes (``refdesk serve --role widget``) may run side by side
behind a load balancer, with one bridge process (``--role bridge``). Every change is in the
store; what a process must learn from another is only *that* something changed, so that it
reads the store: a chat's messages or state (the widget connections of that chat wake), a lane
with intents (the bridge performs them), mail to send, and typing (never stored). The notice is
sent in the transaction that made the change (PostgreSQL delivers it when, and only if, that
commits); typing, which is not stored, is sent at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from rooms.events import (
    DeskEvent,
    EventBus,
    IntentAdded,
    MailQueued,
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
from rooms.ids import SessionID
from rooms.store import PostgresDatabase, current_tx

log = logging.getLogger("refdesk.relay")

_QUEUE_MOVES = (SessionQueued, SessionClaimed, SessionClosed)
_SESSION_CHANGES = (
    MessageAdded,
    MessageUpdated,
    SessionTransferred,
    SessionEscalated,
    VerificationRequested,
    VerificationDone,
    ReadUpTo,
    *_QUEUE_MOVES,
)


def notice_for(event: DeskEvent) -> dict[str, Any] | None:
    """What other processes need to hear of ``event`` (None: nothing)."""
    if isinstance(event, Typing):
        return {
            "t": "typing",
            "s": event.session_id,
            "side": event.side,
            "on": event.typing,
            "n": list(event.names),
        }
    if isinstance(event, IntentAdded):
        return {"t": "intent", "l": event.lane}
    if isinstance(event, MailQueued):
        return {"t": "mail", "id": event.mail_id}
    if isinstance(event, _SESSION_CHANGES):
        if isinstance(event, MessageAdded | MessageUpdated):
            session_id: str = event.message.session_id
        elif isinstance(event, ReadUpTo):
            session_id = event.session_id
        else:
            session_id = event.session.id
        return {"t": "session", "s": session_id, "q": isinstance(event, _QUEUE_MOVES)}
    return None


def event_for(notice: dict[str, Any]) -> DeskEvent | None:
    kind = notice.get("t")
    if kind == "typing":
        names = tuple(str(n) for n in notice.get("n", []))
        return Typing(SessionID(notice["s"]), str(notice["side"]), bool(notice["on"]), names)
    if kind == "intent":
        return IntentAdded(str(notice["l"]))
    if kind == "mail":
        return MailQueued(int(notice["id"]))
    if kind == "session":
        return SessionChanged(SessionID(notice["s"]), bool(notice.get("q")))
    return None


class Relay:
    """Sends this process's changes to the others and replays theirs on the local bus."""

    def __init__(self, db: PostgresDatabase, bus: EventBus) -> None:
        self.db = db
        self.bus = bus
        self.origin = secrets.token_hex(6)
        self._replaying = False
        self._stop: Callable[[], Awaitable[None]] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        bus.observe(self._observe)

    async def start(self) -> None:
        self._stop = await self.db.listen(self._received)
        log.info("listening for the desk's other processes")

    async def stop(self) -> None:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            await stop()
        for task in list(self._sending):
            task.cancel()

    def _observe(self, event: DeskEvent) -> None:
        if self._replaying:
            return
        notice = notice_for(event)
        if notice is None:
            return
        payload = json.dumps({"o": self.origin, **notice}, separators=(",", ":"))
        tx = current_tx()
        if tx is not None and tx.writing:
            tx.notify(payload)  # sent when the change commits
            return
        task = asyncio.get_running_loop().create_task(self._send(payload))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, payload: str) -> None:
        try:
            await self.db.notify(payload)
        except Exception as exc:  # typing is a passing signal: the next one goes again
            log.debug("notice not sent: %s", exc)

    def _received(self, payload: str) -> None:
        try:
            notice = json.loads(payload)
        except ValueError:
            return
        if not isinstance(notice, dict) or notice.get("o") == self.origin:
            return
        try:
            event = event_for(notice)
        except (KeyError, TypeError, ValueError):
            log.warning("a notice from another process could not be read: %.200s", payload)
            return
        if event is None:
            return
        self._replaying = True
        try:
            self.bus.emit(event)
        finally:
            self._replaying = False
