"""Librarian events from the homeserver become desk actions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from nio import Event, RoomMemberEvent, RoomMessage, RoomMessageMedia, RoomMessageText

from bridge.ghosts import GhostTemplate
from bridge.matrix_api import MatrixClient
from rooms.desk import Desk
from rooms.ids import UserID
from rooms.session import Session

log = logging.getLogger("refdesk.bridge.handler")

HELP = (
    "Commands in a session room:\n"
    "!help: this list\n"
    "!close: end the chat (the visitor is told)\n"
    "Anything else you write here reaches the visitor."
)


@dataclass
class EventHandler:
    """Turns one homeserver event into at most one desk action. Safe to run twice per event."""

    desk: Desk
    client: MatrixClient
    ghosts: GhostTemplate
    bot_mxid: str
    _names: dict[tuple[str, str], str] = field(default_factory=dict)

    def _ours(self, sender: str) -> bool:
        return sender == self.bot_mxid or self.ghosts.is_ghost(sender)

    async def handle(self, raw: dict[str, Any]) -> None:
        """Handle one event dict (transaction or /messages format)."""
        room_id = raw.get("room_id")
        sender = raw.get("sender")
        event_id = raw.get("event_id")
        if not isinstance(room_id, str) or not isinstance(sender, str):
            return
        if raw.get("type") == "m.room.member":
            self._remember_name(raw)
            return
        if self._ours(sender) or not isinstance(event_id, str):
            return
        event = Event.parse_event(raw)
        if not isinstance(event, RoomMessage):
            return
        session = await self.desk.session_for_room(room_id)
        if session is None:
            return
        if isinstance(event, RoomMessageText) and event.body.startswith("!"):
            if await self.desk.store.record_event(event_id, self.desk.clock()):
                await self._command(session, event)
            return
        body = self._body(event)
        if body is None:
            return
        name = await self._display_name(room_id, sender)
        message = await self.desk.librarian_message(
            session, UserID(sender), name, body, remote_id=event_id
        )
        if message is not None:
            log.debug("librarian message %s stored as %d", event_id, message.id)

    @staticmethod
    def _body(event: RoomMessage) -> str | None:
        source = event.source.get("content", {})
        relates = source.get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace":
            return None  # edits are mirrored in a later version; the original stands
        if isinstance(event, RoomMessageText):
            return event.body
        if isinstance(event, RoomMessageMedia):
            return f"[{event.body}]"
        body = source.get("body")
        return body if isinstance(body, str) and body else None

    def _remember_name(self, raw: dict[str, Any]) -> None:
        try:
            member = RoomMemberEvent.from_dict(raw)
        except Exception:
            return
        if isinstance(member, RoomMemberEvent) and member.membership == "join":
            name = member.content.get("displayname")
            if isinstance(name, str) and name:
                self._names[(member.source["room_id"], member.state_key)] = name

    async def _display_name(self, room_id: str, user_id: str) -> str:
        cached = self._names.get((room_id, user_id))
        if cached:
            return cached
        name = await self.client.get_displayname(user_id) or user_id.split(":")[0].lstrip("@")
        self._names[(room_id, user_id)] = name
        return name

    async def _command(self, session: Session, event: RoomMessageText) -> None:
        assert session.room_id is not None
        word = event.body.split(maxsplit=1)[0].lower()
        if word == "!close":
            closed = await self.desk.end_session(session.id, by="librarian")
            reply = "Chat closed." if closed.closed_by == "librarian" else "This chat was closed."
        elif word == "!help":
            reply = HELP
        else:
            reply = f"Unknown command {word[:40]}. Type !help for the list."
        await self.client.send_message(
            session.room_id,
            {"msgtype": "m.notice", "body": reply},
            txn_id=f"refdesk-reply-{event.event_id}",
        )
