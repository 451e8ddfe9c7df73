"""Outgoing email: a worker that sends the store's mail outbox over SMTP, with retries.

aiosmtplib is the maintained asyncio SMTP client (STARTTLS, implicit TLS, auth), so we do not
hand-roll SMTP on asyncio streams. Mail waits in the store until the relay accepts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

import aiosmtplib

from common.background import Worker
from mailer.settings import MailSettings
from rooms.desk import Desk
from rooms.events import DeskEvent, MailQueued
from rooms.store.mail import Mail

log = logging.getLogger("refdesk.mailer")

MAX_ATTEMPTS = 20


class Mailer:
    def __init__(self, settings: MailSettings, desk: Desk) -> None:
        self.settings = settings
        self.desk = desk
        self._wake = asyncio.Event()
        self._worker = Worker("refdesk-mailer", self._run)

    def on_desk_event(self, event: DeskEvent) -> None:
        if isinstance(event, MailQueued):
            self._wake.set()

    def start(self) -> None:
        if self.settings.enabled:
            self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()

    def compose(self, mail: Mail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = formataddr((self.settings.from_name, self.settings.from_address))
        message["To"] = mail.recipient
        message["Subject"] = mail.subject
        if self.settings.reply_to:
            message["Reply-To"] = self.settings.reply_to
        domain = self.settings.from_address.rsplit("@", 1)[-1]
        message["Message-ID"] = make_msgid(f"refdesk-{mail.id}", domain=domain)
        message.set_content(mail.text_body)
        if mail.html_body:
            message.add_alternative(mail.html_body, subtype="html")
        return message

    async def send(self, message: EmailMessage) -> None:
        cfg = self.settings
        await aiosmtplib.send(
            message,
            hostname=cfg.host,
            port=cfg.port,
            username=cfg.username,
            password=cfg.password,
            use_tls=cfg.security == "ssl",
            start_tls=True if cfg.security == "starttls" else False,
            timeout=30,
        )

    async def deliver_pending(self) -> bool:
        """One pass; returns False if a send failed (so the caller backs off)."""
        ok = True
        for mail in await self.desk.pending_mail():
            if mail.attempts >= MAX_ATTEMPTS:
                continue
            try:
                await self.send(self.compose(mail))
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                ok = False
                log.warning("mail %d not sent yet: %s", mail.id, type(exc).__name__)
                await self.desk.mail_attempted(mail.id, sent=False, error=str(exc)[:200])
                continue
            await self.desk.mail_attempted(mail.id, sent=True, error=None)
            log.info("mail %d (%s) sent", mail.id, mail.kind)
        return ok

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            self._wake.clear()
            try:
                ok = await self.deliver_pending()
            except Exception:
                log.exception("mail round failed")
                ok = False
            if ok:
                backoff = 1.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 60)
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 300)
