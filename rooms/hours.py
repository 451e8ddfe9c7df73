"""Service hours: when the desk is open, why it is closed, and when it opens again.

Pure and clock-driven: every question takes the instant it is asked about (timezone-aware, UTC in
practice) and answers in UTC. Wall-clock rules (weekly hours, holidays, closures) are read in the
schedule's time zone.

What decides a day, strongest first:

1. a closure range (``closures``): closed all day;
2. a special-hours range (``special``, e.g. Ramadan): its own weekly hours, or closed all day;
3. a national holiday (the ``holidays`` package);
4. the regular weekly hours.

One exception to that order: a holiday that falls inside a special range with hours stays closed
unless the range says ``open_on_holidays`` (Nyepi 2026-03-19 falls inside Ramadan 1447, and a
"shorter hours" range must not open the desk on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

import holidays

from rooms.language import language as language_of

SEARCH_DAYS = 60
"""How far ahead :meth:`ServiceHours.next_opening` looks before giving up."""

Weekly = Mapping[int, tuple["Interval", ...]]
"""Weekday (0 = Monday ... 6 = Sunday) to that day's opening intervals; absent = closed."""

Reason = Literal["open", "after_hours", "weekend", "holiday", "closure", "special_closed"]
"""Why the desk is open or closed now.

* ``open``: inside an opening interval.
* ``after_hours``: the day has hours, but not now (before opening, at lunch, after closing).
* ``weekend``: the (regular or special) weekly hours have nothing for this weekday.
* ``holiday``: a national holiday; the label is its name.
* ``closure``: a configured closure range; the label is the admin's.
* ``special_closed``: a special range that closes the desk; the label is the range's.
"""


@dataclass(frozen=True)
class Interval:
    """Open from ``start`` (included) to ``end`` (excluded), on one day: never across midnight."""

    start: time
    end: time

    def __post_init__(self) -> None:
        for value in (self.start, self.end):
            if value.tzinfo is not None:
                raise ValueError("interval times are wall-clock times, without a time zone")
        if self.end <= self.start:
            raise ValueError(
                f"interval {self.start:%H:%M}-{self.end:%H:%M}: the end must be after the start "
                "(intervals may not cross midnight)"
            )

    def contains(self, at: time) -> bool:
        return self.start <= at < self.end


class Closure(NamedTuple):
    """Closed on every day from ``start`` to ``end``, both included; ``labels``: the label in
    other languages than the admin's ``label``."""

    start: date
    end: date
    label: str
    labels: Mapping[str, str] = {}

    def label_in(self, language: str) -> str:
        return self.labels.get(language, self.label)


@dataclass(frozen=True)
class SpecialHours:
    """Other hours on every day from ``start`` to ``end`` (both included).

    ``weekly`` replaces the regular weekly hours inside the range (a weekday it lacks is closed);
    ``None`` closes the desk for the whole range.
    """

    start: date
    end: date
    label: str
    weekly: Weekly | None
    open_on_holidays: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)  # the label in other languages

    def label_in(self, language: str) -> str:
        return self.labels.get(language, self.label)

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"special hours {self.label!r}: end {self.end} is before {self.start}")
        if self.weekly is not None:
            _check_weekly(self.weekly)

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True)
class Schedule:
    timezone: ZoneInfo
    weekly: Weekly
    holidays_country: str | None = "ID"
    holidays_subdiv: str | None = None
    closures: tuple[Closure, ...] = ()
    special: tuple[SpecialHours, ...] = ()
    holidays_categories: tuple[str, ...] = ("public",)

    def __post_init__(self) -> None:
        _check_weekly(self.weekly)
        for closure in self.closures:
            if closure.end < closure.start:
                raise ValueError(f"closure {closure.label!r}: end {closure.end} is before start")


def _check_weekly(weekly: Weekly) -> None:
    for weekday, intervals in weekly.items():
        if weekday not in range(7):
            raise ValueError(f"weekday must be 0 (Monday) to 6 (Sunday), got {weekday!r}")
        ordered = sorted(intervals, key=lambda i: i.start)
        if list(intervals) != ordered:
            raise ValueError(f"weekday {weekday}: intervals must be in order")
        for before, after in pairwise(ordered):
            if after.start < before.end:
                raise ValueError(f"weekday {weekday}: intervals overlap")


@dataclass(frozen=True)
class HoursStatus:
    open: bool
    reason: Reason
    label: str | None = None
    """Holiday name, closure label, or the special range's label (e.g. "Ramadan")."""
    closes_at: datetime | None = None
    """While open: when this stretch of opening ends (UTC)."""
    next_open: datetime | None = None
    """While closed: when the desk opens next (UTC), or None if not within the search window."""


@dataclass(frozen=True)
class _Day:
    intervals: tuple[Interval, ...]
    reason: Reason  # why the day is closed when it has no intervals ("after_hours" otherwise)
    label: str | None


@dataclass
class _HolidayCache:
    """One ``holidays`` calendar per language; each fills in a year when first asked about it."""

    country: str
    subdiv: str | None
    categories: tuple[str, ...]
    calendars: dict[str, Any] = field(default_factory=dict)

    def name(self, day: date, language: str) -> str | None:
        calendar = self.calendars.get(language)
        if calendar is None:
            calendar = holidays.country_holidays(
                self.country,
                subdiv=self.subdiv,
                years=day.year,
                categories=self.categories,
                language=language_of(language).holidays,
            )
            self.calendars[language] = calendar
        name = calendar.get(day)  # expand=True: a new year is computed once, then kept
        return str(name) if name else None


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    return at.astimezone(UTC)


class ServiceHours:
    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._holidays = (
            _HolidayCache(
                schedule.holidays_country, schedule.holidays_subdiv, schedule.holidays_categories
            )
            if schedule.holidays_country
            else None
        )

    # the rules for one day

    def holiday(self, day: date, language: str = "id") -> str | None:
        """The national holiday on ``day`` (its name), if the schedule follows holidays."""
        return self._holidays.name(day, language) if self._holidays else None

    def _day(self, day: date, language: str) -> _Day:
        weekday = day.weekday()
        for closure in self.schedule.closures:
            if closure.start <= day <= closure.end:
                return _Day((), "closure", closure.label_in(language))
        special = next((s for s in self.schedule.special if s.covers(day)), None)
        if special is not None:
            if special.weekly is None:
                return _Day((), "special_closed", special.label_in(language))
            if special.open_on_holidays:
                return _Day(special.weekly.get(weekday, ()), "weekend", special.label_in(language))
        holiday = self.holiday(day, language)
        if holiday is not None:
            return _Day((), "holiday", holiday)
        if special is not None and special.weekly is not None:
            return _Day(special.weekly.get(weekday, ()), "weekend", special.label_in(language))
        return _Day(tuple(self.schedule.weekly.get(weekday, ())), "weekend", None)

    def _instant(self, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=self.schedule.timezone).astimezone(UTC)

    # questions about an instant

    def is_open(self, at: datetime) -> bool:
        local = _utc(at).astimezone(self.schedule.timezone)
        wall = local.time()
        return any(i.contains(wall) for i in self._day(local.date(), "id").intervals)

    def status(self, at: datetime, language: str = "id") -> HoursStatus:
        """Open or closed at ``at``, why, and until when. Holiday names are in ``language``."""
        local = _utc(at).astimezone(self.schedule.timezone)
        wall = local.time()
        day = self._day(local.date(), language)
        for index, interval in enumerate(day.intervals):
            if interval.contains(wall):
                end = interval.end
                for following in day.intervals[index + 1 :]:
                    if following.start != end:  # back-to-back intervals are one stretch
                        break
                    end = following.end
                return HoursStatus(
                    True, "open", day.label, closes_at=self._instant(local.date(), end)
                )
        reason: Reason = "after_hours" if day.intervals else day.reason
        return HoursStatus(False, reason, day.label, next_open=self.next_opening(at))

    def next_opening(self, at: datetime) -> datetime | None:
        """The first instant at or after ``at`` when the desk is open (``at`` itself if open now).

        Looks :data:`SEARCH_DAYS` days ahead; None if the desk stays closed that long.
        """
        now = _utc(at)
        local = now.astimezone(self.schedule.timezone)
        for offset in range(SEARCH_DAYS + 1):
            day = local.date() + timedelta(days=offset)
            for interval in self._day(day, "id").intervals:
                if offset == 0:
                    if interval.end <= local.time():
                        continue
                    if interval.start <= local.time():
                        return now
                return self._instant(day, interval.start)
        return None

    def open_seconds(self, start: datetime, end: datetime) -> float:
        """Seconds between ``start`` and ``end`` during which the desk was open: a wait that
        spans a night or a holiday counts only its open part (reports' first-reply times)."""
        start, end = _utc(start), _utc(end)
        if end <= start:
            return 0.0
        tz = self.schedule.timezone
        day = start.astimezone(tz).date()
        last = end.astimezone(tz).date()
        total = 0.0
        while day <= last:
            for interval in self._day(day, "id").intervals:
                opens = self._instant(day, interval.start)
                closes = self._instant(day, interval.end)
                overlap = (min(end, closes) - max(start, opens)).total_seconds()
                total += max(0.0, overlap)
            day += timedelta(days=1)
        return total

    # words for people

    def describe_week(self, language: str = "id", at: datetime | None = None) -> list[str]:
        """The weekly hours as lines: "Senin–Jumat 09.00–19.00", "Minggu: tutup".

        With ``at`` inside a special range that has hours, that range's week is described.
        """
        weekly: Weekly = self.schedule.weekly
        if at is not None:
            today = _utc(at).astimezone(self.schedule.timezone).date()
            special = next((s for s in self.schedule.special if s.covers(today)), None)
            if special is not None and special.weekly is not None:
                weekly = special.weekly
        words = language_of(language)
        days = words.days
        lines: list[str] = []
        first = 0
        while first < 7:
            hours = tuple(weekly.get(first, ()))
            last = first
            while last + 1 < 7 and tuple(weekly.get(last + 1, ())) == hours:
                last += 1
            names = days[first] if first == last else f"{days[first]}–{days[last]}"
            if hours:
                spans = ", ".join(f"{words.clock(i.start)}–{words.clock(i.end)}" for i in hours)
                lines.append(f"{names} {spans}")
            else:
                lines.append(f"{names}: {words.closed}")
            first = last + 1
        return lines


def format_next_open(next_open: datetime, now: datetime, tz: ZoneInfo, language: str) -> str:
    """When the desk opens, for a visitor: "besok pukul 09.00", "Monday 23 March at 09:00"."""
    words = language_of(language)
    opens = _utc(next_open).astimezone(tz)
    today = _utc(now).astimezone(tz).date()
    clock = words.clock(opens.time())
    days_ahead = (opens.date() - today).days
    if days_ahead in (0, 1):
        return words.text("dates", "today" if days_ahead == 0 else "tomorrow", clock=clock)
    return words.text(
        "dates",
        "later" if opens.year == today.year else "later_year",
        weekday=words.day_name(opens.date()),
        day=opens.day,
        month=words.months[opens.month - 1],
        year=opens.year,
        clock=clock,
    )
