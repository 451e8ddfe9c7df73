"""Queue rules on a real SQLite store with a controlled clock (no homeserver needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rooms.desk import Desk, DeskRules
from rooms.events import DeskEvent, SessionEscalated, SessionQueued
from rooms.ids import RoomID, UserID
from rooms.queue import QueueError, QueueRules
from rooms.session import Session, Status, VisitorForm
from rooms.store import Database

SARI, DEWI, AGUS, KEPALA = (UserID(f"@{n}:hs") for n in ("sari", "dewi", "agus", "kepala"))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 09:00 WIB, a Monday

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def desk(store: Database) -> AsyncIterator[Desk]:
    db = store
    rules = DeskRules(
        topics=("literature",),
        queue=QueueRules(librarians=(SARI, DEWI, AGUS), supervisors=(KEPALA,), escalate_after=120),
    )
    yield Desk(db, rules, clock=Clock())


async def waiting_session(desk: Desk, name: str = "Budi") -> Session:
    session, _ = await desk.start_session(VisitorForm(name, "b@example.org", "literature"))
    await desk.visitor_message(session, "halo", f"c-{name}")
    await desk.attach_room(session.id, RoomID(f"!{name}:hs"))
    return await desk.get_session(session.id)


async def test_a_session_enters_the_queue_with_its_first_message(desk: Desk) -> None:
    session, _ = await desk.start_session(VisitorForm("Budi", "b@example.org", "literature"))
    assert session.status is Status.NEW
    assert await desk.queue.position(session) is None
    first = await waiting_session(desk, "Ani")
    second = await waiting_session(desk, "Citra")
    assert first.status is Status.WAITING
    assert [await desk.queue.position(s) for s in (first, second)] == [1, 2]


async def test_concurrent_claims_have_exactly_one_winner(desk: Desk) -> None:
    for round_ in range(10):
        session = await waiting_session(desk, f"v{round_}")
        results = await asyncio.gather(
            *(desk.queue.claim(session.id, who, who) for who in (SARI, DEWI, AGUS))
        )
        winners = [r for r in results if r.won]
        assert len(winners) == 1
        final = await desk.get_session(session.id)
        assert final.owner == winners[0].session.owner and final.status is Status.CLAIMED


async def test_only_librarians_claim_and_owners_transfer(desk: Desk) -> None:
    session = await waiting_session(desk)
    with pytest.raises(QueueError):
        await desk.queue.claim(session.id, UserID("@stranger:hs"), "Stranger")
    await desk.queue.claim(session.id, SARI, "Sari")
    with pytest.raises(QueueError, match="Only the owner"):
        await desk.queue.transfer(session.id, DEWI, AGUS, "Agus")
    with pytest.raises(QueueError, match="not a librarian"):
        await desk.queue.transfer(session.id, SARI, UserID("@x:hs"), "X")
    moved = await desk.queue.transfer(session.id, SARI, DEWI, "Dewi")
    assert moved.owner == DEWI
    # A supervisor may move a chat they do not own.
    assert (await desk.queue.transfer(session.id, KEPALA, AGUS, "Agus")).owner == AGUS
    with pytest.raises(QueueError):
        await desk.queue.release(session.id, SARI)


async def test_off_duty_hands_chats_back_and_stops_ringing(desk: Desk) -> None:
    events: list[DeskEvent] = []
    desk.subscribe(events.append)
    session = await waiting_session(desk)
    await desk.queue.claim(session.id, SARI, "Sari")
    assert await desk.queue.on_duty() == [SARI, DEWI, AGUS]
    assert await desk.queue.set_duty(SARI, False)
    assert not await desk.queue.set_duty(SARI, False)  # no change the second time
    assert await desk.queue.on_duty() == [DEWI, AGUS]
    after = await desk.get_session(session.id)
    assert after.status is Status.WAITING and after.owner is None
    requeued = [e for e in events if isinstance(e, SessionQueued) and e.reason == "off_duty"]
    assert len(requeued) == 1 and requeued[0].previous_owner == SARI
    visitor_lines = [m.body for m in await desk.messages_after(session.id, 0)]
    assert any("kembali dalam antrean" in line for line in visitor_lines)
    with pytest.raises(QueueError):
        await desk.queue.set_duty(UserID("@stranger:hs"), True)


async def test_escalation_after_the_configured_delay_once(desk: Desk) -> None:
    events: list[DeskEvent] = []
    desk.subscribe(events.append)
    clock = desk.clock
    assert isinstance(clock, Clock)
    first = await waiting_session(desk, "Ani")
    clock.now += timedelta(seconds=60)
    second = await waiting_session(desk, "Citra")
    assert await desk.queue.tick() == []
    clock.now += timedelta(seconds=61)  # Ani has waited 121 s, Citra 61 s
    escalated = await desk.queue.tick()
    assert [s.id for s in escalated] == [first.id]
    assert await desk.queue.tick() == []  # once only
    clock.now += timedelta(seconds=60)
    assert [s.id for s in await desk.queue.tick()] == [second.id]
    positions = [e.position for e in events if isinstance(e, SessionEscalated)]
    assert positions == [1, 2]
    # Claimed chats never escalate; a requeued chat's clock starts again.
    third = await waiting_session(desk, "Dodi")
    await desk.queue.claim(third.id, SARI, "Sari")
    clock.now += timedelta(seconds=500)
    assert third.id not in [s.id for s in await desk.queue.tick()]
    await desk.queue.release(third.id, SARI)
    assert third.id not in [s.id for s in await desk.queue.tick()]
    clock.now += timedelta(seconds=121)
    assert third.id in [s.id for s in await desk.queue.tick()]


async def test_verification_can_be_asked_automatically_after_the_claim(
    store: Database, tmp_path: Path
) -> None:
    from refdesk.directory_config import build_directory, parse_directory
    from rooms.verification import Verifier

    cfg = parse_directory({"directory": {"type": "local"}}, tmp_path)
    db = store
    rules = DeskRules(
        topics=("literature",), queue=QueueRules(librarians=(SARI,)), verify_after_claim=True
    )
    desk = Desk(db, rules, verifier=Verifier(build_directory(cfg), cfg.rules, Clock()))
    try:
        session = await waiting_session(desk)
        assert session.verification is None
        await desk.queue.claim(session.id, SARI, "Sari")
        assert (await desk.get_session(session.id)).verification == "requested"
    finally:
        await db.close()
