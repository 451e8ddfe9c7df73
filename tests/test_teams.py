"""Teams and routing in the core, on both stores, with a controlled clock (no homeserver)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from rooms.desk import Desk, DeskRules
from rooms.hours import Interval, Schedule, ServiceHours
from rooms.ids import RoomID, SessionID, UserID
from rooms.intents import IntentKind
from rooms.queue import QueueError, QueueRules
from rooms.session import Session, Status, VisitorForm
from rooms.store import Database
from rooms.teams import Assignment, Route, Team, TeamRules

SARI, DEWI, AGUS, RINA, KEPALA = (
    UserID(f"@{n}:hs") for n in ("sari", "dewi", "agus", "rina", "kepala")
)
LIBRARIANS = (SARI, DEWI, AGUS, RINA)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 09:00 WIB, a Monday

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def mornings_only() -> ServiceHours:
    """A branch open 08:00-12:00 WIB on weekdays."""
    weekly = {day: (Interval(time(8), time(12)),) for day in range(5)} | {5: (), 6: ()}
    return ServiceHours(Schedule(timezone=ZoneInfo("Asia/Jakarta"), weekly=weekly))


MEMBERSHIP = Team("membership", "Membership", (SARI, DEWI), overflow_after=60)
LITERATURE = Team(
    "literature",
    "Literature search",
    (DEWI, AGUS, RINA),
    overflow_after=120,
    assignment=Assignment.FAIR,
    accept_within=30,
    max_active_chats=2,
)
BOGOR = Team("bogor", "Branch Bogor", (RINA,), hours=mornings_only())
TEAMS = TeamRules(
    teams=(MEMBERSHIP, LITERATURE, BOGOR),
    routes=(
        Route("bogor", pages=("*/bogor/*",)),
        Route("membership", topics=("membership",)),
        Route("literature", topics=("literature",), pages=("https://lib.example/*",)),
    ),
    max_active_chats=3,
)


def make_desk(db: Database, teams: TeamRules = TEAMS) -> Desk:
    rules = DeskRules(
        topics=("literature", "membership", "other"),
        queue=QueueRules(
            librarians=LIBRARIANS, supervisors=(KEPALA,), escalate_after=600, teams=teams
        ),
    )
    return Desk(db, rules, clock=Clock())


@pytest.fixture
async def desk(store: Database) -> AsyncIterator[Desk]:
    yield make_desk(store)


def clock_of(desk: Desk) -> Clock:
    assert isinstance(desk.clock, Clock)
    return desk.clock


async def chat(
    desk: Desk, name: str = "Budi", topic: str = "membership", page: str | None = None
) -> Session:
    form = VisitorForm(name, "b@example.org", topic, page_url=page)
    session, _ = await desk.start_session(form)
    await desk.attach_room(session.id, RoomID(f"!{name}:hs"))
    await desk.visitor_message(session, "halo", f"c-{name}")
    return await desk.get_session(session.id)


async def intents(desk: Desk, session: Session, kind: IntentKind) -> list[dict[str, Any]]:
    return [i.payload for i in await desk.outbox.pending(session.id) if i.kind is kind]


async def offered_to(desk: Desk, session: Session) -> list[str]:
    return [p["user"] for p in await intents(desk, session, IntentKind.OFFERED)]


async def test_routing_by_topic_and_page_with_the_teams_hours(desk: Desk) -> None:
    member = await chat(desk, "Ani", "membership")
    assert member.team == "membership"
    # Topic and page must both match; no route: the whole desk, as before teams.
    literature = await chat(desk, "Citra", "literature", "https://lib.example/catalogue")
    elsewhere = await chat(desk, "Dodi", "literature", "https://other.example/x")
    other = await chat(desk, "Eka", "other")
    assert (literature.team, elsewhere.team, other.team) == ("literature", None, None)
    # The branch's page goes to the branch while it is open, whatever the topic...
    branch = await chat(desk, "Fajar", "membership", "https://lib.example/BOGOR/koleksi")
    assert branch.team == "bogor"
    # ...and to the next route that matches once it has closed (13:00 WIB).
    clock_of(desk).advance(4 * 3600)
    after_hours = await chat(desk, "Gita", "membership", "https://lib.example/bogor/koleksi")
    assert after_hours.team == "membership"
    # The team is kept with the chat; ringing names it.
    ring = (await intents(desk, member, IntentKind.RING))[0]
    assert ring["team"] == "membership" and ring["team_name"] == "Membership"
    assert (await intents(desk, other, IntentKind.RING))[0]["users"] == list(LIBRARIANS)
    assert "team" not in (await intents(desk, other, IntentKind.RING))[0]


async def test_a_ring_all_team_is_rung_then_the_rest_of_the_desk_after_the_delay(
    desk: Desk,
) -> None:
    session = await chat(desk, "Ani", "membership")
    [ring] = await intents(desk, session, IntentKind.RING)
    assert ring["users"] == [SARI, DEWI] and ring["reason"] == "new"
    clock_of(desk).advance(59)
    await desk.tick()
    assert len(await intents(desk, session, IntentKind.RING)) == 1
    clock_of(desk).advance(1)
    await desk.tick()
    await desk.tick()  # once only
    rings = await intents(desk, session, IntentKind.RING)
    assert len(rings) == 2
    assert rings[1]["reason"] == "overflow" and rings[1]["users"] == [AGUS, RINA]
    assert rings[1]["team_name"] == "Membership" and rings[1]["waited"] == 60
    assert (await desk.get_session(session.id)).overflowed_at == clock_of(desk).now
    # A claimed chat never overflows.
    claimed = await chat(desk, "Citra", "membership")
    await desk.queue.claim(claimed.id, SARI, "Sari")
    clock_of(desk).advance(3600)
    await desk.tick()
    assert len(await intents(desk, claimed, IntentKind.RING)) == 1


async def test_a_team_with_nobody_on_duty_rings_the_whole_desk_at_once(desk: Desk) -> None:
    await desk.queue.set_duty(SARI, False)
    await desk.queue.set_duty(DEWI, False, team="membership")
    session = await chat(desk, "Ani", "membership")
    [ring] = await intents(desk, session, IntentKind.RING)
    assert ring["overflow"] == "nobody_on_duty" and ring["users"] == [DEWI, AGUS, RINA]
    assert (await desk.get_session(session.id)).overflowed_at is not None


async def test_fair_offers_go_to_the_fewest_chats_then_the_longest_idle(desk: Desk) -> None:
    clock = clock_of(desk)
    page = "https://lib.example/search"
    # Nobody has served yet: the team's order.
    first = await chat(desk, "Ani", "literature", page)
    assert await offered_to(desk, first) == [DEWI]
    [ring] = await intents(desk, first, IntentKind.RING)
    assert ring["users"] == [] and ring["fair"]
    await desk.queue.claim(first.id, DEWI, "Dewi")
    clock.advance(10)
    # Agus and Rina have no chat; neither was ever active: the team's order again.
    second = await chat(desk, "Citra", "literature", page)
    assert await offered_to(desk, second) == [AGUS]
    await desk.queue.claim(second.id, AGUS, "Agus")
    clock.advance(10)
    third = await chat(desk, "Dodi", "literature", page)
    assert await offered_to(desk, third) == [RINA]  # the only one without a chat
    await desk.queue.claim(third.id, RINA, "Rina")
    clock.advance(10)
    # Everyone has one chat: the longest idle since their last claim (Dewi) first.
    fourth = await chat(desk, "Eka", "literature", page)
    assert await offered_to(desk, fourth) == [DEWI]
    await desk.queue.claim(fourth.id, DEWI, "Dewi")
    clock.advance(10)
    # Agus closes his chat: fewest chats beats idle time.
    await desk.end_session(second.id, by=AGUS)
    clock.advance(10)
    fifth = await chat(desk, "Fajar", "literature", page)
    assert await offered_to(desk, fifth) == [AGUS]
    # A close counts as activity: Rina closes, later Agus claims and closes: Rina first
    # (Dewi, at the team's cap of 2, is offered nothing).
    await desk.end_session(third.id, by=RINA)
    clock.advance(10)
    await desk.queue.claim(fifth.id, AGUS, "Agus")
    await desk.end_session(fifth.id, by=AGUS)
    clock.advance(10)
    sixth = await chat(desk, "Gita", "literature", page)
    assert await offered_to(desk, sixth) == [RINA]


async def test_an_offer_moves_to_the_next_after_accept_within(desk: Desk) -> None:
    clock = clock_of(desk)
    session = await chat(desk, "Ani", "literature", "https://lib.example/x")
    assert await offered_to(desk, session) == [DEWI]
    clock.advance(29)
    await desk.tick()
    assert await offered_to(desk, session) == [DEWI]
    clock.advance(1)
    await desk.tick()
    assert await offered_to(desk, session) == [DEWI, AGUS]
    moved = (await intents(desk, session, IntentKind.OFFERED))[1]
    assert moved["previous"] == DEWI and moved["accept_within"] == 30
    assert moved["team_name"] == "Literature search"
    clock.advance(30)
    await desk.tick()
    clock.advance(30)
    await desk.tick()  # everyone had a turn: the round starts again, not with Rina
    assert await offered_to(desk, session) == [DEWI, AGUS, RINA, DEWI]
    # The chat can be taken by answering: the offer ends, nothing more is offered.
    await desk.librarian_message(session, DEWI, "Dewi", "Halo!", "$reply")
    assert (await desk.get_session(session.id)).owner == DEWI
    assert await desk.queue.assignment.pending_offers() == {}
    clock.advance(30)
    await desk.tick()
    assert len(await offered_to(desk, session)) == 4
    # Overflow (120 s) ends the offers and rings the rest of the desk (here: Sari).
    other = await chat(desk, "Citra", "literature", "https://lib.example/x")
    for _ in range(4):
        clock.advance(30)
        await desk.tick()
    rings = await intents(desk, other, IntentKind.RING)
    assert rings[-1]["reason"] == "overflow" and rings[-1]["users"] == [SARI]
    assert await desk.queue.assignment.pending_offers() == {}
    clock.advance(30)
    await desk.tick()
    assert len(await offered_to(desk, other)) == 4  # no more offers after the overflow


async def test_the_cap_is_never_exceeded_even_with_concurrent_claims(desk: Desk) -> None:
    page = "https://lib.example/x"
    chats = [await chat(desk, f"v{i}", "literature", page) for i in range(6)]
    results = await asyncio.gather(*(desk.queue.claim(c.id, AGUS, "Agus") for c in chats))
    assert sum(r.won for r in results) == 2  # the literature team's cap
    refused = [r.refused for r in results if not r.won]
    assert all(r is not None and "the most this desk allows at once (2)" in r for r in refused)
    # The desk's own cap (3) for chats of no team: one more, not two.
    others = [await chat(desk, f"w{i}", "other") for i in range(3)]
    results = await asyncio.gather(*(desk.queue.claim(c.id, AGUS, "Agus") for c in others))
    assert sum(r.won for r in results) == 1
    served = [s for s in await desk.open_sessions() if s.owner == AGUS]
    assert len(served) == 3
    # Nor by a transfer, nor by answering: the answer reaches the visitor, the chat waits.
    free = [c for c, r in zip(others, results, strict=True) if not r.won]
    await desk.queue.claim(free[0].id, SARI, "Sari")
    with pytest.raises(QueueError, match="the most this desk allows"):
        await desk.queue.transfer(free[0].id, SARI, AGUS, "Agus")
    waiting = free[1]
    reply = await desk.librarian_message(waiting, AGUS, "Agus", "Sebentar ya", "$agus")
    assert reply is not None
    assert (await desk.get_session(waiting.id)).owner is None
    says = await intents(desk, waiting, IntentKind.SAY)
    assert says and "the most this desk allows" in says[-1]["body"]
    assert says[-1]["mentions"] == [AGUS]
    # At the cap, a librarian is neither offered nor rung.
    ring = (await intents(desk, await chat(desk, "x", "other"), IntentKind.RING))[0]
    assert AGUS not in ring["users"]


async def test_busy_pauses_offers_and_rings_and_is_kept(store: Database) -> None:
    desk = make_desk(store)
    page = "https://lib.example/x"
    session = await chat(desk, "Ani", "literature", page)
    assert await offered_to(desk, session) == [DEWI]
    # Busy: the pending offer moves on at once, and Dewi is rung for nothing new.
    assert await desk.queue.set_busy(DEWI, True)
    assert not await desk.queue.set_busy(DEWI, True)
    assert await offered_to(desk, session) == [DEWI, AGUS]
    other = await chat(desk, "Citra", "other")
    assert DEWI not in (await intents(desk, other, IntentKind.RING))[0]["users"]
    assert await desk.queue.is_on_duty(DEWI)  # still on duty
    # A new desk on the same store (a restart) still knows.
    again = make_desk(store)
    assert await again.queue.busy() == {DEWI}
    await again.end_session(session.id, by="visitor")
    # Everyone of the team busy: the next chat waits, offered to nobody...
    await again.queue.set_busy(AGUS, True)
    await again.queue.set_busy(RINA, True)
    waiting = await chat(again, "Dodi", "literature", page)
    assert await offered_to(again, waiting) == []
    # ...until someone is available again.
    await again.queue.set_busy(RINA, False)
    assert await offered_to(again, waiting) == [RINA]
    with pytest.raises(QueueError):
        await again.queue.set_busy(UserID("@stranger:hs"), True)


async def test_duty_per_team(desk: Desk) -> None:
    assert await desk.queue.set_duty(SARI, False, team="membership")
    assert not await desk.queue.set_duty(SARI, False, team="membership")
    assert await desk.queue.on_duty("membership") == [DEWI]
    assert SARI in await desk.queue.on_duty()  # still on duty for the desk
    session = await chat(desk, "Ani", "membership")
    assert (await intents(desk, session, IntentKind.RING))[0]["users"] == [DEWI]
    other = await chat(desk, "Citra", "other")
    assert SARI in (await intents(desk, other, IntentKind.RING))[0]["users"]
    with pytest.raises(QueueError, match="not a member"):
        await desk.queue.set_duty(SARI, True, team="literature")
    # Plain !duty on: every team again.
    assert await desk.queue.set_duty(SARI, True)
    assert await desk.queue.on_duty("membership") == [SARI, DEWI]
    # Off duty entirely, then on for one team: on duty, for that team alone of theirs.
    await desk.queue.set_duty(DEWI, False)
    assert await desk.queue.set_duty(DEWI, True, team="literature")
    assert DEWI in await desk.queue.on_duty("literature")
    assert DEWI not in await desk.queue.on_duty("membership")
    # Off duty for a team withdraws that team's offer (it moves on).
    offered = await chat(desk, "Dodi", "literature", "https://lib.example/x")
    assert await offered_to(desk, offered) == [DEWI]
    await desk.queue.set_duty(DEWI, False, team="literature")
    assert await offered_to(desk, offered) == [DEWI, AGUS]


async def test_transfer_to_a_team(desk: Desk) -> None:
    session = await chat(desk, "Ani", "other")
    await desk.queue.claim(session.id, SARI, "Sari")
    with pytest.raises(QueueError, match="Only the owner"):
        await desk.queue.transfer_to_team(session.id, AGUS, "literature")
    with pytest.raises(QueueError, match="no team"):
        await desk.queue.transfer_to_team(session.id, SARI, "astrology")
    clock_of(desk).advance(300)
    moved = await desk.queue.transfer_to_team(session.id, SARI, "literature")
    assert moved.status is Status.WAITING and moved.team == "literature"
    assert moved.queued_at == clock_of(desk).now and moved.owner is None
    ring = (await intents(desk, session, IntentKind.RING))[-1]
    assert ring["reason"] == "team_transfer" and ring["previous_owner"] == SARI
    assert ring["team_name"] == "Literature search"
    assert await offered_to(desk, session) == [DEWI]
    told = [m.body for m in await desk.messages_after(session.id, 0)]
    assert any("tim Literature search" in line for line in told)
    with pytest.raises(QueueError, match="already waits"):
        await desk.queue.transfer_to_team(session.id, SARI, "literature")
    # Its clocks start again: it overflows 120 s after the transfer.
    clock_of(desk).advance(119)
    await desk.tick()
    assert (await desk.get_session(session.id)).overflowed_at is None
    clock_of(desk).advance(1)
    await desk.tick()
    assert (await desk.get_session(session.id)).overflowed_at is not None
    # A supervisor may move a chat they do not own; an offer in between is withdrawn.
    await desk.queue.claim(session.id, AGUS, "Agus")
    back = await desk.queue.transfer_to_team(session.id, KEPALA, "membership")
    assert back.team == "membership" and back.overflowed_at is None


async def test_requeue_and_closing_end_offers(desk: Desk) -> None:
    session = await chat(desk, "Ani", "literature", "https://lib.example/x")
    assert await desk.queue.assignment.pending_offers() == {session.id: DEWI}
    await desk.end_session(session.id, by="visitor")
    assert await desk.queue.assignment.pending_offers() == {}
    other = await chat(desk, "Citra", "literature", "https://lib.example/x")
    await desk.queue.claim(other.id, AGUS, "Agus")
    await desk.queue.release(other.id, AGUS)
    # Released: offered again, not to the one who released it.
    offers = await desk.queue.assignment.pending_offers()
    assert offers[SessionID(other.id)] != AGUS
