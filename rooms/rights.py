"""A visitor's rights over their data (Indonesia's UU PDP, No. 27/2022): to get it, and to have
it erased.

*Export* gathers everything the desk holds about a person (by email address, or one chat by its
id): each chat's details, messages, notes, feedback, membership checks and the emails sent. The
date of birth and phone number of a membership check are never stored, so never exported; the
visitor's token and address hash are secrets, not data about them, and stay out too.

*Erase* closes what is still open, removes all of it from the store (as a purge does, and the
feedback and membership checks too) and purges each chat's room on the homeserver through a
stored intent. It keeps one line in the privacy log — what, by whom, when, how many — and nothing
that names the person. Erasing again finds nothing and changes nothing.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rooms.ids import SessionID
from rooms.intents import DESK_LANE, IntentKind
from rooms.outbox import Outbox
from rooms.session import Message, Session
from rooms.store import Database, Tx, attachments, feedback, messages, notes, sessions
from rooms.store import privacy as rows

log = logging.getLogger("refdesk.privacy")

FORMAT = "refdesk-visitor-export/1"


@dataclass(frozen=True)
class Erased:
    sessions: int
    items: int


def _at(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


async def _file(tx: Tx, session_id: str, message: Message) -> dict[str, Any] | None:
    """A file sent with a message: its name and type, and the file itself (base64) while the
    desk keeps it."""
    if message.attachment is None:
        return None
    found = await attachments.get(tx, session_id, message.attachment.id)
    return {
        "name": message.attachment.name,
        "type": message.attachment.mimetype,
        "size": message.attachment.size,
        "data_base64": base64.b64encode(found.data).decode("ascii")
        if found and found.data
        else None,
    }


async def _chat(tx: Tx, session: Session) -> dict[str, Any]:
    form = session.form
    said = await messages.after(tx, session.id, 0, 100_000)
    rated = await feedback.get(tx, session.id)
    return {
        "id": session.id,
        "started_at": _at(session.created_at),
        "closed_at": _at(session.closed_at),
        "state": session.state.value,
        "name": form.name,
        "email": form.email,
        "member_number": form.member_number,
        "topic": form.topic,
        "language": form.language,
        "page": form.page_url,
        "browser": form.user_agent,
        "served_by": session.owner_name,
        "messages": [
            {
                "at": _at(m.created_at),
                "from": m.origin.value,
                "name": m.sender_name,
                "text": None if m.deleted_at else m.body,
                "edited_at": _at(m.edited_at),
                "deleted_at": _at(m.deleted_at),
                "file": await _file(tx, session.id, m),
            }
            for m in said
        ],
        "notes": [
            {"at": _at(at), "by": author, "text": body}
            for author, body, at in await notes.of_session(tx, session.id)
        ],
        "feedback": (
            {"rating": rated.rating, "comment": rated.comment, "at": _at(rated.updated_at)}
            if rated
            else None
        ),
        "membership_checks": [
            {"at": _at(at), "outcome": outcome}
            for outcome, at in await rows.audit_of(tx, session.id)
        ],
        "emails": [
            {"kind": kind, "subject": subject, "queued_at": _at(queued), "sent_at": _at(sent)}
            for kind, subject, queued, sent in await rows.mail_of(tx, session.id)
        ],
    }


class VisitorRights:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Callable[[], datetime],
        desk_name: str,
        close: Callable[[SessionID, str], Awaitable[Session]],
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.clock = clock
        self.desk_name = desk_name
        self.close = close

    async def find(self, *, email: str | None = None, session_id: str | None = None) -> list[str]:
        if not (email or session_id):
            raise ValueError("give an email address or a session id")
        return await self.db.read(lambda tx: rows.sessions_of(tx, email, session_id))

    async def request_export(
        self, *, email: str | None = None, session_id: str | None = None, by: str
    ) -> int:
        """A supervisor's ``!privacy export``: the adapter sends them the file (a stored intent,
        so a restart loses no request); the number of chats it will hold."""
        found = await self.find(email=email, session_id=session_id)
        if found:
            await self.outbox.add(
                DESK_LANE, IntentKind.PRIVACY_EXPORT, to=by, email=email, session_id=session_id
            )
        return len(found)

    async def export(
        self, *, email: str | None = None, session_id: str | None = None, by: str
    ) -> dict[str, Any]:
        """Everything held about a person, as one JSON-ready document."""
        found = await self.find(email=email, session_id=session_id)
        at = self.clock()

        async def unit(tx: Tx) -> list[dict[str, Any]]:
            chats = []
            for sid in found:
                session = await sessions.get(tx, sid)
                if session is not None:
                    chats.append(await _chat(tx, session))
            items = sum(len(c["messages"]) + len(c["notes"]) for c in chats)
            await rows.log(tx, "export", by, len(chats), items, at)
            return chats

        chats = await self.db.write(unit)
        log.info("export by %s: %d chats", by, len(chats))
        return {
            "format": FORMAT,
            "desk": self.desk_name,
            "exported_at": at.isoformat(),
            "asked_for": {"email": email} if email else {"session": session_id},
            "chats": chats,
        }

    async def erase(
        self, *, email: str | None = None, session_id: str | None = None, by: str
    ) -> Erased:
        """Close, remove and purge every chat of a person (idempotent)."""
        found = await self.find(email=email, session_id=session_id)
        for sid in found:
            await self.close(SessionID(sid), by)  # idempotent: a closed chat stays as it is
        at = self.clock()

        async def unit(tx: Tx) -> Erased:
            items = 0
            for sid in found:
                session = await sessions.get(tx, sid)
                media = await rows.media_of(tx, sid)
                items += await rows.erase_chat(tx, sid, at)
                if session is not None and session.room_id is not None:
                    await self.outbox.add(
                        sid, IntentKind.PURGE_ROOM, room_id=session.room_id, media=media
                    )
            await rows.log(tx, "erase", by, len(found), items, at)
            return Erased(len(found), items)

        erased = await self.db.write(unit)
        log.info("erase by %s: %d chats, %d items", by, erased.sessions, erased.items)
        return erased


def _file_html(file: dict[str, Any] | None) -> str:
    if not file:
        return ""
    name = html.escape(file["name"])
    if not file.get("data_base64"):
        return f"<br>[{name}]"
    url = f"data:{html.escape(file['type'])};base64,{file['data_base64']}"
    if file["type"].startswith("image/"):
        return f'<br><img src="{url}" alt="{name}" style="max-width:100%">'
    return f'<br><a href="{url}" download="{name}">{name}</a>'


def export_page(document: dict[str, Any]) -> str:
    """The export as one file: a page a person can read, with the complete record inside it as
    JSON (``<script type="application/json" id="refdesk-export">``)."""
    e = html.escape
    parts = [
        '<!doctype html><html><head><meta charset="utf-8">',
        f"<title>{e(document['desk'])}: data export</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:50em;margin:2em auto;"
        "color:#1d2b36}td,th{padding:2px 8px;text-align:left;vertical-align:top}"
        "small{color:#556}</style></head><body>",
        f"<h1>{e(document['desk'])}</h1>",
        f"<p>Everything this desk holds, exported {e(document['exported_at'])}: "
        f"{len(document['chats'])} chat(s).</p>",
    ]
    for chat in document["chats"]:
        parts.append(f"<h2>Chat {e(chat['id'])}</h2><table>")
        for key in ("started_at", "closed_at", "name", "email", "member_number", "topic",
                    "language", "page", "browser", "served_by"):  # fmt: skip
            if chat.get(key):
                parts.append(f"<tr><th>{e(key.replace('_', ' '))}</th><td>{e(chat[key])}</td></tr>")
        parts.append("</table><h3>Messages</h3>")
        for m in chat["messages"]:
            text = e(m["text"]) if m["text"] is not None else "<i>(deleted)</i>"
            who = e(m["name"] or m["from"])
            parts.append(
                f"<p><small>{e(m['at'])} · {who}</small><br>{text}{_file_html(m['file'])}</p>"
            )
        for title, key in (("Notes", "notes"), ("Membership checks", "membership_checks"),
                           ("Emails", "emails")):  # fmt: skip
            if chat[key]:
                parts.append(f"<h3>{title}</h3><ul>")
                parts += [
                    f"<li>{e(', '.join(f'{k}: {v}' for k, v in item.items() if v))}</li>"
                    for item in chat[key]
                ]
                parts.append("</ul>")
        if chat["feedback"]:
            rated = chat["feedback"]
            parts.append(f"<h3>Feedback</h3><p>{rated['rating']}/5 {e(rated['comment'] or '')}</p>")
    record = json.dumps(document, ensure_ascii=False, indent=1).replace("<", "\\u003c")
    parts.append(f'<script type="application/json" id="refdesk-export">{record}</script>')
    parts.append("</body></html>")
    return "\n".join(parts)
