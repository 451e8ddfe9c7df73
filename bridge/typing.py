"""The visitor's typing, shown in the session room as the ghost's.

Typing is a passing signal, not a desk action: it is never stored, only the latest state per
chat is kept, and a failure is dropped (the next keystroke sends it again).
"""

from __future__ import annotations

import asyncio
import logging

from bridge.ghosts import GhostTemplate
from bridge.matrix_api import HomeserverUnavailable, MatrixClient, MatrixError
from common.background import Worker
from rooms.desk import Desk
from rooms.events import DeskEvent, Typing

log = logging.getLogger("refdesk.bridge.typing")

TYPING_TIMEOUT_MS = 6000


class TypingMirror:
    def __init__(self, desk: Desk, client: MatrixClient, ghosts: GhostTemplate) -> None:
        self.desk = desk
        self.client = client
        self.ghosts = ghosts
        self._latest: dict[str, bool] = {}
        self._wake = asyncio.Event()
        self._worker = Worker("refdesk-typing", self._run)

    def on_desk_event(self, event: DeskEvent) -> None:
        if isinstance(event, Typing) and event.side == "visitor":
            self._latest[event.session_id] = event.typing
            self._wake.set()

    def start(self) -> None:
        self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._latest:
                session_id, typing = self._latest.popitem()
                try:
                    session = await self.desk.get_session(session_id)
                    if session.room_id is None or not session.is_open:
                        continue
                    ghost = self.ghosts.format(session.id)
                    await self.client.typing(session.room_id, ghost, typing, TYPING_TIMEOUT_MS)
                except (HomeserverUnavailable, MatrixError) as exc:
                    log.debug("typing for %s not shown: %s", session_id, exc)
                except Exception:
                    log.exception("typing for %s failed", session_id)
