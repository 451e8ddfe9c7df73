"""A session's transcript as plain text and as a small self-contained HTML page."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rooms.errors import EmailUnavailable, TooManyRequests
from rooms.events import EventBus, MailQueued
from rooms.language import language
from rooms.markup import escape_text, plain_text, sanitize_html
from rooms.session import Message, Origin, Session
from rooms.store import Database, Tx, attachments, mail, messages


def _who(message: Message, words: Mapping[str, str]) -> str:
    if message.origin is Origin.VISITOR:
        return words["visitor"]
    if message.origin is Origin.DESK:
        return words["desk"]
    return message.sender_name or "Librarian"


def render(
    session: Session,
    messages: list[Message],
    *,
    desk_name: str,
    timezone: str,
    topic_label: str,
    images: Mapping[int, tuple[str, bytes]] | None = None,
) -> tuple[str, str]:
    """(text, html) of the conversation, times in the library's time zone. ``images``: pictures
    to show in the page itself (attachment id: type and bytes), so the download stands alone."""
    words = language(session.form.language).words("transcript")
    tz = ZoneInfo(timezone)
    started = session.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    head = [
        f"{desk_name} · {words['title']}",
        f"{words['started']}: {started} · {words['topic']}: {topic_label}",
        words["times"].format(tz=timezone),
    ]
    lines = [*head, ""]
    rows = []
    for message in sorted(messages, key=lambda m: m.id):
        when = message.created_at.astimezone(tz).strftime("%H:%M")
        who = _who(message, words)
        if message.deleted_at:
            body, shown = words["deleted"], escape_text(words["deleted"])
        elif message.html:  # formatted by the librarian: as formatted, never its Markdown
            shown = sanitize_html(message.html)
            body = plain_text(shown)
        else:
            body, shown = message.body, escape_text(message.body)
        if message.attachment is not None and not message.deleted_at:
            # The file by its name (the page stands alone: it links to nothing).
            named = f"[{words['file']}: {message.attachment.name}]"
            body = named if body == message.attachment.name else f"{named} {body}"
            shown = f"<b>{escape_text(named)}</b>" + (
                "" if message.body == message.attachment.name else f" {shown}"
            )
            picture = (images or {}).get(message.attachment.id)
            if picture is not None:
                data = base64.b64encode(picture[1]).decode("ascii")
                shown += (
                    f'<br><img src="data:{html.escape(picture[0])};base64,{data}" '
                    f'alt="{html.escape(message.attachment.name)}" style="max-width:100%">'
                )
        lines.append(f"[{when}] {who}: {body}")
        rows.append(
            f'<tr class="{message.origin.value}"><td class="t">{when}</td>'
            f'<td class="w">{html.escape(who)}</td><td class="m">{shown}</td></tr>'
        )
    text = "\n".join(lines) + "\n"
    page = (
        '<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        "<title>{title}</title><style>"
        "body{{font:15px/1.5 system-ui,sans-serif;max-width:46em;margin:2em auto;color:#1d2b36}}"
        "td{{vertical-align:top;padding:.3em .5em}}.t{{color:#667;white-space:nowrap}}"
        ".w{{font-weight:600;white-space:nowrap}}.desk td{{color:#667;font-style:italic}}"
        ".m p,.m ul,.m ol,.m pre,.m blockquote{{margin:0 0 .4em}}"
        "</style></head><body><h1>{h1}</h1><p>{meta}<br>{tz}</p><table>{rows}</table>"
        "</body></html>"
    ).format(
        lang=html.escape(session.form.language),
        title=html.escape(head[0]),
        h1=html.escape(head[0]),
        meta=html.escape(head[1]),
        tz=html.escape(head[2]),
        rows="".join(rows),
    )
    return text, page


TRANSCRIPT_MAIL_INTERVAL = timedelta(minutes=10)


class Transcripts:
    """A session's transcript, to download or by email to the visitor's own address."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        clock: Callable[[], datetime],
        *,
        desk_name: str,
        timezone: str,
        topic_label: Callable[[Session], str],
        email_enabled: bool,
    ) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.desk_name = desk_name
        self.timezone = timezone
        self.topic_label = topic_label
        self.email_enabled = email_enabled

    async def render(self, session: Session, *, pictures: bool = False) -> tuple[str, str]:
        """The conversation as (text, html), times in the library's time zone; ``pictures``:
        the chat's images inside the page (the download), their small versions where made."""

        async def unit(tx: Tx) -> tuple[list[Message], dict[int, tuple[str, bytes]]]:
            history = await messages.after(tx, session.id, 0, 100_000)
            images: dict[int, tuple[str, bytes]] = {}
            for message in history if pictures else []:
                if message.attachment is None or not message.attachment.is_image:
                    continue
                found = await attachments.get(tx, session.id, message.attachment.id)
                if found is not None and found.thumbnail and found.thumb_mimetype:
                    images[found.id] = (found.thumb_mimetype, found.thumbnail)
                elif found is not None and found.data:
                    images[found.id] = (found.mimetype, found.data)
            return history, images

        history, images = await self.db.read(unit)
        return render(
            session,
            history,
            desk_name=self.desk_name,
            timezone=self.timezone,
            topic_label=self.topic_label(session),
            images=images,
        )

    async def email(self, session: Session) -> int:
        """Queue the transcript for the visitor's own address (never another one)."""
        if not self.email_enabled:
            raise EmailUnavailable("This desk does not send email.")
        last = await self.db.read(lambda tx: mail.last_at(tx, session.id, "transcript"))
        if last is not None and self.clock() - last < TRANSCRIPT_MAIL_INTERVAL:
            raise TooManyRequests("The transcript was sent a moment ago; check your inbox.")
        text_body, html_body = await self.render(session)
        subject = language(session.form.language).text("transcript", "subject", desk=self.desk_name)
        mail_id = await self.db.write(
            lambda tx: mail.enqueue(
                tx,
                session_id=session.id,
                kind="transcript",
                recipient=session.form.email,
                subject=subject,
                text_body=text_body,
                html_body=html_body,
                at=self.clock(),
            )
        )
        self.bus.emit(MailQueued(mail_id))
        return mail_id
