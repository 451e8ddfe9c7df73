"""Answers by email: offline messages, and replies a visitor who left has not seen.

Replies are batched (one email for a burst) and carry a signed, expiring link that reopens the
conversation in the widget with its history.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from rooms.ids import SessionID
from rooms.language import language
from rooms.session import Message, Session

RESUME_PARAM = "refdesk_resume"


class LinkError(Exception):
    """A resume link that is malformed, forged or expired."""


@dataclass(frozen=True)
class OfflineRules:
    batch_delay: float = 60.0  # seconds of quiet after a reply before its email goes
    unseen_after: float = 300.0  # a visitor who left: replies unseen this long go by email
    link_valid_days: int = 14
    resume_page: str = "http://localhost:8080/demo"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sign_link(session_id: SessionID, expires: datetime, secret: bytes) -> str:
    payload = f"{session_id}.{int(expires.timestamp())}"
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:18]
    return f"{payload}.{_b64(mac)}"


def check_link(token: str, secret: bytes, now: datetime) -> SessionID:
    parts = token.split(".")
    if not token.isascii() or len(parts) != 3 or not parts[1].isdigit():
        raise LinkError("This link is not valid.")
    payload = f"{parts[0]}.{parts[1]}"
    expected = _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:18])
    if not hmac.compare_digest(expected, parts[2]):
        raise LinkError("This link is not valid.")
    if int(parts[1]) < now.timestamp():
        raise LinkError("This link has expired.")
    return SessionID(parts[0])


def reply_email(
    session: Session,
    replies: list[Message],
    *,
    desk_name: str,
    timezone: str,
    link: str,
    until: datetime,
) -> tuple[str, str, str]:
    """(subject, text, html) of one email carrying a batch of librarian replies."""
    words = language(session.form.language).words("offline_email")
    tz = ZoneInfo(timezone)
    until_text = until.astimezone(tz).strftime("%Y-%m-%d")
    lines = [words["hello"].format(name=session.form.name), words["intro"], ""]
    items = []
    for reply in replies:
        when = reply.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        who = reply.sender_name or desk_name
        text = reply.body
        if reply.attachment is not None:  # the file itself waits in the conversation (the link)
            named = f"[{words['file']}: {reply.attachment.name}]"
            text = named if text == reply.attachment.name else f"{named}\n{text}"
        lines.append(f"[{when}] {who}:\n{text}\n")
        items.append(
            f"<p><small>{html.escape(when)} · <b>{html.escape(who)}</b></small><br>"
            f"{html.escape(text).replace(chr(10), '<br>')}</p>"
        )
    cont = words["continue"].format(until=until_text)
    footer = words["footer"].format(desk=desk_name)
    lines += [cont, link, "", footer]
    page = (
        f'<!doctype html><html lang="{html.escape(session.form.language)}"><body '
        'style="font:15px/1.5 system-ui,sans-serif;color:#1d2b36;max-width:40em">'
        f"<p>{html.escape(lines[0])}<br>{html.escape(words['intro'])}</p>{''.join(items)}"
        f'<p>{html.escape(cont)}<br><a href="{html.escape(link)}">{html.escape(link)}</a></p>'
        f'<p style="color:#667"><small>{html.escape(footer)}</small></p></body></html>'
    )
    return words["subject"].format(desk=desk_name), "\n".join(lines) + "\n", page


def resume_url(page: str, token: str) -> str:
    joiner = "&" if "?" in page else "?"
    return f"{page}{joiner}{urlencode({RESUME_PARAM: token})}"


def link_expiry(now: datetime, rules: OfflineRules) -> datetime:
    return now + timedelta(days=rules.link_valid_days)
