"""Librarian events from the homeserver become desk actions, each exactly once.

An event that changes the desk is carried out in one unit of work that also claims its event
id: the effect, the intents it causes and the claim commit together, so an event the homeserver
sends again (a retried transaction, the catch-up after a restart) changes nothing the second
time. Anything that needs the homeserver (a display name) is looked up before that unit opens:
the store is never held while waiting for the network.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from bridge import store
from bridge.commands import Context, dispatch
from bridge.desk_room import DeskRooms
from bridge.errors import is_transient
from bridge.formatting import text_and_html
from bridge.ghosts import GhostTemplate
from bridge.matrix_api import MatrixClient
from rooms.attachments import CheckedFile, from_librarian_in_thread
from rooms.desk import Desk
from rooms.ids import SessionID, UserID
from rooms.intents import DESK_LANE
from rooms.names import clean_text
from rooms.session import Session
from rooms.store import Tx

log = logging.getLogger("refdesk.bridge.handler")

TEXT_TYPES = ("m.text", "m.notice", "m.emote")
MEDIA_TYPES = ("m.image", "m.file", "m.audio", "m.video")
_MXID = re.compile(r"@[^\s:]+:[^\s]+")


@dataclass
class EventHandler:
    """Turns one homeserver event into desk actions. Safe to run twice for the same event."""

    desk: Desk
    client: MatrixClient
    ghosts: GhostTemplate
    bot_mxid: str
    rooms: DeskRooms
    timezone: str = "Asia/Jakarta"
    dashboard_url: str | None = None
    _names: dict[str, str] = field(default_factory=dict)

    def ours(self, sender: str) -> bool:
        """The bot or a visitor's ghost: refdesk's own events."""
        return sender == self.bot_mxid or self.ghosts.is_ghost(sender)

    async def handle(self, raw: dict[str, Any]) -> None:
        """Handle one room event (transaction or /messages format)."""
        room_id = raw.get("room_id")
        sender = raw.get("sender")
        event_id = raw.get("event_id")
        kind = raw.get("type")
        if not (isinstance(room_id, str) and isinstance(sender, str) and isinstance(event_id, str)):
            return
        content = raw.get("content")
        if not isinstance(content, dict):
            return
        if kind == "m.room.member":
            await self._member(room_id, sender, event_id, raw, content)
            return
        if self.ours(sender):
            return
        if kind == "m.reaction":
            await self._reaction(room_id, sender, event_id, content)
        elif kind == "m.room.redaction":
            redacts = raw.get("redacts") or content.get("redacts")
            if isinstance(redacts, str):
                await self._once(event_id, lambda: self.desk.message_deleted(redacts))
        elif kind == "m.room.message":
            await self._message(room_id, sender, event_id, content)

    async def _message(
        self, room_id: str, sender: str, event_id: str, content: dict[str, Any]
    ) -> None:
        relates = content.get("m.relates_to")
        if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
            await self._edit(sender, event_id, relates, content)
            return
        session = await self.desk.session_for_room(room_id)
        body = content.get("body")
        if not isinstance(body, str):
            return
        if body.startswith("!"):
            if session is None and room_id != self.rooms.desk_room_id:
                if not self.desk.queue.is_librarian(sender):
                    return  # a room we were invited to by someone who is not staff
            await self._command(room_id, sender, event_id, session, body)
            return
        if session is None:
            return
        msgtype = content.get("msgtype")
        html: str | None = None
        file: CheckedFile | None = None
        if msgtype in TEXT_TYPES:
            body, html = text_and_html(content)
        elif msgtype in MEDIA_TYPES:
            body, file = await self._media(event_id, content, body)
        elif not body:
            return
        name = await self.display_name(sender)
        await self._once(
            event_id,
            lambda: self.desk.librarian_message(
                session,
                UserID(sender),
                name,
                body,
                remote_id=event_id,
                html=html,
                file=file,
                mxc=content.get("url") if file is not None else None,
            ),
        )

    async def _media(
        self, event_id: str, content: dict[str, Any], body: str
    ) -> tuple[str, CheckedFile | None]:
        """A librarian's image or file, fetched for the widget (the visitor cannot reach the
        homeserver's media): its caption (or name) and the file; just ``[name]`` if too large,
        gone, or sent before (the file is fetched once)."""
        filename = content.get("filename")
        name = filename if isinstance(filename, str) and filename else body
        caption = body if isinstance(filename, str) and filename and body != filename else name
        url = content.get("url")
        if not isinstance(url, str) or await self.desk.read(
            lambda tx: store.event_claimed(tx, event_id)
        ):
            return f"[{name}]", None
        limit = self.desk.rules.attachments.max_size
        data = await self.client.download(url, limit)
        if data is None:
            return f"[{name}]", None
        file = await from_librarian_in_thread(data, name, self.desk.rules.attachments)
        return (caption, file) if file is not None else (f"[{name}]", None)

    async def _edit(
        self, sender: str, event_id: str, relates: dict[str, Any], content: dict[str, Any]
    ) -> None:
        original_id = relates.get("event_id")
        new = content.get("m.new_content")
        if not isinstance(original_id, str) or not isinstance(new, dict):
            return
        original = await self.desk.message_by_remote_id(original_id)
        if original is None or original.sender_id != sender:
            return  # only the author may edit what the visitor sees
        body, html = text_and_html(new)
        await self._once(event_id, lambda: self.desk.librarian_edit(original_id, body, html))

    async def _reaction(
        self, room_id: str, sender: str, event_id: str, content: dict[str, Any]
    ) -> None:
        """A reaction to a queue notice in the desk room claims that session."""
        if room_id != self.rooms.desk_room_id:
            return
        relates = content.get("m.relates_to")
        if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
            return
        target = relates.get("event_id")
        session_id = (
            await self.rooms.session_for_notice(target) if isinstance(target, str) else None
        )
        if session_id is None or not self.desk.queue.is_librarian(sender):
            return
        name = await self.display_name(sender)

        async def claim() -> None:
            result = await self.desk.queue.claim(SessionID(session_id), UserID(sender), name)
            if result.refused is not None:
                await self.desk.say(DESK_LANE, room_id, result.refused, [sender])
            elif not result.won and result.session.owner != sender:
                who = result.session.owner_name or "nobody (it is closed)"
                body = f"{name}: {result.session.form.name} is already served by {who}."
                await self.desk.say(DESK_LANE, room_id, body)

        await self._once(event_id, claim)

    async def _member(
        self, room_id: str, sender: str, event_id: str, raw: dict[str, Any], content: dict[str, Any]
    ) -> None:
        user_id = raw.get("state_key")
        membership = content.get("membership")
        if not isinstance(user_id, str):
            return
        name = content.get("displayname")
        if membership == "join" and isinstance(name, str) and clean_text(name):
            self._names[user_id] = clean_text(name)
        if user_id == self.bot_mxid and membership == "invite":
            # A librarian opens a direct chat with the bot for !duty and !queue.
            if self.desk.queue.is_librarian(sender):
                await self._once(event_id, lambda: self.desk.accept_invitation(room_id))
            return
        if membership == "join" and self.desk.cooperative.is_partner(user_id):
            # A partner library's librarian came in: the room gets that library's policy.
            joined = await self.desk.session_for_room(room_id)
            if joined is not None:
                cooperative = self.desk.cooperative
                await self._once(event_id, lambda: cooperative.partner_joined(joined.id, user_id))
            return
        if membership not in ("leave", "ban") or self.ours(user_id) or self.ours(sender):
            return  # the bot's own withdrawals and removals are not a librarian leaving
        session = await self.desk.session_for_room(room_id)
        if session is not None and session.is_open and session.owner == user_id:
            await self._once(
                event_id,
                lambda: self.desk.queue.requeue(session.id, UserID(user_id), reason="owner_left"),
            )

    async def _command(
        self, room_id: str, sender: str, event_id: str, session: Session | None, body: str
    ) -> None:
        # Names the command may need, looked up now: never while the store is held.
        sender_name = await self.display_name(sender)
        for mxid in _MXID.findall(body)[:5]:
            await self.display_name(mxid.rstrip(".,;"))
        if body.lower().startswith(("!duty", "!queue")):  # they list who is on duty by name
            for librarian in self.desk.queue.rules.librarians:
                await self.display_name(librarian)
        transcript_link = None
        if body.lower().startswith("!search"):
            transcript_link = await self._transcript_links(room_id, sender)
        ctx = Context(
            desk=self.desk,
            client=self.client,
            room_id=room_id,
            sender=UserID(sender),
            sender_name=sender_name,
            event_id=event_id,
            session=session,
            names=self.display_name,
            timezone=self.timezone,
            topic_labels=self.rooms.topic_labels,
            transcript_link=transcript_link,
        )

        async def command() -> None:
            reply = await dispatch(ctx, body)
            if reply:
                lane = session.id if session is not None else DESK_LANE
                await self.desk.say(lane, room_id, reply)

        await self._once(event_id, command)

    async def _transcript_links(
        self, room_id: str, sender: str
    ) -> Callable[[Session, UserID], str | None] | None:
        """For a report viewer asking in a private chat with the bot: personal, short-lived
        links to past chats' transcripts on the dashboard (never in a shared room)."""
        reports = self.desk.reports
        url = self.dashboard_url
        if url is None or not reports.is_viewer(sender):
            return None
        if not await self.rooms.is_private(room_id, sender):
            return None
        await reports.ready()

        def link(session: Session, user: UserID) -> str:
            token, _ = reports.sign_now(user)
            return f"{url}/open?{urlencode({'t': token, 'chat': session.id})}"

        return link

    async def _once(self, event_id: str, action: Callable[[], Awaitable[object]]) -> None:
        """Carry out ``action`` in one unit of work with the claim of ``event_id``: exactly
        once, however often the homeserver (or the catch-up) sends the event."""

        async def unit(tx: Tx) -> None:
            if await store.claim_event(tx, event_id, self.desk.clock()):
                await action()

        await self.desk.transaction(unit)

    async def display_name(self, user_id: str) -> str:
        cached = self._names.get(user_id)
        if cached:
            return cached
        name = self._names[user_id] = await self.client.name_of(user_id)
        return name

    # ephemeral events: typing and read receipts (passing signals: a failure is dropped)

    async def handle_ephemeral(self, edu: dict[str, Any]) -> None:
        try:
            await self._ephemeral(edu)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.info("ephemeral %s dropped: %s", edu.get("type"), exc)

    async def _ephemeral(self, edu: dict[str, Any]) -> None:
        room_id = edu.get("room_id")
        content = edu.get("content")
        if not isinstance(room_id, str) or not isinstance(content, dict):
            return
        kind = edu.get("type")
        log.debug("ephemeral %s in %s", kind, room_id)
        if kind not in ("m.typing", "m.receipt"):
            return
        session = await self.desk.session_for_room(room_id)
        if session is None or not session.is_open:
            return
        if kind == "m.typing":
            users = [u for u in content.get("user_ids", []) if isinstance(u, str)]
            names = [await self.display_name(u) for u in users if not self.ours(u)]
            await self.desk.librarian_typing(session, tuple(names))
            return
        for event_id, receipts in content.items():
            readers = (receipts or {}).get("m.read", {}) if isinstance(receipts, dict) else {}
            if any(isinstance(u, str) and not self.ours(u) for u in readers):
                await self.desk.librarian_read(session, event_id)
