"""Reports: the figures the head of service reads, computed from the facts the store keeps.

Pure: the store gathers :class:`ChatFacts` for a period (rooms/store/reports.py), this module
turns them into a :class:`Report`, the list of chats behind any figure (:func:`select`), and CSV
rows. Times are UTC in, the desk's time zone for days and hours. What each figure means is
written in docs/REPORTS.md; the definitions here are the reference.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from rooms.ids import SessionID, UserID

READ_SCALE = range(1, 7)  # the Reference Effort Assessment Data scale
RATINGS = range(1, 6)
# The distribution of first-reply waits: upper bounds in seconds, included (a wait of exactly
# the 5-minute target is within it); the last is open-ended.
WAIT_BUCKETS: tuple[tuple[str, float], ...] = (
    ("≤ 1 min", 60),
    ("1–2 min", 120),
    ("2–5 min", 300),
    ("5–10 min", 600),
    ("10–30 min", 1800),
    ("> 30 min", math.inf),
)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_TAG = re.compile(r"^[\w][\w.-]{0,39}$")


class PeriodError(ValueError):
    """A period the reports cannot read; the message says what is accepted."""


@dataclass(frozen=True)
class ChatFacts:
    """One chat as the reports see it: no name, email or message."""

    session_id: SessionID
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    offline: bool
    topic: str
    language: str
    page_url: str | None
    owner: UserID | None
    owner_name: str | None
    first_reply_at: datetime | None
    first_reply_by: UserID | None
    rating: int | None = None
    comment: str | None = None
    rated_librarian: str | None = None
    tags: tuple[str, ...] = ()
    read_scale: int | None = None
    verification: str | None = None
    transfers: tuple[tuple[str | None, str], ...] = ()
    purged: bool = False
    room_id: str | None = None
    team: str | None = None  # the team it was routed to (desk.teams), if any

    @property
    def answered(self) -> bool:
        return self.first_reply_at is not None

    @property
    def missed(self) -> bool:
        """A live chat the visitor left before any librarian replied."""
        return not self.offline and not self.answered and self.closed_at is not None

    @property
    def page(self) -> str | None:
        """Where the visitor started: host and path, never the query (it may hold anything)."""
        if not self.page_url:
            return None
        parts = urlsplit(self.page_url)
        return (parts.netloc + (parts.path or "/")) if parts.netloc else None


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC, with the words that name it."""

    start: datetime
    end: datetime
    label: str

    def previous(self, tz: ZoneInfo) -> Period:
        """The period just before, of the same kind (the month before a month)."""
        if re.fullmatch(r"\d{4}-\d{2}", self.label):
            first = self.start.astimezone(tz).date().replace(day=1) - timedelta(days=1)
            return month_period(first.year, first.month, tz)
        length = self.end - self.start
        start = self.start - length
        return Period(start, self.start, f"the {_days(length)} before")

    def days(self, tz: ZoneInfo) -> list[date]:
        first = self.start.astimezone(tz).date()
        last = (self.end - timedelta(microseconds=1)).astimezone(tz).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _days(length: timedelta) -> str:
    days = round(length / timedelta(days=1))
    return "day" if days == 1 else f"{days} days"


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def month_period(year: int, month: int, tz: ZoneInfo) -> Period:
    start = date(year, month, 1)
    end = date(year + month // 12, month % 12 + 1, 1)
    return Period(_midnight(start, tz), _midnight(end, tz), f"{year:04d}-{month:02d}")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"{text!r} is not a date (YYYY-MM-DD)") from None


PERIOD_HELP = (
    "today, yesterday, week, last-week, month, last-month, YYYY-MM, YYYY-MM-DD or FROM..TO"
)


def parse_period(text: str, now: datetime, tz: ZoneInfo) -> Period:
    """``today``, ``yesterday``, ``week`` (this week so far, from Monday), ``last-week``,
    ``month``, ``last-month``, ``YYYY-MM``, ``YYYY-MM-DD``, ``FROM..TO`` (days, both included);
    empty means ``week``."""
    word = text.strip().lower() or "week"
    today = now.astimezone(tz).date()
    if word in ("today", "yesterday"):
        day = today if word == "today" else today - timedelta(days=1)
        return Period(_midnight(day, tz), _midnight(day + timedelta(days=1), tz), day.isoformat())
    if word in ("week", "last-week"):
        monday = today - timedelta(days=today.weekday())
        if word == "last-week":
            monday -= timedelta(days=7)
        end = monday + timedelta(days=7)
        label = f"{monday.isoformat()}..{(end - timedelta(days=1)).isoformat()}"
        return Period(_midnight(monday, tz), _midnight(end, tz), label)
    if word in ("month", "last-month"):
        first = today.replace(day=1)
        if word == "last-month":
            first = (first - timedelta(days=1)).replace(day=1)
        return month_period(first.year, first.month, tz)
    if re.fullmatch(r"\d{4}-\d{2}", word):
        year, month = int(word[:4]), int(word[5:])
        if not 1 <= month <= 12:
            raise PeriodError(f"{word!r}: no such month")
        return month_period(year, month, tz)
    if ".." in word:
        first_text, _, last_text = word.partition("..")
        first, last = _day(first_text), _day(last_text)
        if last < first:
            raise PeriodError(f"{word!r}: the end is before the start")
        if (last - first).days > 400:
            raise PeriodError(f"{word!r}: at most 400 days at a time")
        return Period(_midnight(first, tz), _midnight(last + timedelta(days=1), tz), word)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", word):
        day = _day(word)
        return Period(_midnight(day, tz), _midnight(day + timedelta(days=1), tz), word)
    raise PeriodError(f"Unknown period {text.strip()[:40]!r}: use {PERIOD_HELP}.")


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest rank: the smallest value with at least ``share`` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def average(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Figures:
    """The key figures of a period (what a trend compares)."""

    started: int = 0
    chats: int = 0  # live chats (not offline messages)
    answered: int = 0
    missed: int = 0
    waiting: int = 0  # live chats still open without a reply
    offline: int = 0
    offline_answered: int = 0
    wait_median: float | None = None
    wait_p90: float | None = None
    within_target: float | None = None  # share of answered live chats
    offline_answer_median: float | None = None
    duration_median: float | None = None
    rating_average: float | None = None
    rating_count: int = 0


@dataclass(frozen=True)
class LibrarianRow:
    user_id: str
    name: str
    served: int
    first_replies: int
    first_reply_median: float | None
    duration_median: float | None
    rating_average: float | None
    rating_count: int
    transfers_out: int
    transfers_in: int


@dataclass(frozen=True)
class TeamRow:
    """One team's chats: how many, answered, missed, and first replies against its target."""

    team: str
    name: str
    target: int
    chats: int
    answered: int
    missed: int
    wait_median: float | None
    within_target: float | None


@dataclass(frozen=True)
class Comment:
    session_id: SessionID
    at: datetime
    rating: int
    librarian: str
    text: str


@dataclass(frozen=True)
class Report:
    period: Period
    previous: Period
    timezone: str
    target: int
    figures: Figures
    before: Figures
    per_day: list[tuple[date, int, int, int]]  # (day, answered, missed, offline)
    wait_distribution: list[int]  # counts per WAIT_BUCKETS
    heatmap: list[list[int]]  # [weekday][hour] chats started, desk time
    by_topic: list[tuple[str, int]]
    by_language: list[tuple[str, int]]
    by_page: list[tuple[str, int]]
    ratings: list[int]  # counts of 1..5
    comments: list[Comment]
    librarians: list[LibrarianRow]
    tags: list[tuple[str, int]]
    read_scale: list[int]  # counts of 1..6
    untagged: int
    verification: list[tuple[str, int]]
    partners: int = 0
    names: dict[str, str] = field(default_factory=dict)
    teams: list[TeamRow] = field(default_factory=list)

    def trend(self, name: str) -> float | None:
        """This period's figure minus the previous period's (None if either is unknown)."""
        now, then = getattr(self.figures, name), getattr(self.before, name)
        if now is None or then is None:
            return None
        return float(now - then)


class Clocking:
    """How long a visitor waited: only the desk's open hours count (a question left at closing
    time and answered at opening waited minutes, not a night)."""

    def __init__(self, open_seconds: Callable[[datetime, datetime], float] | None) -> None:
        self._open_seconds = open_seconds

    def between(self, start: datetime, end: datetime) -> float:
        if self._open_seconds is None:
            return max(0.0, (end - start).total_seconds())
        return self._open_seconds(start, end)

    def wait(self, chat: ChatFacts) -> float | None:
        if chat.first_reply_at is None:
            return None
        return self.between(chat.created_at, chat.first_reply_at)

    def duration(self, chat: ChatFacts) -> float | None:
        """An answered live chat's length, open hours only (one left open overnight counts
        the minutes before closing and after opening)."""
        if chat.offline or chat.closed_at is None or not chat.answered:
            return None
        return self.between(chat.created_at, chat.closed_at)


def figures(chats: Iterable[ChatFacts], clocking: Clocking, target: int) -> Figures:
    chats = list(chats)
    live = [c for c in chats if not c.offline]
    offline = [c for c in chats if c.offline]
    waits = [w for c in live if (w := clocking.wait(c)) is not None]
    offline_waits = [w for c in offline if (w := clocking.wait(c)) is not None]
    durations = [d for c in live if (d := clocking.duration(c)) is not None]
    ratings = [c.rating for c in chats if c.rating is not None]
    return Figures(
        started=len(chats),
        chats=len(live),
        answered=len(waits),
        missed=sum(c.missed for c in live),
        waiting=sum(1 for c in live if not c.answered and c.closed_at is None),
        offline=len(offline),
        offline_answered=len(offline_waits),
        wait_median=median(waits),
        wait_p90=percentile(waits, 0.9),
        within_target=(sum(w <= target for w in waits) / len(waits)) if waits else None,
        offline_answer_median=median(offline_waits),
        duration_median=median(durations),
        rating_average=average(ratings),
        rating_count=len(ratings),
    )


def _bucket(wait: float) -> int:
    return next(i for i, (_, bound) in enumerate(WAIT_BUCKETS) if wait <= bound)


def _ranked(counter: Counter[str], limit: int | None = None) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:limit]


def build(
    period: Period,
    chats: Sequence[ChatFacts],
    before: Sequence[ChatFacts],
    *,
    clocking: Clocking,
    target: int,
    timezone: str,
    names: dict[str, str] | None = None,
    partner_of: Callable[[str], bool] | None = None,
    teams: dict[str, tuple[str, int]] | None = None,
) -> Report:
    """The report of ``period`` from its chats; ``before``: the previous period's, for trends."""
    tz = ZoneInfo(timezone)
    known = dict(names or {})
    for chat in chats:
        if chat.owner and chat.owner_name:
            known.setdefault(chat.owner, chat.owner_name)
    per_day = {day: [0, 0, 0] for day in period.days(tz)}
    heatmap = [[0] * 24 for _ in WEEKDAYS]
    wait_distribution = [0] * len(WAIT_BUCKETS)
    for chat in chats:
        local = chat.created_at.astimezone(tz)
        heatmap[local.weekday()][local.hour] += 1
        row = per_day.setdefault(local.date(), [0, 0, 0])
        if chat.offline:
            row[2] += 1
        elif chat.answered:
            row[0] += 1
        elif chat.missed:
            row[1] += 1
        wait = None if chat.offline else clocking.wait(chat)
        if wait is not None:
            wait_distribution[_bucket(wait)] += 1
    ratings = [0] * len(RATINGS)
    comments = []
    for chat in chats:
        if chat.rating is not None:
            ratings[chat.rating - 1] += 1
            if chat.comment:
                librarian = chat.rated_librarian or ""
                comments.append(
                    Comment(
                        chat.session_id,
                        chat.created_at,
                        chat.rating,
                        known.get(librarian, librarian),
                        chat.comment,
                    )
                )
    read_scale = [0] * len(READ_SCALE)
    for chat in chats:
        if chat.read_scale is not None and chat.read_scale in READ_SCALE:
            read_scale[chat.read_scale - 1] += 1
    return Report(
        period=period,
        previous=period.previous(tz),
        timezone=timezone,
        target=target,
        figures=figures(chats, clocking, target),
        before=figures(before, clocking, target),
        per_day=[(day, *counts) for day, counts in sorted(per_day.items())],  # type: ignore[misc]
        wait_distribution=wait_distribution,
        heatmap=heatmap,
        by_topic=_ranked(Counter(c.topic for c in chats)),
        by_language=_ranked(Counter(c.language for c in chats)),
        by_page=_ranked(Counter(c.page for c in chats if c.page), 10),
        ratings=ratings,
        comments=comments,
        librarians=_librarians(chats, clocking, known),
        tags=_ranked(Counter(tag for c in chats for tag in c.tags)),
        read_scale=read_scale,
        untagged=sum(1 for c in chats if c.answered and not c.tags and c.read_scale is None),
        verification=_ranked(Counter(c.verification for c in chats if c.verification)),
        partners=sum(1 for c in chats if partner_of and c.owner and partner_of(c.owner)),
        names=known,
        teams=_teams(chats, clocking, target, teams or {}),
    )


def _teams(
    chats: Sequence[ChatFacts],
    clocking: Clocking,
    target: int,
    teams: dict[str, tuple[str, int]],
) -> list[TeamRow]:
    """Per team (``teams``: id → name and first-reply target), its live chats of the period."""
    rows = []
    for team in sorted({c.team for c in chats if c.team}):
        name, own_target = teams.get(team, (team, target))
        live = [c for c in chats if c.team == team and not c.offline]
        waits = [w for c in live if (w := clocking.wait(c)) is not None]
        rows.append(
            TeamRow(
                team=team,
                name=name,
                target=own_target,
                chats=len(live),
                answered=len(waits),
                missed=sum(c.missed for c in live),
                wait_median=median(waits),
                within_target=(sum(w <= own_target for w in waits) / len(waits)) if waits else None,
            )
        )
    return rows


def _librarians(
    chats: Sequence[ChatFacts], clocking: Clocking, names: dict[str, str]
) -> list[LibrarianRow]:
    people: set[str] = set()
    for chat in chats:
        people.update(p for p in (chat.owner, chat.first_reply_by, chat.rated_librarian) if p)
        for from_owner, to_owner in chat.transfers:
            people.update(p for p in (from_owner, to_owner) if p)
    rows = []
    for person in people:
        served = [c for c in chats if c.owner == person and c.answered]
        waits = [
            w
            for c in chats
            if c.first_reply_by == person and not c.offline and (w := clocking.wait(c)) is not None
        ]
        durations = [d for c in served if (d := clocking.duration(c)) is not None]
        ratings = [c.rating for c in chats if c.rated_librarian == person and c.rating]
        rows.append(
            LibrarianRow(
                user_id=person,
                name=names.get(person, person),
                served=len(served),
                first_replies=len(waits),
                first_reply_median=median(waits),
                duration_median=median(durations),
                rating_average=average(ratings),
                rating_count=len(ratings),
                transfers_out=sum(f == person for c in chats for f, _ in c.transfers),
                transfers_in=sum(t == person for c in chats for _, t in c.transfers),
            )
        )
    return sorted(rows, key=lambda r: (-r.served, r.name.lower()))


# drill-down: the chats behind a figure

FILTERS = (
    "started answered missed waiting offline offline_answered within_target over_target rated "
    "commented transferred untagged topic language page librarian rating tag read verification "
    "hour day wait team partner"
).split()


def select(
    chats: Iterable[ChatFacts],
    name: str,
    value: str,
    *,
    clocking: Clocking,
    target: int,
    timezone: str,
    partner_of: Callable[[str], bool] | None = None,
) -> list[ChatFacts]:
    """The chats behind one figure: ``name`` is one of :data:`FILTERS`, ``value`` its argument
    where it takes one (a topic, a librarian's id, a rating, ``weekday-hour`` such as ``0-9``,
    a day ``YYYY-MM-DD``, a wait bucket's index)."""
    if name not in FILTERS:
        raise PeriodError(f"unknown figure {name[:40]!r}")
    tz = ZoneInfo(timezone)

    def wait(c: ChatFacts) -> float | None:
        return None if c.offline else clocking.wait(c)

    def keep(c: ChatFacts) -> bool:
        match name:
            case "started":
                return True
            case "answered":
                return not c.offline and c.answered
            case "missed":
                return c.missed
            case "waiting":
                return not c.offline and not c.answered and c.closed_at is None
            case "offline":
                return c.offline
            case "offline_answered":
                return c.offline and c.answered
            case "within_target" | "over_target":
                w = wait(c)
                return w is not None and ((w <= target) == (name == "within_target"))
            case "rated":
                return c.rating is not None
            case "commented":
                return bool(c.comment)
            case "transferred":
                return bool(c.transfers)
            case "untagged":
                return c.answered and not c.tags and c.read_scale is None
            case "topic":
                return c.topic == value
            case "language":
                return c.language == value
            case "page":
                return c.page == value
            case "librarian":
                return value in (c.owner, c.first_reply_by, c.rated_librarian) or any(
                    value in pair for pair in c.transfers
                )
            case "rating":
                return str(c.rating) == value
            case "tag":
                return value in c.tags
            case "read":
                return str(c.read_scale) == value
            case "verification":
                return c.verification == value
            case "hour":
                local = c.created_at.astimezone(tz)
                return f"{local.weekday()}-{local.hour}" == value
            case "day":
                return c.created_at.astimezone(tz).date().isoformat() == value
            case "wait":
                w = wait(c)
                return w is not None and str(_bucket(w)) == value
            case "team":
                return c.team == value
            case "partner":
                return c.owner is not None and partner_of is not None and partner_of(c.owner)
        return False  # pragma: no cover - every name in FILTERS is matched above

    return [c for c in chats if keep(c)]


# tags


def parse_tags(text: str) -> tuple[list[str], int | None]:
    """``!tag`` words: categories, and the READ scale as ``read 3``, ``read:3`` or ``R3``.

    Raises ValueError with the reason for anything else."""
    tags: list[str] = []
    scale: int | None = None
    words = text.replace(",", " ").split()
    index = 0
    while index < len(words):
        word = words[index].lower().lstrip("#")
        match = re.fullmatch(r"(?:read[:=]?|r)([0-9]+)", word)
        if word == "read" and index + 1 < len(words):
            match = re.fullmatch(r"([0-9]+)", words[index + 1])
            index += 1
        if match is not None:
            value = int(match.group(1))
            if value not in READ_SCALE:
                raise ValueError("The READ scale goes from 1 to 6.")
            scale = value
        elif _TAG.match(word):
            if word not in tags:
                tags.append(word)
        else:
            raise ValueError(f"{words[index][:40]!r} is not a tag: letters, digits, . - _ only.")
        index += 1
    return tags, scale


# CSV export

CSV_COLUMNS = (
    "chat_id",
    "started",
    "weekday",
    "hour",
    "kind",
    "outcome",
    "topic",
    "team",
    "language",
    "page",
    "first_reply_seconds",
    "first_reply_by",
    "within_target",
    "duration_seconds",
    "librarian",
    "transfers",
    "rating",
    "comment",
    "tags",
    "read_scale",
    "verification",
)


_MXID = re.compile(r"^@[a-z0-9._=/+-]+:[A-Za-z0-9.:-]+$")


def _cell(value: object) -> str:
    """Text a spreadsheet will not run: a leading = + - @ makes a formula in most of them
    (a Matrix user id, with no parenthesis or space, cannot be one and stays as it is)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _MXID.match(text):
        return "'" + text
    return text


def outcome(chat: ChatFacts) -> str:
    if chat.offline:
        return "offline_answered" if chat.answered else "offline_waiting"
    if chat.answered:
        return "answered"
    return "missed" if chat.missed else "waiting"


def csv_text(chats: Iterable[ChatFacts], *, clocking: Clocking, target: int, timezone: str) -> str:
    """One row per chat, the columns of :data:`CSV_COLUMNS` (docs/REPORTS.md), desk time."""
    tz = ZoneInfo(timezone)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for c in chats:
        local = c.created_at.astimezone(tz)
        wait = clocking.wait(c)
        duration = clocking.duration(c)
        row = (
            c.session_id,
            local.isoformat(timespec="seconds"),
            WEEKDAYS[local.weekday()],
            local.hour,
            "offline" if c.offline else "chat",
            outcome(c),
            c.topic,
            c.team,
            c.language,
            c.page,
            None if wait is None else round(wait),
            c.first_reply_by,
            None if wait is None or c.offline else ("yes" if wait <= target else "no"),
            None if duration is None else round(duration),
            c.owner,
            len(c.transfers),
            c.rating,
            c.comment,
            ";".join(c.tags),
            c.read_scale,
            c.verification,
        )
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()
