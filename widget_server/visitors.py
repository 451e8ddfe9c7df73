"""The widgets on the site's pages in this process, by their number in the desk's live list
(rooms/live.py): where a librarian's invitation is sent (api/presence.py holds the connections)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from rooms.events import DeskEvent, InvitationAnswered, VisitorInvited


class Connection(Protocol):
    async def send(self, frame: dict[str, Any]) -> None: ...


class Visitors:
    def __init__(self) -> None:
        self.by_number: dict[int, Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def keep(self, task: asyncio.Task[None]) -> None:
        """Hold a short task until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_desk_event(self, event: DeskEvent) -> None:
        if isinstance(event, VisitorInvited):
            invitation = event.invitation
            frame: dict[str, Any] = {
                "type": "invitation",
                "invitation": {
                    "token": invitation.token,
                    "librarian": invitation.librarian_name,
                    "text": invitation.text,
                },
            }
        elif isinstance(event, InvitationAnswered) and event.answer in ("declined", "ignored"):
            invitation = event.invitation  # another tab of the visit may still show it
            frame = {"type": "invitation_ended", "token": invitation.token}
        else:
            return
        found = self.by_number.get(invitation.visitor)
        if found is not None:
            self.keep(asyncio.create_task(found.send(frame)))
