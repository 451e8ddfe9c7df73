"""Cooperative coverage decided by the desk's clock, on SQLite and PostgreSQL (no homeserver):
when a chat rolls over to partner libraries and to which, what the visitor is told, the policy
note, a local librarian taking a chat back, and the partners' chats in the reports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from refdesk.config import parse_config
from refdesk.config_reader import ConfigError
from refdesk.embedded import embedded_config_data
from refdesk.hours_config import parse_hours
from rooms.cooperative import CooperativeRules, Partner, due
from rooms.desk import Desk, DeskRules
from rooms.hours import Interval, ServiceHours
from rooms.ids import RoomID, SessionID, UserID
from rooms.intents import Intent, IntentKind
from rooms.queue import QueueRules
from rooms.session import Origin, Session, SessionState, VisitorForm
from rooms.store import Database
from rooms.store import outbox as intent_rows

SARI, DEWI, KEPALA = (UserID(f"@{n}:hs") for n in ("sari", "dewi", "kepala"))
RINA = UserID("@rina:mitra.example:8448")  # a partner's librarian, on their own homeserver
YUSUF = UserID("@yusuf:kota.example")
MITRA = Partner("Perpustakaan Mitra", (RINA,), "Cannot renew loans; refer to email.")
# Covers Monday evenings only (WIB).
KOTA = Partner("Perpustakaan Kota", (YUSUF,), "", {0: (Interval(time(17), time(21)),)})
AFTER = 60


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 09:00 WIB, a Monday

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_desk(store: Database, clock: Clock, hours: ServiceHours | None = None) -> Desk:
    rules = DeskRules(
        topics=("literature",),
        queue=QueueRules(librarians=(SARI, DEWI), supervisors=(KEPALA,), escalate_after=600),
        cooperative=CooperativeRules((MITRA, KOTA), after=AFTER),
    )
    return Desk(store, rules, clock=clock, hours=hours)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def desk(store: Database, clock: Clock) -> AsyncIterator[Desk]:
    yield make_desk(store, clock)


async def waiting(desk: Desk, name: str = "Budi") -> Session:
    session, _ = await desk.start_session(VisitorForm(name, "b@example.org", "literature"))
    await desk.visitor_message(session, "halo", f"c-{name}")
    await desk.attach_room(session.id, RoomID(f"!{name}:hs"))
    return await desk.get_session(session.id)


async def intents(desk: Desk, session: Session, kind: IntentKind) -> list[Intent]:
    found = await desk.read(lambda tx: intent_rows.pending(tx, session.id))
    return [i for i in found if i.kind is kind]


async def desk_notices(desk: Desk, session: Session) -> list[str]:
    return [m.body for m in await desk.messages_after(session.id, 0) if m.origin is Origin.DESK]


async def test_a_chat_unanswered_here_rolls_over_after_the_delay(desk: Desk, clock: Clock) -> None:
    session = await waiting(desk)
    clock.advance(AFTER - 1)
    assert await desk.cooperative.tick() == []
    assert await intents(desk, session, IntentKind.PARTNER_RING) == []
    clock.advance(1)
    assert [s.id for s in await desk.cooperative.tick()] == [session.id]
    [ring] = await intents(desk, session, IntentKind.PARTNER_RING)
    # Only the partner covering now (Monday 09:00 WIB): not the evening one.
    assert ring.payload["users"] == [RINA]
    assert ring.payload["libraries"] == ["Perpustakaan Mitra"]
    assert ring.payload["waited"] == AFTER and ring.payload["closed_here"] is False
    # Rung once for this wait, however often the clock ticks.
    clock.advance(AFTER)
    assert await desk.cooperative.tick() == []
    await desk.tick()
    assert len(await intents(desk, session, IntentKind.PARTNER_RING)) == 1


async def test_the_partners_covering_the_hour_are_rung(desk: Desk, clock: Clock) -> None:
    clock.now = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # 18:00 WIB, Monday
    session = await waiting(desk)
    clock.advance(AFTER)
    await desk.cooperative.tick()
    [ring] = await intents(desk, session, IntentKind.PARTNER_RING)
    assert ring.payload["users"] == [RINA, YUSUF]
    assert ring.payload["libraries"] == ["Perpustakaan Mitra", "Perpustakaan Kota"]


async def test_a_chat_claimed_here_in_time_never_rolls_over(desk: Desk, clock: Clock) -> None:
    session = await waiting(desk)
    clock.advance(AFTER - 5)
    await desk.queue.claim(session.id, SARI, "Sari")
    clock.advance(AFTER * 3)
    await desk.tick()
    assert await intents(desk, session, IntentKind.PARTNER_RING) == []


def test_due_is_the_whole_rule() -> None:
    now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    form = VisitorForm("Budi", "b@example.org", "literature")
    base = Session(
        SessionID("s"),
        SessionState.OPEN,
        form=form,
        created_at=now,
        queued_at=now - timedelta(seconds=AFTER),
    )
    assert due(base, None, now, AFTER, served_here=True)
    early = Session(
        SessionID("s"),
        SessionState.OPEN,
        form=form,
        created_at=now,
        queued_at=now - timedelta(seconds=10),
    )
    assert not due(early, None, now, AFTER, served_here=True)
    assert due(early, None, now, AFTER, served_here=False)  # closed here: at once
    assert not due(base, base.queued_at, now, AFTER, served_here=True)  # rung for this wait
    # Back in the queue after it was rung: it may roll over again.
    assert due(base, now - timedelta(hours=1), now, AFTER, served_here=True)
    offline = Session(
        SessionID("s"),
        SessionState.OPEN,
        form=form,
        created_at=now,
        queued_at=base.queued_at,
        offline=True,
    )
    assert not due(offline, None, now, AFTER, served_here=False)
    served = Session(
        SessionID("s"),
        SessionState.OPEN,
        form=form,
        created_at=now,
        queued_at=base.queued_at,
        owner=SARI,
    )
    assert not due(served, None, now, AFTER, served_here=False)


async def test_closed_here_but_a_partner_covers_chats_are_live_and_rung_at_once(
    store: Database, clock: Clock
) -> None:
    closed_all_week = {"weekly": {day: "closed" for day in ("monday", "tuesday", "wednesday")}}
    closed_all_week["weekly"] |= {d: "closed" for d in ("thursday", "friday", "saturday")}
    closed_all_week["weekly"]["sunday"] = "closed"
    hours = ServiceHours(parse_hours(closed_all_week).schedule)
    desk = make_desk(store, clock, hours)
    available = await desk.availability()
    assert not available.open and available.covered and available.live
    session = await waiting(desk)
    assert not session.offline
    await desk.tick()  # no waiting: the desk cannot serve it
    [ring] = await intents(desk, session, IntentKind.PARTNER_RING)
    assert ring.payload["closed_here"] is True and ring.payload["users"] == [RINA]

    # Nobody covers (a desk without partners): the same chat is an offline message.
    alone = Desk(store, DeskRules(topics=("literature",)), clock=clock, hours=hours)
    assert not (await alone.availability()).live
    offline = await waiting(alone, "Ani")
    assert offline.offline
    await alone.tick()
    assert await intents(alone, offline, IntentKind.PARTNER_RING) == []


async def test_nobody_on_duty_here_rolls_over_at_once(desk: Desk, clock: Clock) -> None:
    for librarian in (SARI, DEWI):
        await desk.queue.set_duty(librarian, False)
    session = await waiting(desk)
    assert not session.offline
    await desk.cooperative.tick()
    [ring] = await intents(desk, session, IntentKind.PARTNER_RING)
    assert ring.payload["closed_here"] is True


async def test_a_partner_claims_the_visitor_hears_the_library_and_ours_take_it_back(
    desk: Desk, clock: Clock
) -> None:
    session = await waiting(desk)
    clock.advance(AFTER)
    await desk.cooperative.tick()
    # The partner's librarian answers in the room: that claims the chat.
    await desk.librarian_message(session, RINA, "Rina", "Halo, saya Rina.", remote_id="$r1")
    served = await desk.get_session(session.id)
    assert served.owner == RINA
    [claimed] = await intents(desk, session, IntentKind.CLAIMED)
    assert claimed.payload["library"] == "Perpustakaan Mitra"
    notices = await desk_notices(desk, session)
    assert "Rina dari Perpustakaan Mitra, perpustakaan mitra kami, kini membantu Anda." in notices
    # A partner cannot take it from a partner, nor a stranger; a local librarian can.
    assert await desk.cooperative.take_back(session.id, YUSUF, "Yusuf") is None
    assert await desk.cooperative.take_back(session.id, UserID("@x:hs"), "X") is None
    taken = await desk.cooperative.take_back(session.id, SARI, "Sari")
    assert taken is not None and taken.owner == SARI and taken.owner_name == "Sari"
    [back] = await intents(desk, session, IntentKind.TAKEN_BACK)
    assert back.payload["from_owner"] == RINA and back.payload["library"] == "Perpustakaan Mitra"
    assert "Sari dari Tanya Pustakawan kini membantu Anda." in await desk_notices(desk, session)
    # Served by one of ours now: nothing to take back (an ordinary claim race answers).
    assert await desk.cooperative.take_back(session.id, DEWI, "Dewi") is None


async def test_partners_cannot_use_the_desk_itself(desk: Desk) -> None:
    assert desk.queue.may_serve(RINA) and not desk.queue.is_librarian(RINA)
    with pytest.raises(Exception, match="Only librarians listed"):
        await desk.queue.set_duty(RINA, True)


async def test_the_policy_note_is_posted_once_per_chat_and_library(
    desk: Desk, clock: Clock
) -> None:
    session = await waiting(desk)
    assert await desk.cooperative.partner_joined(session.id, RINA)
    assert not await desk.cooperative.partner_joined(session.id, RINA)  # joined again
    assert not await desk.cooperative.partner_joined(session.id, SARI)  # not a partner
    assert not await desk.cooperative.partner_joined(session.id, YUSUF)  # no policy given
    [note] = await intents(desk, session, IntentKind.PARTNER_POLICY)
    assert note.payload == {
        "library": "Perpustakaan Mitra",
        "policy": "Cannot renew loans; refer to email.",
    }
    other = await waiting(desk, "Ani")
    assert await desk.cooperative.partner_joined(other.id, RINA)  # another chat: its own note


async def test_back_in_the_queue_it_rolls_over_again_after_the_delay(
    desk: Desk, clock: Clock
) -> None:
    session = await waiting(desk)
    clock.advance(AFTER)
    await desk.cooperative.tick()
    await desk.queue.claim(session.id, RINA, "Rina")
    clock.advance(30)
    await desk.queue.release(session.id, RINA)
    clock.advance(AFTER - 1)
    await desk.cooperative.tick()
    assert len(await intents(desk, session, IntentKind.PARTNER_RING)) == 1
    clock.advance(1)
    await desk.cooperative.tick()
    assert len(await intents(desk, session, IntentKind.PARTNER_RING)) == 2


async def test_a_new_process_keeps_the_ring_and_does_not_repeat_it(
    store: Database, clock: Clock
) -> None:
    first = make_desk(store, clock)
    session = await waiting(first)
    clock.advance(AFTER)
    await first.tick()
    # refdesk restarts before the ring was performed: the store has it, nothing is decided again.
    second = make_desk(store, clock)
    clock.advance(AFTER)
    await second.tick()
    [ring] = await intents(second, session, IntentKind.PARTNER_RING)
    assert ring.payload["users"] == [RINA]
    assert await second.pending_lanes() == [session.id]


async def test_reports_count_the_chats_partners_answered(desk: Desk, clock: Clock) -> None:
    ours, theirs = await waiting(desk, "Ani"), await waiting(desk, "Budi")
    await desk.librarian_message(ours, SARI, "Sari", "Halo", remote_id="$a")
    await desk.librarian_message(theirs, RINA, "Rina", "Halo", remote_id="$b")
    for session in (ours, theirs):
        await desk.end_session(session.id, by=SARI)
    report = await desk.reports.report(desk.reports.period("today"))
    assert report.partners == 1


def config_with(cooperative: Any) -> dict[str, Any]:
    data = embedded_config_data(
        widget_port=8080, homeserver_port=8008, appservice_port=29330, librarians=["@sari:hs"]
    )
    data["appservice"]["as_token"] = "a" * 40
    data["appservice"]["hs_token"] = "b" * 40
    data["cooperative"] = cooperative
    return data


def test_the_cooperative_config() -> None:
    config = parse_config(
        config_with(
            {
                "after": 90,
                "partners": [
                    {
                        "name": "Perpustakaan Mitra",
                        "librarians": ["@rina:mitra.example:8448"],
                        "hours": {"monday": "17:00-21:00", "sabtu": ["09:00-12:00"]},
                        "policy": "Cannot renew loans.",
                    }
                ],
            }
        )
    )
    rules = config.cooperative
    assert rules.after == 90
    [partner] = rules.partners
    assert partner.librarians == (RINA,) and partner.policy == "Cannot renew loans."
    assert partner.hours == {
        0: (Interval(time(17), time(21)),),
        5: (Interval(time(9), time(12)),),
    }
    assert rules.partner_of(RINA) is partner and rules.partner_of("@sari:hs") is None
    assert parse_config(config_with(None)).cooperative.partners == ()


@pytest.mark.parametrize(
    ("cooperative", "path", "problem"),
    [
        ({"after": -1}, "cooperative.after", "between 0 and 86400"),
        ({"partners": [{"librarians": ["@r:m.example"]}]}, "cooperative.partners[0].name", ""),
        ({"partners": [{"name": "M", "librarians": []}]}, "cooperative.partners[0].librarians", ""),
        (
            {"partners": [{"name": "M", "librarians": ["rina"]}]},
            "cooperative.partners[0].librarians[0]",
            "Matrix user ID",
        ),
        (
            {"partners": [{"name": "M", "librarians": ["@sari:hs"]}]},
            "cooperative.partners[0].librarians[0]",
            "this desk's own librarians",
        ),
        (
            {
                "partners": [
                    {"name": "M", "librarians": ["@r:m.example"]},
                    {"name": "K", "librarians": ["@r:m.example"]},
                ]
            },
            "cooperative.partners[1].librarians[0]",
            "already a librarian of 'M'",
        ),
        (
            {"partners": [{"name": "M", "librarians": ["@r:m.example"], "hours": {"x": "closed"}}]},
            "cooperative.partners[0].hours.x",
            "unknown weekday",
        ),
        (
            {"partners": [{"name": "M", "librarians": ["@r:m.example"], "colour": "red"}]},
            "cooperative.partners[0].colour",
            "not a known setting",
        ),
        ({"partner": []}, "cooperative.partner", "not a known setting"),
    ],
)
def test_cooperative_config_errors_name_the_key(cooperative: Any, path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config_with(cooperative))
    assert info.value.path == path
    assert problem in info.value.problem
