"""Retention: closed chats are kept for a configured time, then purged from the store and,
through a stored intent per chat, from the homeserver.

A purge never touches an open chat, is safe to stop at any point (each chat is purged in its own
transaction together with the intent that purges its room, so a run killed halfway leaves every
chat either whole or purged with its room's purge still to do) and logs counts, never contents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rooms.intents import IntentKind
from rooms.outbox import Outbox
from rooms.store import Database, Tx, desk_state
from rooms.store import privacy as rows

log = logging.getLogger("refdesk.privacy")

BATCH = 20  # chats per transaction: short transactions, so the desk never waits long on a purge
PURGE_EVERY = timedelta(hours=24)
_LAST_RUN = "purge_last_run"


@dataclass(frozen=True)
class Retention:
    """How long closed chats' data is kept (None: forever, chosen explicitly)."""

    messages: timedelta | None = timedelta(days=180)
    attachments: timedelta | None = timedelta(days=180)
    feedback_comments: timedelta | None = timedelta(days=180)
    verification_audit: timedelta | None = timedelta(days=180)


@dataclass(frozen=True)
class PurgeReport:
    chats: int = 0
    messages: int = 0
    feedback_comments: int = 0
    verification_records: int = 0
    files: int = 0  # of chats kept longer than their files

    def __str__(self) -> str:
        return (
            f"{self.chats} chats ({self.messages} messages), {self.files} files, "
            f"{self.feedback_comments} feedback comments, "
            f"{self.verification_records} verification records"
        )


class Purger:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Callable[[], datetime],
        retention: Retention,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.clock = clock
        self.retention = retention
        self._due: datetime | None = None

    def _before(self, kept: timedelta | None) -> datetime | None:
        return None if kept is None else self.clock() - kept

    async def preview(self) -> PurgeReport:
        """What a purge would remove now (``refdesk purge --dry-run``); changes nothing."""
        chats_before = self._before(self.retention.messages)
        comments_before = self._before(self.retention.feedback_comments)
        audit_before = self._before(self.retention.verification_audit)
        files_before = self._before(self.retention.attachments)

        async def unit(tx: Tx) -> PurgeReport:
            chats, messages = (0, 0)
            if chats_before is not None:
                chats, messages = await rows.count_expired(tx, chats_before)
            return PurgeReport(
                chats,
                messages,
                await rows.count_comments(tx, comments_before) if comments_before else 0,
                await rows.count_audit(tx, audit_before) if audit_before else 0,
                await rows.count_files(tx, files_before) if files_before else 0,
            )

        return await self.db.read(unit)

    async def run(self) -> PurgeReport:
        """Purge what has expired, in batches; each chat's room goes through an intent."""
        chats = messages = 0
        before = self._before(self.retention.messages)
        while before is not None:
            at = self.clock()

            async def batch(
                tx: Tx, before: datetime = before, at: datetime = at
            ) -> tuple[int, int]:
                found = await rows.expired(tx, before, BATCH)
                removed = 0
                for session_id, room_id in found:
                    media = await rows.media_of(tx, session_id)
                    removed += await rows.purge_chat(tx, session_id, at)
                    if room_id is not None:
                        await self.outbox.add(
                            session_id, IntentKind.PURGE_ROOM, room_id=room_id, media=media
                        )
                return len(found), removed

            done, removed = await self.db.write(batch)
            chats, messages = chats + done, messages + removed
            if done < BATCH:
                await self.db.write(lambda tx: rows.forget_desk_intents(tx, before))
                break
        files = await self._drop_files()
        comments = audit = 0
        comments_before = self._before(self.retention.feedback_comments)
        audit_before = self._before(self.retention.verification_audit)
        if comments_before is not None:
            comments = await self.db.write(lambda tx: rows.clear_comments(tx, comments_before))
        if audit_before is not None:
            audit = await self.db.write(lambda tx: rows.delete_audit(tx, audit_before))
        report = PurgeReport(chats, messages, comments, audit, files)
        if report != PurgeReport():
            items = messages + comments + audit + files
            await self.db.write(
                lambda tx: rows.log(tx, "purge", "refdesk", chats, items, self.clock())
            )
        log.info("purge: removed %s", report)
        return report

    async def _drop_files(self) -> int:
        """Files kept for less time than their chats: gone from the store, and from the
        homeserver through an intent per chat."""
        before = self._before(self.retention.attachments)
        dropped = 0
        while before is not None:

            async def batch(tx: Tx, before: datetime = before) -> tuple[int, int]:
                found = await rows.expired_files(tx, before, BATCH)
                count = 0
                for session_id in found:
                    media = await rows.media_of(tx, session_id)
                    count += await rows.drop_files(tx, session_id)
                    if media:
                        await self.outbox.add(session_id, IntentKind.PURGE_MEDIA, media=media)
                return len(found), count

            chats, count = await self.db.write(batch)
            dropped += count
            if chats < BATCH:
                break
        return dropped

    async def run_if_due(self) -> PurgeReport | None:
        """Once a day: the desk's clock calls this often; the last run is kept in the store (so
        a restart neither skips nor repeats a day) and remembered here until the next is due."""
        now = self.clock()
        if self._due is not None and now < self._due:
            return None
        last = await self.db.read(lambda tx: desk_state.get(tx, _LAST_RUN))
        if last is not None and now - datetime.fromisoformat(last) < PURGE_EVERY:
            self._due = datetime.fromisoformat(last) + PURGE_EVERY
            return None
        report = await self.run()
        await self.db.write(lambda tx: desk_state.put(tx, _LAST_RUN, now.isoformat()))
        self._due = now + PURGE_EVERY
        return report
