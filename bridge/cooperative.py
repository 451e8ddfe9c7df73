"""Cooperative coverage in Matrix (rooms/cooperative.py): partner libraries' librarians, on their
own homeservers, rung into a chat's room over federation, that library's policy note when one of
them joins, and the notice when one of ours takes the chat back.

Inviting a user of another homeserver waits for that server: one that is down or refuses must
not hold up the chat (its lane carries the visitor's messages too), so a refused invitation is
logged and the ring goes on with the others.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bridge.matrix_api import MatrixError
from rooms.session import Session

if TYPE_CHECKING:
    from bridge.actions import Actions, Attempt

log = logging.getLogger("refdesk.bridge.cooperative")


def waited_text(seconds: int) -> str:
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class CooperativeActions:
    def __init__(self, actions: Actions) -> None:
        self.actions = actions

    async def ring(self, attempt: Attempt, session: Session) -> None:
        """The chat rolled over: invite the partners' librarians and mention them."""
        if session.room_id is None or session.owner is not None or not session.is_open:
            return  # served (or ended) since the decision: nobody to ring
        payload = attempt.intent.payload
        users = [str(u) for u in payload.get("users", [])]
        await self._invite(session.room_id, users)
        libraries = ", ".join(str(n) for n in payload.get("libraries", []))
        name = session.form.name
        if payload.get("closed_here"):
            why = "nobody is serving here now"
        else:
            why = f"nobody here answered within {waited_text(int(payload.get('waited', 0)))}"
        body = (
            f"🤝 Cooperative coverage: {why}, so {libraries} can serve {name} "
            f"({self.actions._topic(session)}). Reply here, or type !claim, to serve this "
            "visitor; a librarian of ours can take it back with !claim."
        )
        await self.actions._say(attempt, session, body, users, "room")
        await self.actions.rooms.say(
            attempt, f"🤝 {name} rolled over to {libraries} ({why}).", [], "desk", session.id
        )
        await self.actions._queue_notice(attempt, session)

    async def _invite(self, room_id: str, users: list[str]) -> None:
        members = await self.actions.client.members(room_id)
        for user_id in users:
            if members.get(user_id) in ("join", "invite"):
                continue
            try:
                await self.actions.client.invite(room_id, user_id)
            except MatrixError as exc:  # their homeserver is down or refuses: ring the others
                log.warning("could not invite partner librarian %s: %s", user_id, exc)

    async def policy(self, attempt: Attempt, session: Session) -> None:
        payload = attempt.intent.payload
        library, policy = payload["library"], payload["policy"]
        body = f"ℹ️ {library} serves our patrons under this agreement: {policy}"
        await self.actions._say(attempt, session, body, [], "room")

    async def taken_back(self, attempt: Attempt, session: Session) -> None:
        payload = attempt.intent.payload
        by, name = str(payload["by"]), str(payload["name"])
        if session.room_id is None:
            return
        await self.actions._invite_missing(session.room_id, [by])
        partner = payload.get("from_name") or payload.get("from_owner")
        body = (
            f"{name} took this chat back from {partner} ({payload['library']}) and is serving "
            f"{session.form.name}."
        )
        await self.actions._say(attempt, session, body, [by], "room")
        await self.actions._queue_notice(attempt, session)
