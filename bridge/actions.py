"""What each of the desk's intents (rooms/intents.py) means in Matrix.

Rooms, invitations that ring, notices with intentional mentions, the live queue notice, removals
when a chat ends. Every action may run more than once (intents are performed at least once), so
each is idempotent: invitations and removals look at the room's membership first, and every send
carries a transaction id derived from its intent and step. When an earlier attempt may have got
through (it failed without an answer, or a previous process was stopped mid-way), the room is
searched for that transaction id before anything is sent again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bridge.cooperative import CooperativeActions
from bridge.desk_room import DeskRooms
from bridge.formatting import edit, notice
from bridge.ghosts import GhostTemplate
from bridge.matrix_api import MatrixClient, MatrixError
from bridge.reports import ReportSender
from rooms.desk import Desk
from rooms.ids import MessageID, RoomID, SessionID
from rooms.intents import Intent, IntentKind
from rooms.names import display_name_with_marker
from rooms.rights import export_page
from rooms.session import Attachment, Message, Origin, Session

log = logging.getLogger("refdesk.bridge.actions")

SESSION_STATE_EVENT = "org.refdesk.session"
REQUEUE_REASONS = {
    "released": "{owner} released it",
    "owner_left": "{owner} left the room",
    "off_duty": "{owner} went off duty",
    "team_transfer": "{owner} passed it to the team {team}",
}
# How far before an intent was stored its event may carry an earlier timestamp (clock skew
# between refdesk and the homeserver).
LOOKBACK = timedelta(minutes=2)


@dataclass
class Attempt:
    """One try at performing an intent."""

    intent: Intent
    client: MatrixClient
    instance: str  # this database's random id: transaction ids never repeat across desks
    uncertain: bool  # an earlier try may have reached the homeserver
    session: Session | None = None  # the lane's session, as read with the intent
    message: Message | None = None  # the message the intent is about, if any
    delivered: tuple[MessageID, str | None] | None = None

    def txn_id(self, step: str) -> str:
        return f"rd.{self.instance}.{self.intent.id}.{step}"

    async def send(
        self, room_id: str, content: dict[str, Any], step: str, *, user_id: str | None = None
    ) -> str:
        """Send once: after an uncertain try, the room is searched for the earlier send."""
        txn_id = self.txn_id(step)
        if self.uncertain:
            sender = user_id or self.client.bot_mxid
            not_before = int((self.intent.created_at - LOOKBACK).timestamp() * 1000)
            found = await self.client.find_marked(room_id, sender, txn_id, not_before)
            if found is not None:
                log.info("%s reached %s before (%s); not sent again", txn_id, room_id, found)
                return found
        return await self.client.send_message(room_id, content, txn_id, user_id=user_id)


def span(seconds: int) -> str:
    """Whole minutes as minutes, anything else in seconds."""
    return f"{seconds // 60} min" if seconds >= 60 and not seconds % 60 else f"{seconds} s"


class Actions:
    def __init__(
        self,
        desk: Desk,
        client: MatrixClient,
        ghosts: GhostTemplate,
        rooms: DeskRooms,
        topic_labels: dict[str, str],
        dashboard_url: str | None = None,
    ) -> None:
        self.desk = desk
        self.client = client
        self.ghosts = ghosts
        self.rooms = rooms
        self.topic_labels = topic_labels
        self._named_ghosts: set[str] = set()  # registered and named by this process
        self._joined: set[tuple[str, str]] = set()  # (room, ghost) joined, seen by this process
        self.reports = ReportSender(desk, client, rooms, topic_labels, dashboard_url)
        self.cooperative = CooperativeActions(self)

    async def perform(self, attempt: Attempt) -> None:
        intent = attempt.intent
        payload = intent.payload
        if intent.kind is IntentKind.JOIN:
            await self.client.join(payload["room_id"], self.client.bot_mxid)
            return
        if intent.kind is IntentKind.SAY:
            content = notice(payload["body"], payload.get("mentions", []))
            await attempt.send(payload["room_id"], content, "say")
            return
        if intent.kind is IntentKind.PRIVACY_EXPORT:
            await self._privacy_export(attempt)
            return
        if intent.kind is IntentKind.REPORT:
            await self.reports.perform(attempt)
            return
        if intent.kind is IntentKind.PIN_DASHBOARD:
            await self.reports.pin(bool(payload["pinned"]))
            return
        if intent.kind is IntentKind.OFFLINE_WAITING:
            count = int(payload["count"])
            noun = "message waits" if count == 1 else "messages wait"
            body = (
                f"📨 The desk is open: {count} offline {noun} in the queue. "
                "Join from the Space (or !queue), reply, and the visitor gets it by email."
            )
            await self.rooms.say(attempt, body, payload.get("users", []), "desk")
            return
        session = attempt.session or await self.desk.get_session(SessionID(intent.lane))
        handler = {
            IntentKind.MESSAGE: self._message,
            IntentKind.VISITOR_EDIT: self._visitor_edit,
            IntentKind.VISITOR_DELETE: self._visitor_delete,
            IntentKind.RING: self._ring,
            IntentKind.OFFERED: self._offered,
            IntentKind.CLAIMED: self._claimed,
            IntentKind.TRANSFERRED: self._transferred,
            IntentKind.ESCALATED: self._escalated,
            IntentKind.CLOSED: self._closed,
            IntentKind.FEEDBACK: self._feedback,
            IntentKind.VERIFICATION_ASKED: self._verification_asked,
            IntentKind.VERIFICATION_DONE: self._verification_done,
            IntentKind.READ: self._read,
            IntentKind.PURGE_ROOM: self._purge_room,
            IntentKind.PURGE_MEDIA: self._purge_media,
            IntentKind.PARTNER_RING: self.cooperative.ring,
            IntentKind.PARTNER_POLICY: self.cooperative.policy,
            IntentKind.TAKEN_BACK: self.cooperative.taken_back,
        }[intent.kind]
        await handler(attempt, session)

    # the session's room and its visitor

    async def ensure_ghost(self, session: Session) -> str:
        """Register the visitor's ghost and give it the visitor's name (idempotent)."""
        mxid = self.ghosts.format(session.id)
        if mxid not in self._named_ghosts:
            await self.client.register_ghost(self.ghosts.localpart(session.id))
            await self.client.set_displayname(mxid, display_name_with_marker(session.form.name))
            self._named_ghosts.add(mxid)
        return mxid

    async def ghost_in_room(self, session: Session) -> str:
        """The ghost, joined to the session's room (invited again if it was removed)."""
        assert session.room_id is not None
        ghost = await self.ensure_ghost(session)
        if (session.room_id, ghost) not in self._joined:
            try:
                await self.client.join(session.room_id, ghost)
            except MatrixError as exc:
                if exc.transient:
                    raise
                await self.client.invite(session.room_id, ghost)
                await self.client.join(session.room_id, ghost)
            self._joined.add((session.room_id, ghost))
        return ghost

    async def ensure_room(self, session: Session) -> Session:
        """Create the session's room (found again by alias if a try was interrupted), put it in
        the Space, and let the ghost in. Librarians are invited by the ring that follows."""
        ghost = await self.ensure_ghost(session)
        form = session.form
        topic_label = self.topic_labels.get(form.topic, form.topic)
        details = [f"Topic: {topic_label}", f"Email: {form.email}"]
        if form.member_number:
            details.append(f"Member number: {form.member_number}")
        details.append(f"Language: {form.language}")
        state_content: dict[str, Any] = {
            "session_id": session.id,
            "name": form.name,
            "email": form.email,
            "member_number": form.member_number,
            "topic": form.topic,
            "language": form.language,
            "page_url": form.page_url,
            "started_at": session.created_at.isoformat(),
        }
        room_id = await self.client.create_room(
            alias_localpart=self.ghosts.alias_localpart(session.id),
            name=f"{form.name} · {topic_label}",
            topic=" · ".join(details),
            invite=[ghost],
            initial_state=[
                {"type": SESSION_STATE_EVENT, "state_key": "", "content": state_content},
                {"type": "m.room.join_rules", "state_key": "", "content": self.rooms.join_rule()},
            ],
        )
        await self.client.join(room_id, ghost)
        self._joined.add((room_id, ghost))
        await self.rooms.link(room_id)
        log.info("session %s has room %s", session.id, room_id)
        return await self.desk.attach_room(session.id, RoomID(room_id))

    # helpers

    async def _first_line(self, session: Session) -> str:
        for message in await self.desk.messages_after(session.id, 0, limit=20):
            if message.origin is Origin.VISITOR:
                return message.body.splitlines()[0] if message.body else ""
        return ""

    async def _queue_notice(
        self, attempt: Attempt, session: Session, mentions: list[str] | None = None
    ) -> None:
        fresh = await self.desk.get_session(session.id)
        feedback = await self.desk.feedback(session.id)
        await self.rooms.upsert_queue_notice(
            attempt,
            fresh,
            await self._first_line(fresh),
            mentions or [],
            rating=feedback.rating if feedback else None,
        )

    async def _invite_missing(self, room_id: str, users: list[str]) -> None:
        members = await self.client.members(room_id)
        for user_id in users:
            if members.get(user_id) not in ("join", "invite"):
                try:
                    await self.client.invite(room_id, user_id)
                except MatrixError as exc:
                    if exc.transient:
                        raise
                    log.warning("could not invite %s: %s", user_id, exc)

    async def _remove(self, room_id: str, keep: set[str], memberships: tuple[str, ...], why: str):  # type: ignore[no-untyped-def]
        """Remove (or un-invite) every librarian in ``memberships`` but those in ``keep``."""
        members = await self.client.members(room_id)
        for user_id, membership in members.items():
            if user_id in keep or user_id == self.client.bot_mxid or self.ghosts.is_ghost(user_id):
                continue
            if membership in memberships:
                await self.client.kick(room_id, user_id, why)

    async def _say(
        self, attempt: Attempt, session: Session, body: str, mentions: list[str], step: str
    ) -> None:
        if session.room_id is not None:
            await attempt.send(session.room_id, notice(body, mentions), step)

    def _topic(self, session: Session) -> str:
        return self.topic_labels.get(session.form.topic, session.form.topic)

    @staticmethod
    def _team(payload: dict[str, Any]) -> str:
        """ " · team Membership" when the intent is about a team's chat, else nothing."""
        name = payload.get("team_name")
        return f" · team {name}" if name else ""

    @staticmethod
    def _target(payload: dict[str, Any]) -> str:
        target = payload.get("target")
        if not target:
            return ""
        return f" First reply within {span(int(target))}."

    # what each intent means

    async def _message(self, attempt: Attempt, session: Session) -> None:
        message = attempt.message
        if message is None or message.delivered_at is not None:
            return
        if message.deleted_at is not None:  # taken back before it went out: nothing to send
            attempt.delivered = (message.id, None)
            return
        if session.room_id is None:
            if message.origin is not Origin.VISITOR:
                # No room was ever needed (the visitor never wrote): nothing to tell anyone.
                attempt.delivered = (message.id, None)
                return
            session = await self.ensure_room(session)
        assert session.room_id is not None
        if message.origin is Origin.VISITOR:
            ghost = await self.ghost_in_room(session)
            content: dict[str, Any] = {"msgtype": "m.text", "body": message.body}
            if message.attachment is not None:
                content = await self._media(session, message.attachment, message.body, ghost)
            try:
                event_id = await attempt.send(session.room_id, content, "m", user_id=ghost)
            except MatrixError as exc:
                if exc.errcode == "M_FORBIDDEN":
                    self._joined.discard((session.room_id, ghost))  # let it in again next time
                raise
        else:
            content = {"msgtype": "m.notice", "body": message.body}
            event_id = await attempt.send(session.room_id, content, "m")
        attempt.delivered = (message.id, event_id)

    async def _media(
        self, session: Session, attachment: Attachment, body: str, ghost: str
    ) -> dict[str, Any]:
        """The visitor's file as Element shows it: ``m.image`` (size, pixels, a thumbnail for a
        large photo) or ``m.file``, uploaded as the visitor's ghost (once: a retry reuses it)."""
        stored = await self.desk.attachment(session.id, attachment.id)
        if stored is None or stored.data is None:
            return {"msgtype": "m.text", "body": f"[{attachment.name}]"}
        mxc, thumb_mxc = stored.mxc, stored.thumb_mxc
        if mxc is None:
            mxc = await self.client.upload(
                stored.data, stored.mimetype, stored.filename, user_id=ghost
            )
            if stored.thumbnail is not None and stored.thumb_mimetype is not None:
                thumb_mxc = await self.client.upload(
                    stored.thumbnail,
                    stored.thumb_mimetype,
                    f"thumb-{stored.filename}",
                    user_id=ghost,
                )
            await self.desk.attachment_uploaded(stored.id, mxc, thumb_mxc)
        info: dict[str, Any] = {"mimetype": stored.mimetype, "size": stored.size}
        image = attachment.is_image
        if image:
            info.update(w=stored.width, h=stored.height)
            if thumb_mxc is not None:
                info["thumbnail_url"] = thumb_mxc
                info["thumbnail_info"] = {
                    "mimetype": stored.thumb_mimetype,
                    "size": len(stored.thumbnail or b""),
                    "w": stored.thumb_width,
                    "h": stored.thumb_height,
                }
        return {
            "msgtype": "m.image" if image else "m.file",
            "body": body,  # the caption, or the file's name
            "filename": stored.filename,
            "url": mxc,
            "info": info,
        }

    async def _visitor_edit(self, attempt: Attempt, session: Session) -> None:
        message = attempt.message
        if not self._in_room(message, session) or message is None or message.deleted_at:
            return
        if message.edited_at and message.delivered_at and message.delivered_at >= message.edited_at:
            return  # it went out with this text
        assert session.room_id is not None and message.remote_id is not None
        ghost = await self.ghost_in_room(session)
        content = edit(message.remote_id, {"msgtype": "m.text", "body": message.body})
        await attempt.send(session.room_id, content, "e", user_id=ghost)

    async def _visitor_delete(self, attempt: Attempt, session: Session) -> None:
        message = attempt.message
        if not self._in_room(message, session) or message is None:
            return
        assert session.room_id is not None and message.remote_id is not None
        ghost = await self.ghost_in_room(session)
        # Redacting twice is harmless: no need to look for an earlier try.
        await self.client.redact(
            session.room_id, message.remote_id, attempt.txn_id("r"), user_id=ghost
        )

    @staticmethod
    def _in_room(message: Message | None, session: Session) -> bool:
        """The message reached the session's room (so there is something there to change)."""
        return message is not None and message.remote_id is not None and bool(session.room_id)

    async def _ring(self, attempt: Attempt, session: Session) -> None:
        payload = attempt.intent.payload
        if session.room_id is None:
            return
        first = (await self._first_line(session))[:300]
        name = session.form.name
        if payload.get("offline"):
            # Left while the desk was closed: queued quietly, told at the next opening.
            body = (
                f"📨 Offline message: {name} · {self._topic(session)}\n“{first}”\n"
                "Replies here are emailed to the visitor with a link back to this chat."
            )
            await self._say(attempt, session, body, [], "room")
            await self._queue_notice(attempt, session)
            return
        users = [str(u) for u in payload.get("users", [])]
        await self._invite_missing(session.room_id, users)
        team = self._team(payload)
        if payload.get("reason") == "overflow" or payload.get("overflow"):
            await self._overflow(attempt, session, payload, users, first)
        elif payload.get("reason") == "new":
            waiting = ""
            if payload.get("fair"):
                waiting = "\nOffered to the team's members one at a time."
            elif payload.get("team_name") and not users:
                waiting = "\nEvery member of the team is busy or at their limit: it waits."
            body = (
                f"New chat{team}: {name} · {self._topic(session)}\n“{first}”\n"
                "Reply here, or type !claim, to serve this visitor. !help lists the commands."
                f"{self._target(payload)}{waiting}"
            )
            await self._say(attempt, session, body, users, "room")
        else:
            owner = payload.get("previous_name") or payload.get("previous_owner") or "a librarian"
            reason = str(payload.get("reason"))
            why = REQUEUE_REASONS.get(reason, "{owner} handed it back").format(
                owner=owner, team=payload.get("team_name") or payload.get("team")
            )
            body = f"Back in the queue{team}: {why}. Reply here, or type !claim, to serve {name}."
            await self._say(attempt, session, body, users, "room")
            await self.rooms.say(
                attempt, f"🔔 Back in the queue{team}: {name} ({why}).", users, "desk", session.id
            )
        await self._queue_notice(attempt, session, users)

    async def _overflow(
        self,
        attempt: Attempt,
        session: Session,
        payload: dict[str, Any],
        users: list[str],
        first: str,
    ) -> None:
        """A team's chat rings the rest of the desk: the team did not take it in time, or
        nobody of the team is on duty."""
        team = payload.get("team_name") or payload.get("team")
        name = session.form.name
        if payload.get("overflow") == "nobody_on_duty":
            why = f"nobody of the team {team} is on duty"
        else:
            waited = span(int(payload.get("waited", 0)))
            why = f"nobody of the team {team} took it within {waited}"
        body = (
            f"Ringing the whole desk ({why}): {name} · {self._topic(session)}\n“{first}”\n"
            "Reply here, or type !claim, to serve this visitor."
        )
        await self._say(attempt, session, body, users, "room")
        await self.rooms.say(
            attempt, f"🔔 For everyone: {name} · team {team} ({why}).", users, "desk", session.id
        )

    async def _offered(self, attempt: Attempt, session: Session) -> None:
        """A team's fair assignment offers the chat to one member: invited and mentioned
        alone; the previous offer's invitation is withdrawn (unless they joined)."""
        if session.room_id is None or session.owner is not None or not session.is_open:
            return  # taken (or ended) since: nothing to offer
        payload = attempt.intent.payload
        user = str(payload["user"])
        await self._invite_missing(session.room_id, [user])
        previous = payload.get("previous")
        if previous and previous != user:
            members = await self.client.members(session.room_id)
            if members.get(str(previous)) == "invite":
                await self.client.kick(session.room_id, str(previous), "Offered to the next")
        within = span(int(payload.get("accept_within", 60)))
        name = session.form.name
        who = await self.client.name_of(user)
        body = (
            f"Offered to {who}{self._team(payload)}: answer here or type !claim within "
            f"{within}; then it is offered to the next."
        )
        await self._say(attempt, session, body, [user], "room")
        await self.rooms.say(
            attempt,
            f"🔔 {who}, a chat for you{self._team(payload)}: {name} · {self._topic(session)} "
            f"(accept within {within}).",
            [user],
            "desk",
            session.id,
        )
        await self._queue_notice(attempt, session)

    async def _claimed(self, attempt: Attempt, session: Session) -> None:
        payload = attempt.intent.payload
        if session.room_id is None:
            if not payload.get("invited"):
                return
            # A visitor who accepted a librarian's invitation: the room is made now, for them.
            session = await self.ensure_room(session)
        assert session.room_id is not None
        by, name = payload["by"], payload["name"]
        await self._invite_missing(session.room_id, [by])
        if payload.get("library"):  # a partner library's librarian
            name = f"{name} ({payload['library']})"
        team = f" for the team {payload['team_name']}" if payload.get("team_name") else ""
        body = f"{name} claimed this chat{team} and is serving {session.form.name}."
        if payload.get("invited"):
            said = f" (“{payload['text']}”)" if payload.get("text") else ""
            body = (
                f"{session.form.name} accepted {name}'s invitation{said} on "
                f"{payload.get('page') or 'the site'}: {name} serves this chat."
            )
        await self._say(attempt, session, body, [by] if payload.get("invited") else [], "room")
        # Invitations nobody needs any more are withdrawn.
        owner = (await self.desk.get_session(session.id)).owner  # it may have moved on since
        keep = {by, *([owner] if owner else [])}
        await self._remove(session.room_id, keep, ("invite",), f"Claimed by {name}")
        await self._queue_notice(attempt, session)

    async def _transferred(self, attempt: Attempt, session: Session) -> None:
        if session.room_id is None:
            return
        payload = attempt.intent.payload
        to, to_name = payload["to"], payload["to_name"]
        who = payload.get("from_name") or await self.client.name_of(payload["from_owner"])
        await self._invite_missing(session.room_id, [to])
        # Names, not Matrix ids; the mention (m.mentions) rings the new librarian.
        await self._say(attempt, session, f"{who} passed this chat to {to_name}.", [to], "room")
        await self._queue_notice(attempt, session, [to])

    async def _escalated(self, attempt: Attempt, session: Session) -> None:
        if session.room_id is None or session.owner is not None or not session.is_open:
            return  # served (or ended) since: the alarm would only be noise
        payload = attempt.intent.payload
        ring = [str(u) for u in payload.get("users", [])]
        seconds = int(payload.get("waited", 0))
        waited = f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
        await self._invite_missing(session.room_id, ring)
        name = session.form.name
        team = self._team(payload)
        body = (
            f"⚠️ Still waiting after {waited}: {name}{team}. Please claim it now (reply, or !claim)."
        )
        await self._say(attempt, session, body, ring, "room")
        await self.rooms.say(
            attempt,
            f"⚠️ {name}{team} has waited {waited} with nobody serving.",
            ring,
            "desk",
            session.id,
        )
        await self._queue_notice(attempt, session)

    async def _closed(self, attempt: Attempt, session: Session) -> None:
        if session.room_id is None:
            await self._queue_notice(attempt, session)
            return
        payload = attempt.intent.payload
        if payload.get("banned_until"):
            until = datetime.fromisoformat(payload["banned_until"])
            body = (
                f"Chat closed. Blocked this visitor's connection until {until:%Y-%m-%d %H:%M} UTC."
            )
            await self._say(attempt, session, body, [], "room")
        elif payload.get("by") != "visitor":
            await self._say(attempt, session, "Chat closed. The visitor was told.", [], "room")
        await self._queue_notice(attempt, session)
        # Closed chats leave librarians' room lists; they stay in the Space for history.
        await self._remove(
            session.room_id,
            set(),
            ("join", "invite"),
            "Chat closed; it stays in the Reference desk space",
        )

    async def _feedback(self, attempt: Attempt, session: Session) -> None:
        payload = attempt.intent.payload
        rating = int(payload["rating"])
        comment = f" “{payload['comment']}”" if payload.get("comment") else ""
        served = f" for {payload['librarian_name']}" if payload.get("librarian_name") else ""
        stars = "★" * rating + "☆" * (5 - rating)
        body = f"Visitor feedback{served}: {stars} ({rating}/5){comment}"
        await self._say(attempt, session, body, [], "room")
        await self._queue_notice(attempt, session)

    async def _verification_asked(self, attempt: Attempt, session: Session) -> None:
        payload = attempt.intent.payload
        fields = ", ".join(str(f).replace("_", " ") for f in payload.get("fields", []))
        who = "Automatically after the claim: asked" if payload.get("by") is None else "Asked"
        body = f"{who} {session.form.name} to confirm membership ({fields}) in the widget."
        await self._say(attempt, session, body, [], "room")

    async def _verification_done(self, attempt: Attempt, session: Session) -> None:
        await self._say(attempt, session, str(attempt.intent.payload["notice"]), [], "room")

    async def _purge_room(self, attempt: Attempt, session: Session) -> None:
        """The chat's retention ran out: with the homeserver's admin API the room is deleted
        with all its events; without it every message in it is redacted and the visitor's
        ghost and the bot leave (docs/PRIVACY.md). Safe to repeat after a crash."""
        room_id = str(attempt.intent.payload["room_id"])
        await self.rooms.unlink(room_id)
        await self.rooms.forget_session(attempt, session.id)
        await self._purge_media(attempt, session)
        if self.client.can_delete_rooms:
            try:
                await self.client.delete_room(room_id)
                log.info("deleted the room of session %s (retention)", session.id)
                return
            except MatrixError as exc:
                if exc.transient or exc.status not in (401, 403):
                    raise
                log.warning("homeserver.admin_token was refused (%s); redacting instead", exc)
        await self._redact_history(attempt, room_id)
        await self.client.leave(room_id, self.ghosts.format(session.id))
        await self.client.leave(room_id, forget=True)
        log.info("redacted the room of session %s (retention)", session.id)

    async def _purge_media(self, attempt: Attempt, session: Session) -> None:
        """The chat's files in the homeserver's media repository: deleted with the admin API
        (without an admin token they stay until the homeserver's own media retention)."""
        if not self.client.can_delete_rooms:
            return
        for mxc in attempt.intent.payload.get("media", []):
            await self.client.delete_media(str(mxc))

    async def _privacy_export(self, attempt: Attempt) -> None:
        """A supervisor's ``!privacy export``: the file, in a private room of the bot and them
        (one per supervisor, found again by its alias), never in the shared desk room."""
        payload = attempt.intent.payload
        to = str(payload["to"])
        document = await self.desk.rights.export(
            email=payload.get("email"), session_id=payload.get("session_id"), by=to
        )
        data = export_page(document).encode("utf-8")
        day = attempt.intent.created_at.date().isoformat()
        filename = f"visitor-export-{day}-{attempt.intent.id}.html"
        mxc = await self.client.upload(data, "text/html", filename)
        room_id = await self.rooms.private_room(
            to,
            "privacy",
            "privacy requests",
            "Visitor data exports you asked for with !privacy. Delete them once handed over.",
        )
        chats = len(document["chats"])
        content = {
            "msgtype": "m.file",
            "body": filename,
            "filename": filename,
            "url": mxc,
            "info": {"mimetype": "text/html", "size": len(data)},
        }
        await attempt.send(room_id, notice(f"Your export: {chats} chat(s).", [to]), "export-note")
        await attempt.send(room_id, content, "export")

    async def _redact_history(self, attempt: Attempt, room_id: str) -> None:
        """Redact every event with content in the room (not its state), newest first."""
        start: str | None = None
        while True:
            events, start = await self.client.history(room_id, start)
            for event in events:
                redacted = "redacted_because" in event.get("unsigned", {})
                if "state_key" in event or redacted or event.get("type") == "m.room.redaction":
                    continue
                if not event.get("content"):
                    continue
                event_id = str(event["event_id"])
                await self.client.redact(room_id, event_id, attempt.txn_id(f"purge.{event_id}"))
            if start is None:
                return

    async def _read(self, attempt: Attempt, session: Session) -> None:
        message = attempt.message
        if session.room_id is None or message is None or message.remote_id is None:
            return
        ghost = await self.ghost_in_room(session)
        await self.client.read_receipt(session.room_id, message.remote_id, ghost)
