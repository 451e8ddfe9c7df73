"""Reports (issue 12): a month of chats seeded with a controlled clock on both stores, the
figures asserted exactly (hours-aware first replies, a missed chat, an offline message, a
transfer, tags), the chats behind each figure, CSV, signed links, charts."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from bridge.commands import Context, dispatch
from rooms import charts
from rooms.desk import Desk, DeskRules
from rooms.hours import Interval, Schedule, ServiceHours
from rooms.ids import UserID
from rooms.queue import QueueRules
from rooms.report_views import summary
from rooms.reporting import LINK, PASS, AccessDenied, ReportRules
from rooms.reports import (
    CSV_COLUMNS,
    Clocking,
    PeriodError,
    parse_period,
    parse_tags,
)
from rooms.session import Session
from rooms.store import Database
from rooms.teams import Route, Team, TeamRules

WIB = ZoneInfo("Asia/Jakarta")
ANI, BUDI, HEAD = UserID("@ani:lib"), UserID("@budi:lib"), UserID("@kepala:lib")
OFFICE = {d: (Interval(time(9), time(17)),) for d in range(5)}  # Mon–Fri 09–17


def wib(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=WIB).astimezone(UTC)


class Clock:
    def __init__(self) -> None:
        self.now = wib(1, 8)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Month:
    desk: Desk
    clock: Clock
    chats: dict[str, Session]


def make_desk(store: Database, clock: Clock, **rules: object) -> Desk:
    return Desk(
        store,
        DeskRules(
            topics=("literature", "membership"),
            queue=QueueRules(librarians=(ANI, BUDI), supervisors=(HEAD,)),
            reports=ReportRules(**rules),  # type: ignore[arg-type]
        ),
        clock=clock,
        hours=ServiceHours(Schedule(WIB, OFFICE, holidays_country=None)),
    )


async def ask(
    m: Month, key: str, at: datetime, topic: str = "literature", page: str | None = None
) -> Session:
    m.clock.now = at
    form = {"name": f"Visitor {key}", "email": f"{key}@example.org", "topic": topic}
    if page:
        form["page_url"] = page
    session, _ = await m.desk.start_session(m.desk.validate_form(form))
    await m.desk.visitor_message(session, f"Question {key}", f"c-{key}")
    m.chats[key] = session
    return session


async def reply(m: Month, key: str, who: UserID, at: datetime, text: str = "Jawaban") -> None:
    m.clock.now = at
    session = await m.desk.get_session(m.chats[key].id)
    name = "Ani" if who == ANI else "Budi"
    await m.desk.librarian_message(session, who, name, text, f"$e-{key}-{at.timestamp()}")


async def close(m: Month, key: str, at: datetime, by: str = "visitor") -> None:
    m.clock.now = at
    await m.desk.end_session(m.chats[key].id, by=by)


@pytest.fixture
async def month(store: Database) -> AsyncIterator[Month]:
    """November 2026 (and one October chat for the trend), desk open Mon–Fri 09–17 WIB."""
    clock = Clock()
    desk = make_desk(store, clock)
    m = Month(desk, clock, {})
    clock.now = wib(1, 8, month=10)
    await desk.queue.set_duty(ANI, True)
    await desk.queue.set_duty(BUDI, True)
    # October (the previous period): one chat answered in 60 s.
    await ask(m, "oct", wib(5, 10, month=10))
    await reply(m, "oct", ANI, wib(5, 10, 1, month=10))
    await close(m, "oct", wib(5, 10, 10, month=10))
    # A: Mon 2 Nov 10:00, Ani answers in 2 min, 20 minutes long, rated 5.
    await ask(m, "A", wib(2, 10), page="https://lib.example/katalog?q=secret")
    await reply(m, "A", ANI, wib(2, 10, 2))
    await close(m, "A", wib(2, 10, 20))
    await desk.give_feedback(m.chats["A"], {"rating": 5, "comment": "=Sangat membantu"})
    # B: Mon 16:58, answered by Budi on Tuesday 09:03: 2 + 3 open minutes (not 16 hours).
    await ask(m, "B", wib(2, 16, 58), topic="membership")
    await reply(m, "B", BUDI, wib(3, 9, 3))
    await close(m, "B", wib(3, 9, 10))
    await desk.give_feedback(m.chats["B"], {"rating": 3})
    # C: Wed 11:00, the visitor leaves after 4 minutes, nobody answered: missed.
    await ask(m, "C", wib(4, 11))
    await close(m, "C", wib(4, 11, 4))
    # D: Fri 14:00, Ani answers after 10 minutes, hands it to Budi, who closes at 14:40.
    await ask(m, "D", wib(6, 14))
    await reply(m, "D", ANI, wib(6, 14, 10))
    clock.now = wib(6, 14, 15)
    await desk.queue.transfer(m.chats["D"].id, ANI, BUDI, "Budi")
    await reply(m, "D", BUDI, wib(6, 14, 20))
    await desk.reports.tag(m.chats["D"], BUDI, "katalog read 3")
    await close(m, "D", wib(6, 14, 40), by=BUDI)
    # E: Saturday 10:00, closed: an offline message, answered Monday 09:30 (30 open minutes).
    await ask(m, "E", wib(7, 10))
    await reply(m, "E", BUDI, wib(9, 9, 30))
    yield m


async def test_a_month_of_chats_gives_exact_figures(month: Month) -> None:
    m = month
    m.clock.now = wib(20, 12)
    period = m.desk.reports.period("2026-11")
    report = await m.desk.reports.report(period)
    f = report.figures
    assert (f.started, f.chats, f.answered, f.missed, f.waiting) == (5, 4, 3, 1, 0)
    assert (f.offline, f.offline_answered, f.offline_answer_median) == (1, 1, 1800)
    # Hours-aware waits: A 120 s, B 300 s (2 minutes before closing, 3 after opening), D 600 s.
    assert (f.wait_median, f.wait_p90) == (300, 600)
    assert f.within_target == pytest.approx(2 / 3)
    assert f.duration_median == 20 * 60  # A 20 min, B 12 open minutes (not 16 h), D 40 min
    assert (f.rating_average, f.rating_count) == (4.0, 2)
    assert report.wait_distribution == [0, 1, 1, 1, 0, 0]
    assert report.ratings == [0, 0, 1, 0, 1]
    # Trends against October: one chat, answered in a minute.
    assert (report.previous.label, report.before.chats, report.before.wait_median) == (
        "2026-10",
        1,
        60,
    )
    assert report.trend("chats") == 3 and report.trend("wait_median") == 240
    # When visitors ask (desk time): Mon 10 h and 16 h, Wed 11 h, Fri 14 h, Sat 10 h.
    busy = {(d, h): n for d, row in enumerate(report.heatmap) for h, n in enumerate(row) if n}
    assert busy == {(0, 10): 1, (0, 16): 1, (2, 11): 1, (4, 14): 1, (5, 10): 1}
    assert report.by_topic == [("literature", 4), ("membership", 1)]
    assert report.by_page == [("lib.example/katalog", 1)]  # never the query
    days = {day.day: counts for day, *counts in report.per_day}
    assert len(days) == 30 and days[2] == [2, 0, 0] and days[4] == [0, 1, 0]
    assert days[7] == [0, 0, 1]
    people = {p.user_id: p for p in report.librarians}
    ani, budi = people[ANI], people[BUDI]
    assert (ani.served, ani.first_replies, ani.first_reply_median) == (1, 2, 360)
    assert (ani.rating_average, ani.rating_count, ani.transfers_out, ani.transfers_in) == (
        5.0,
        1,
        1,
        0,
    )
    assert (budi.served, budi.first_replies, budi.first_reply_median) == (3, 1, 300)
    assert (budi.rating_average, budi.transfers_in, budi.duration_median) == (3.0, 1, 26 * 60)
    assert report.tags == [("katalog", 1)] and report.read_scale == [0, 0, 1, 0, 0, 0]
    assert report.untagged == 3  # A, B and the offline answer E
    assert [c.text for c in report.comments] == ["=Sangat membantu"]


async def test_the_chats_behind_each_figure(month: Month) -> None:
    m = month
    period = m.desk.reports.period("2026-11")

    async def keys(figure: str, value: str = "") -> set[str]:
        ids = {c.session_id for c in await m.desk.reports.chats(period, figure, value)}
        return {k for k, s in m.chats.items() if s.id in ids}

    assert await keys("started") == {"A", "B", "C", "D", "E"}
    assert await keys("missed") == {"C"}
    assert await keys("answered") == {"A", "B", "D"}
    assert await keys("within_target") == {"A", "B"}
    assert await keys("over_target") == {"D"}
    assert await keys("offline") == {"E"}
    assert await keys("librarian", BUDI) == {"B", "D", "E"}
    assert await keys("transferred") == {"D"}
    assert await keys("rating", "3") == {"B"}
    assert await keys("tag", "katalog") == {"D"} == await keys("read", "3")
    assert await keys("hour", "0-16") == {"B"}
    assert await keys("day", "2026-11-04") == {"C"}
    assert await keys("wait", "2") == {"B"}  # the 2–5 minute bucket
    assert await keys("topic", "membership") == {"B"}
    with pytest.raises(PeriodError):
        await m.desk.reports.chats(period, "nonsense")


async def test_csv_has_one_documented_row_per_chat(month: Month) -> None:
    m = month
    text = await m.desk.reports.csv(m.desk.reports.period("2026-11"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    by_id = {row["chat_id"]: row for row in rows}
    assert len(rows) == 5
    b = by_id[m.chats["B"].id]
    assert (b["started"], b["weekday"], b["hour"]) == ("2026-11-02T16:58:00+07:00", "Mon", "16")
    assert (b["first_reply_seconds"], b["within_target"], b["outcome"]) == (
        "300",
        "yes",
        "answered",
    )
    assert (b["librarian"], b["rating"], b["topic"]) == (BUDI, "3", "membership")
    c = by_id[m.chats["C"].id]
    assert (c["outcome"], c["first_reply_seconds"], c["within_target"]) == ("missed", "", "")
    d = by_id[m.chats["D"].id]
    assert (d["transfers"], d["tags"], d["read_scale"], d["first_reply_by"]) == (
        "1",
        "katalog",
        "3",
        ANI,
    )
    assert by_id[m.chats["E"].id]["kind"] == "offline"
    # A comment that a spreadsheet would run as a formula is quoted.
    assert by_id[m.chats["A"].id]["comment"] == "'=Sangat membantu"
    assert "Visitor" not in text and "example.org" not in text  # no name, no address


async def test_a_purged_chat_still_counts(month: Month) -> None:
    """Retention removes what a chat said, not what the reports count."""
    m = month
    desk = Desk(
        m.desk.db,
        DeskRules(topics=("literature", "membership"), queue=m.desk.rules.queue),
        clock=m.clock,
        hours=m.desk.hours,
    )
    await m.desk.db.write(
        lambda tx: tx.execute("UPDATE intents SET done_at = :at", {"at": wib(1, 1)})
    )
    m.clock.now = wib(1, 12, month=12) + timedelta(days=200)
    assert (await desk.purger.run()).chats >= 5
    m.clock.now = wib(20, 12)
    report = await m.desk.reports.report(m.desk.reports.period("2026-11"))
    assert (report.figures.answered, report.figures.missed, report.figures.wait_median) == (
        3,
        1,
        300,
    )
    assert report.tags == [("katalog", 1)]


def test_periods_in_the_desk_time_zone() -> None:
    now = wib(18, 10)  # a Wednesday
    week = parse_period("week", now, WIB)
    assert (week.start, week.end) == (wib(16, 0), wib(23, 0))
    assert parse_period("", now, WIB) == week
    assert parse_period("last-week", now, WIB).start == wib(9, 0)
    assert parse_period("today", now, WIB).start == wib(18, 0)
    month_ = parse_period("month", now, WIB)
    assert (month_.label, month_.start, month_.end) == ("2026-11", wib(1, 0), wib(1, 0, month=12))
    assert month_.previous(WIB).label == "2026-10"
    assert parse_period("last-month", now, WIB).label == "2026-10"
    span = parse_period("2026-11-02..2026-11-04", now, WIB)
    assert (span.start, span.end) == (wib(2, 0), wib(5, 0))
    assert span.previous(WIB).start == wib(30, 0, month=10)
    for bad in (
        "2026-13",
        "2026-11-05..2026-11-01",
        "fortnight",
        "2026-02-30",
        "2020-01-01..2026-01-01",
    ):
        with pytest.raises(PeriodError):
            parse_period(bad, now, WIB)


def test_tags_and_the_read_scale() -> None:
    assert parse_tags("katalog read 3") == (["katalog"], 3)
    assert parse_tags("#Katalog, e-journal R2") == (["katalog", "e-journal"], 2)
    assert parse_tags("read:6") == ([], 6)
    for bad in ("read 7", "kata<b>", "read 0"):
        with pytest.raises(ValueError):
            parse_tags(bad)


async def test_tags_must_be_the_desks_categories_when_listed(store: Database) -> None:
    clock = Clock()
    desk = make_desk(store, clock, categories=("katalog", "keanggotaan"))
    m = Month(desk, clock, {})
    session = await ask(m, "x", wib(2, 10))
    with pytest.raises(ValueError, match="keanggotaan"):
        await desk.reports.tag(session, ANI, "sejarah")
    assert await desk.reports.tag(session, ANI, "keanggotaan read 2") == (["keanggotaan"], 2)
    assert await desk.reports.tag(session, ANI, "katalog") == (["katalog", "keanggotaan"], 2)
    assert await desk.reports.untag(session, "katalog")
    assert await desk.reports.tags_of(session) == (["keanggotaan"], 2)


async def test_dashboard_links_are_personal_signed_and_short_lived(store: Database) -> None:
    clock = Clock()
    desk = make_desk(store, clock, link_minutes=15, pass_hours=8)
    reports = desk.reports
    link, expires = await reports.sign(HEAD)
    assert expires == clock.now + timedelta(minutes=15)
    assert await reports.check(link, LINK) == HEAD
    with pytest.raises(AccessDenied):
        await reports.check(link, PASS)  # a link is not a pass
    body, _, mac = link.partition(".")
    forged_body = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for forged in (f"{forged_body}.{mac}", f"{body}.{mac[:-1]}x", "", "x" * 2000, "ü.ü"):
        with pytest.raises(AccessDenied, match="not valid"):
            await reports.check(forged, LINK)
    clock.now += timedelta(minutes=16)
    with pytest.raises(AccessDenied, match="expired"):
        await reports.check(link, LINK)
    # Only viewers (supervisors by default): a librarian's own link is refused.
    mine, _ = await reports.sign(ANI)
    with pytest.raises(AccessDenied, match="may not"):
        await reports.check(mine, LINK)
    pass_, _ = await reports.sign(HEAD, PASS)
    clock.now += timedelta(hours=7)
    assert await reports.check(pass_, PASS) == HEAD
    # The secret is the store's: another desk on the same store accepts it, another store not.
    again = make_desk(store, clock)
    assert await again.reports.check(pass_, PASS) == HEAD
    assert reports.is_viewer(HEAD) and not reports.is_viewer(ANI)
    named = make_desk(store, clock, viewers=(ANI,))
    assert named.reports.is_viewer(ANI) and not named.reports.is_viewer(HEAD)


async def test_summary_and_chart_read_well(month: Month) -> None:
    m = month
    report = await m.desk.reports.report(m.desk.reports.period("2026-11"))
    text, html = summary(report, {"literature": "Penelusuran literatur"}, "Link follows.")
    assert "Chats: 4 (▲ 3) · answered 3 · missed 1" in text
    assert "First reply: median 5 min 00 s (▲ 4 min 00 s) · p90 10 min 00 s" in text
    assert "within 5 min: 67%" in text
    assert "• Budi: 3 · 5 min 00 s · 26 min 00 s · 3.0 (1) · 0/1" in text
    assert "Penelusuran literatur 4" in text
    assert "<table>" in html and "<td>Budi</td>" in html
    png = charts.summary_png(report)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] >= 800 and image.size[1] > image.size[0]
    svg = charts.svg(lambda ax: charts.heatmap(ax, report))
    assert svg.startswith("<svg") and "Mon" in svg and "http://" not in svg.split("xmlns", 1)[0]


def test_waits_count_only_open_hours() -> None:
    hours = ServiceHours(Schedule(WIB, OFFICE, holidays_country=None))
    clocking = Clocking(hours.open_seconds)
    assert clocking.between(wib(2, 16, 58), wib(3, 9, 3)) == 300
    assert clocking.between(wib(6, 16, 0), wib(9, 9, 0)) == 3600  # over a weekend
    assert clocking.between(wib(7, 10), wib(7, 12)) == 0  # Saturday: closed
    assert Clocking(None).between(wib(2, 16, 58), wib(3, 9, 3)) == 16 * 3600 + 5 * 60


def command_context(desk: Desk, sender: UserID, session: Session | None = None) -> Context:
    async def names(user: str) -> str:
        return user

    return Context(
        desk=desk,
        client=None,  # type: ignore[arg-type]  # these commands never call the homeserver
        room_id="!desk:lib",
        sender=sender,
        sender_name=sender[1:].split(":")[0].capitalize(),
        event_id="$e",
        session=session,
        names=names,
        timezone="Asia/Jakarta",
    )


async def test_tag_commands_and_the_ask_at_close(store: Database) -> None:
    clock = Clock()
    desk = make_desk(store, clock, categories=("katalog", "ejurnal"), ask_at_close=True)
    m = Month(desk, clock, {})
    await desk.queue.set_duty(ANI, True)
    session = await ask(m, "t", wib(2, 10))
    await reply(m, "t", ANI, wib(2, 10, 1))
    room = await desk.get_session(session.id)
    ani = command_context(desk, ANI, room)
    stranger = command_context(desk, UserID("@stranger:lib"), room)
    assert await dispatch(stranger, "!tag katalog") == "Only the desk's librarians can tag chats."
    refused = await dispatch(ani, "!tag sejarah")
    assert refused is not None and "Unknown category sejarah" in refused
    assert "Categories: katalog, ejurnal." in refused
    # The first !close of an untagged chat asks; the chat stays open.
    asked = await dispatch(ani, "!close")
    assert asked is not None and asked.startswith("Before it closes: tag this chat")
    assert (await desk.get_session(session.id)).is_open
    assert await dispatch(ani, "!tag ejurnal R4") == "Tagged: ejurnal · READ 4."
    assert await dispatch(ani, "!tag") == (
        "Tags: ejurnal · READ 4. Usage: !tag CATEGORY … [read 1–6], e.g. !tag katalog read 2."
        " Categories: katalog, ejurnal."
    )
    assert await dispatch(ani, "!close") is None  # tagged: it closes at once
    assert not (await desk.get_session(session.id)).is_open
    # A chat the visitor ended: tagged from the desk room, as Ani's last chat.
    other = await ask(m, "u", wib(2, 11))
    await reply(m, "u", ANI, wib(2, 11, 1))
    await close(m, "u", wib(2, 11, 5))
    in_desk = command_context(desk, ANI)
    assert await dispatch(in_desk, "!tag katalog read 1") == (
        "Tagged (your last chat, Visitor u): katalog · READ 1."
    )
    assert await desk.reports.tags_of(other) == (["katalog"], 1)
    # A second !close closes an untagged chat: the ask comes once.
    third = await ask(m, "v", wib(2, 12))
    await reply(m, "v", ANI, wib(2, 12, 1))
    ctx = command_context(desk, ANI, await desk.get_session(third.id))
    assert (await dispatch(ctx, "!close") or "").startswith("Before it closes")
    assert await dispatch(ctx, "!close") is None
    assert not (await desk.get_session(third.id)).is_open


async def test_report_command_refuses_non_viewers_and_bad_periods(store: Database) -> None:
    clock = Clock()
    desk = make_desk(store, clock)
    assert (await dispatch(command_context(desk, ANI), "!report")).startswith(  # type: ignore[union-attr]
        "Only the desk's report viewers"
    )
    head = command_context(desk, HEAD)
    bad = await dispatch(head, "!report 2026-13")
    assert bad is not None and "no such month" in bad and "Periods:" in bad
    assert await dispatch(head, "!report month") is None  # the report comes as an intent
    pending = await store.fetchall("SELECT kind, payload FROM intents WHERE kind = 'report'")
    assert len(pending) == 1 and '"period": "2026-11"' in pending[0]["payload"].replace(
        '":"', '": "'
    )


async def test_reports_count_by_team_against_its_own_target(store: Database) -> None:
    """Issue 15's teams in the reports: a membership chat routed to its team is counted there,
    against the team's 3-minute target, behind its figure, and in the CSV."""
    clock = Clock()
    team = Team("keanggotaan", "Keanggotaan", (BUDI,), first_response_target=180)
    rules = TeamRules(teams=(team,), routes=(Route("keanggotaan", topics=("membership",)),))
    desk = Desk(
        store,
        DeskRules(
            topics=("literature", "membership"),
            queue=QueueRules(librarians=(ANI, BUDI), supervisors=(HEAD,), teams=rules),
        ),
        clock=clock,
        hours=ServiceHours(Schedule(WIB, OFFICE, holidays_country=None)),
    )
    m = Month(desk, clock, {})
    clock.now = wib(1, 8)
    await desk.queue.set_duty(ANI, True)
    await desk.queue.set_duty(BUDI, True)
    await ask(m, "k", wib(2, 10), topic="membership")
    await reply(m, "k", BUDI, wib(2, 10, 4))  # 240 s: within the desk's 5 min, not the team's 3
    await ask(m, "l", wib(2, 11))
    await reply(m, "l", ANI, wib(2, 11, 1))
    report = await desk.reports.report(desk.reports.period("2026-11"))
    assert [(t.team, t.name, t.chats, t.answered, t.wait_median, t.within_target) for t in
            report.teams] == [("keanggotaan", "Keanggotaan", 1, 1, 240, 0.0)]  # fmt: skip
    assert report.figures.within_target == 1.0  # the desk's own target: both within
    text, _ = summary(report, {}, "")
    assert "Teams: Keanggotaan 1 (missed 0, first reply 4 min 00 s, 0% within 3 min)" in text
    behind = await desk.reports.chats(desk.reports.period("2026-11"), "team", "keanggotaan")
    assert [c.session_id for c in behind] == [m.chats["k"].id]
    rows = list(csv.DictReader(io.StringIO(await desk.reports.csv(desk.reports.period("2026-11")))))
    assert {r["chat_id"]: r["team"] for r in rows} == {
        m.chats["k"].id: "keanggotaan",
        m.chats["l"].id: "",
    }
