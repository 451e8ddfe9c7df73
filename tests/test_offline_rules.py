"""Answers by email and the opening notice, with a controlled clock (no homeserver)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from rooms.desk import BadLink, Desk, DeskRules
from rooms.events import DeskEvent, OfflineWaiting
from rooms.hours import Interval, Schedule, ServiceHours
from rooms.ids import UserID
from rooms.offline import LinkError, OfflineRules, check_link, sign_link
from rooms.queue import QueueRules
from rooms.session import VisitorForm
from rooms.store import Database
from tests.test_queue import Clock

SARI = UserID("@sari:hs")
JAKARTA = ZoneInfo("Asia/Jakarta")


@pytest.fixture
async def desk(store: Database) -> AsyncIterator[Desk]:
    db = store
    weekdays = {d: (Interval(time(9), time(19)),) for d in range(5)}
    hours = ServiceHours(Schedule(timezone=JAKARTA, weekly=weekdays, holidays_country=None))
    rules = DeskRules(
        topics=("literature",),
        queue=QueueRules(librarians=(SARI,)),
        email_enabled=True,
        offline=OfflineRules(batch_delay=60, unseen_after=300, resume_page="https://lib.example/"),
    )
    yield Desk(db, rules, clock=Clock(), hours=hours)


def test_links_are_signed_and_expire() -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    token = sign_link("abc", now + timedelta(days=1), b"secret")  # type: ignore[arg-type]
    assert check_link(token, b"secret", now) == "abc"
    with pytest.raises(LinkError):
        check_link(token, b"other secret", now)
    with pytest.raises(LinkError, match="expired"):
        check_link(token, b"secret", now + timedelta(days=2))
    with pytest.raises(LinkError):
        check_link("xyz." + token, b"secret", now)


async def test_replies_are_batched_and_only_unseen_ones_go(desk: Desk) -> None:
    clock = desk.clock
    assert isinstance(clock, Clock)
    session, _ = await desk.start_session(VisitorForm("Budi", "b@example.org", "literature"))
    await desk.visitor_message(session, "halo", "c1")
    first = await desk.librarian_message(session, SARI, "Sari", "satu", "$1")
    clock.now += timedelta(seconds=10)
    await desk.librarian_message(session, SARI, "Sari", "dua", "$2")
    # The visitor is live (not offline): nothing until they have been away for unseen_after.
    clock.now += timedelta(seconds=120)
    assert await desk.mail_replies() == 0
    clock.now += timedelta(seconds=200)
    assert await desk.mail_replies() == 1
    [mail] = await desk.pending_mail()
    assert "satu" in mail.text_body and "dua" in mail.text_body
    assert "https://lib.example/?refdesk_resume=" in mail.text_body
    assert await desk.mail_replies() == 0  # sent once
    # What the visitor has read is never emailed.
    await desk.librarian_message(session, SARI, "Sari", "tiga", "$3")
    third = (await desk.messages_after(session.id, 0))[-1]
    await desk.visitor_read(session, third.id)
    clock.now += timedelta(seconds=1000)
    assert await desk.mail_replies() == 0
    assert first is not None

    resumed, token = await desk.resume(mail.text_body.split("refdesk_resume=")[1].split()[0])
    assert resumed.id == session.id and (await desk.authenticate(session.id, token))
    with pytest.raises(BadLink):
        await desk.resume("nonsense")


async def test_closed_desk_takes_offline_messages_and_tells_the_opening(desk: Desk) -> None:
    events: list[DeskEvent] = []
    desk.subscribe(events.append)
    clock = desk.clock
    assert isinstance(clock, Clock)
    clock.now = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # Monday 20:00 WIB: closed
    await desk.tick()
    assert not (await desk.availability()).open
    session, _ = await desk.start_session(VisitorForm("Rina", "r@example.org", "literature"))
    assert session.offline
    await desk.visitor_message(session, "pertanyaan malam hari", "c1")
    clock.now += timedelta(minutes=30)
    await desk.queue.tick()
    assert (await desk.get_session(session.id)).escalated_at is None  # never escalated
    clock.now = datetime(2026, 3, 3, 2, 0, 1, tzinfo=UTC)  # Tuesday 09:00 WIB: open
    await desk.tick()
    assert [e.count for e in events if isinstance(e, OfflineWaiting)] == [1]
    await desk.tick()
    assert len([e for e in events if isinstance(e, OfflineWaiting)]) == 1
    live, _ = await desk.start_session(VisitorForm("Ani", "a@example.org", "literature"))
    assert not live.offline
