"""Replies by email: offline messages and replies a visitor who left has not seen go to their
address, with a signed link that reopens the conversation (the rules are in rooms/offline.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from rooms.bans import secret
from rooms.errors import BadLink
from rooms.events import EventBus, MailQueued
from rooms.offline import (
    LinkError,
    OfflineRules,
    check_link,
    link_expiry,
    reply_email,
    resume_url,
    sign_link,
)
from rooms.session import Session, hash_token, new_token
from rooms.store import Database, Tx, mail, messages, sessions

log = logging.getLogger("refdesk.rooms.replies")


class EmailReplies:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        clock: Callable[[], datetime],
        rules: OfflineRules,
        *,
        desk_name: str,
        timezone: str,
        enabled: bool,
    ) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.rules = rules
        self.desk_name = desk_name
        self.timezone = timezone
        self.enabled = enabled
        self._secret: bytes | None = None

    async def _link_secret(self) -> bytes:
        if self._secret is None:
            self._secret = (await secret(self.db, "resume_link_secret")).encode()
        return self._secret

    async def resume_link(self, session: Session) -> tuple[str, datetime]:
        until = link_expiry(self.clock(), self.rules)
        token = sign_link(session.id, until, await self._link_secret())
        return resume_url(self.rules.resume_page, token), until

    async def resume(self, link_token: str) -> tuple[Session, str]:
        """Trade a signed link from an email for a fresh visitor token (the old one stops)."""
        try:
            session_id = check_link(link_token, await self._link_secret(), self.clock())
        except LinkError as exc:
            raise BadLink(str(exc)) from None
        token = new_token()

        async def unit(tx: Tx) -> Session | None:
            await sessions.set_token_hash(tx, session_id, hash_token(token))
            return await sessions.get(tx, session_id)

        session = await self.db.write(unit)
        if session is None:
            raise BadLink("This link's conversation no longer exists.")
        log.info("session %s resumed from an email link", session.id)
        return session, token

    async def mail_replies(self) -> int:
        """Email replies a visitor has not seen: offline sessions after a short quiet time,
        others once the visitor has been away for ``unseen_after``. Returns mails queued."""
        if not self.enabled:
            return 0
        now = self.clock()
        before = now - timedelta(seconds=self.rules.batch_delay)
        queued = 0
        for session in await self.db.read(lambda tx: sessions.with_unseen_replies(tx, before)):
            queued += await self._mail_unseen(session, now)
        return queued

    async def _mail_unseen(self, session: Session, now: datetime) -> int:
        floor = max(session.visitor_seen_up_to, session.emailed_up_to)
        replies = await self.db.read(lambda tx: messages.replies_after(tx, session.id, floor))
        if not replies:
            return 0
        newest = max(r.created_at for r in replies)
        if not session.offline and newest > now - timedelta(seconds=self.rules.unseen_after):
            return 0
        link, until = await self.resume_link(session)
        subject, text_body, html_body = reply_email(
            session,
            replies,
            desk_name=self.desk_name,
            timezone=self.timezone,
            link=link,
            until=until,
        )
        last = replies[-1].id

        async def unit(tx: Tx) -> int:
            mail_id = await mail.enqueue(
                tx,
                session_id=session.id,
                kind="replies",
                recipient=session.form.email,
                subject=subject,
                text_body=text_body,
                html_body=html_body,
                at=now,
                dedup_key=f"replies:{session.id}:{last}",
            )
            await sessions.raise_mark(tx, session.id, "emailed_up_to", last)
            return mail_id

        self.bus.emit(MailQueued(await self.db.write(unit)))
        return 1
