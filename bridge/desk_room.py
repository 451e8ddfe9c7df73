"""The "Reference desk" Space, its desk room, and the live queue notices in that room.

One notice per session in the desk room, edited in place as the session moves:
waiting → claimed by Sari → closed. Rooms and notices are found again after a restart through
their aliases and the store.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bridge import store
from bridge.formatting import edit, notice
from bridge.matrix_api import MatrixClient, MatrixError
from rooms.desk import Desk
from rooms.session import Session, Status
from rooms.store import Tx

if TYPE_CHECKING:
    from bridge.actions import Attempt

log = logging.getLogger("refdesk.bridge.desk_room")

SPACE_ALIAS = "space"
DESK_ALIAS = "desk"


class DeskRooms:
    def __init__(
        self,
        client: MatrixClient,
        desk: Desk,
        *,
        alias_prefix: str,
        desk_name: str,
        members: tuple[str, ...],
        timezone: str,
        topic_labels: dict[str, str],
        history_days: int | None = None,
    ) -> None:
        self.client = client
        self.history_days = history_days
        self.desk = desk
        self.alias_prefix = alias_prefix
        self.desk_name = desk_name
        self.members = members
        self.tz = ZoneInfo(timezone)
        self.topic_labels = topic_labels
        self.space_id: str | None = None
        self.desk_room_id: str | None = None

    async def ensure(self) -> None:
        """Create (or find) the Space and the desk room, and invite every librarian."""
        self.space_id = await self._ensure_room(
            SPACE_ALIAS, f"{self.desk_name} · Reference desk", space=True
        )
        self.desk_room_id = await self._ensure_room(
            DESK_ALIAS,
            f"{self.desk_name} · Desk",
            topic="The live queue. Commands: !queue, !duty on, !duty off, !help",
        )
        await self.link(self.desk_room_id)
        if self.history_days is not None:
            # Queue lines, alarms and command answers name visitors: the desk room keeps them
            # no longer than the chats (on a homeserver with retention enabled; PRIVACY.md).
            lifetime = self.history_days * 86_400_000
            await self.client.put_state(
                self.desk_room_id, "m.room.retention", {"max_lifetime": lifetime}
            )
        await self._invite_members(self.space_id)
        await self._invite_members(self.desk_room_id)

    async def _ensure_room(
        self, alias: str, name: str, *, topic: str = "", space: bool = False
    ) -> str:
        key = f"room:{alias}"
        known = await self.state(key)
        if known:
            return known
        room_id = await self.client.create_room(
            alias_localpart=f"{self.alias_prefix}{alias}",
            name=name,
            topic=topic,
            invite=list(self.members),
            initial_state=[],
            space=space,
        )
        await self.set_state({key: room_id})
        log.info("%s room is %s", alias, room_id)
        return room_id

    async def _invite_members(self, room_id: str) -> None:
        members = await self.client.members(room_id)
        for user_id in self.members:
            if members.get(user_id) not in ("join", "invite"):
                try:
                    await self.client.invite(room_id, user_id)
                except MatrixError as exc:
                    log.warning("could not invite %s to %s: %s", user_id, room_id, exc)

    def join_rule(self) -> dict[str, object]:
        """Session rooms: joinable by Space members, so history stays one click away."""
        if self.space_id is None:
            return {"join_rule": "invite"}
        return {
            "join_rule": "restricted",
            "allow": [{"type": "m.room_membership", "room_id": self.space_id}],
        }

    async def link(self, room_id: str) -> None:
        """Make a room a child of the Space."""
        if self.space_id is None:
            return
        server = self.client.bot_mxid.split(":", 1)[1]
        await self.client.put_state(
            self.space_id, "m.space.child", {"via": [server]}, state_key=room_id
        )
        await self.client.put_state(
            room_id, "m.space.parent", {"via": [server], "canonical": True}, state_key=self.space_id
        )

    async def unlink(self, room_id: str) -> None:
        """Take a room out of the Space (an empty ``m.space.child``: the spec's removal)."""
        if self.space_id is not None:
            await self.client.put_state(self.space_id, "m.space.child", {}, state_key=room_id)

    # the live queue

    def _local(self, moment: datetime | None) -> str:
        return moment.astimezone(self.tz).strftime("%H:%M") if moment else "?"

    def describe(
        self, session: Session, first_line: str | None, rating: int | None = None
    ) -> tuple[str, str]:
        """Plain and HTML text of a session's queue notice."""
        form = session.form
        topic = self.topic_labels.get(form.topic, form.topic)
        status = session.status
        if status is Status.CLAIMED:
            state = f"✅ {session.owner_name} is serving"
        elif status is Status.CLOSED:
            by = f" · served by {session.owner_name}" if session.owner_name else ""
            stars = f" · rated {'★' * rating}{'☆' * (5 - rating)} ({rating}/5)" if rating else ""
            state = f"☑️ Closed{by}{stars}"
        elif session.offline:
            state = "📨 Offline message (answers go by email)"
        elif session.escalated_at is not None:
            state = "⚠️ Waiting long"
        else:
            state = "⏳ Waiting"
        if session.team is not None:
            team = self.desk.queue.teams.team(session.team)
            topic = f"{topic} · team {team.name if team else session.team}"
        since = f"since {self._local(session.queued_at or session.created_at)}"
        quote = f" · “{first_line[:120]}”" if first_line else ""
        body = f"{state} · {form.name} · {topic}{quote} · {since}"
        html_body = (
            f"<b>{html.escape(state)}</b> · {html.escape(form.name)} · {html.escape(topic)}"
            f"{html.escape(quote)} · {html.escape(since)}"
        )
        return body, html_body

    async def upsert_queue_notice(
        self,
        attempt: Attempt,
        session: Session,
        first_line: str | None,
        mentions: list[str],
        rating: int | None = None,
    ) -> None:
        """Post the session's line in the desk room, or edit it to the session's state now."""
        if self.desk_room_id is None:
            return
        body, html_body = self.describe(session, first_line, rating)
        content = notice(body, mentions, html_body)
        key = f"queue_notice:{session.id}"
        event_id = await self.state(key)
        if event_id is None:
            event_id = await attempt.send(self.desk_room_id, content, "queue")
            await self.set_state({key: event_id, f"queue_event:{event_id}": session.id})
        else:
            await attempt.send(self.desk_room_id, edit(event_id, content), "queue")

    async def session_for_notice(self, event_id: str) -> str | None:
        return await self.state(f"queue_event:{event_id}")

    async def state(self, key: str) -> str | None:
        return await self.desk.read(lambda tx: store.get_state(tx, key))

    async def set_state(self, values: dict[str, str]) -> None:
        async def unit(tx: Tx) -> None:
            for key, value in values.items():
                await store.set_state(tx, key, value)

        await self.desk.transaction(unit)

    async def say(
        self,
        attempt: Attempt,
        body: str,
        mentions: list[str],
        step: str,
        session_id: str | None = None,
    ) -> None:
        """A notice in the desk room; one about a chat is remembered, so that the chat's purge
        or erasure can redact it (it names the visitor)."""
        if self.desk_room_id is None:
            return
        event_id = await attempt.send(self.desk_room_id, notice(body, mentions), step)
        if session_id is not None:
            key = f"desk_notices:{session_id}"
            known = json.loads(await self.state(key) or "[]")
            if event_id not in known:
                await self.set_state({key: json.dumps([*known, event_id])})

    async def private_room(self, user_id: str, purpose: str, name: str, topic: str) -> str:
        """A room of the bot and ``user_id`` alone for one ``purpose`` (privacy exports, report
        links): made once, found again by its alias (derived from the user's id)."""
        digest = hashlib.sha256(user_id.encode()).hexdigest()[:16]
        return await self.client.create_room(
            alias_localpart=f"{self.alias_prefix}{purpose}_{digest}",
            name=f"{self.desk_name} · {name}",
            topic=topic,
            invite=[user_id],
            initial_state=[],
        )

    async def is_private(self, room_id: str, user_id: str) -> bool:
        """Whether only the bot and ``user_id`` are in (or invited to) the room."""
        members = await self.client.members(room_id)
        present = {u for u, m in members.items() if m in ("join", "invite")}
        return present <= {user_id, self.client.bot_mxid}

    async def forget_session(self, attempt: Attempt, session_id: str) -> None:
        """Redact what the desk room says about a chat — its queue line with every edit of it,
        and its notices — when the chat is purged or erased."""
        if self.desk_room_id is None:
            return
        notices = f"desk_notices:{session_id}"
        queue = f"queue_notice:{session_id}"
        events: list[str] = json.loads(await self.state(notices) or "[]")
        line = await self.state(queue)
        if line is not None:
            events += await self.client.edits_of(self.desk_room_id, line)
            events.append(line)
        for event_id in events:
            try:
                await self.client.redact(
                    self.desk_room_id, event_id, attempt.txn_id(f"forget.{event_id}")
                )
            except MatrixError as exc:
                if exc.transient or exc.status not in (400, 403, 404):
                    raise
        stale = [notices, queue] + ([f"queue_event:{line}"] if line else [])
        await self.desk.transaction(lambda tx: store.delete_state(tx, stale))
