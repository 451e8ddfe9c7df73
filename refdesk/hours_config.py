"""The ``hours`` section of the config file, turned into a :class:`rooms.hours.Schedule`.

Defaults are Perpusnas's: Monday to Friday 09:00-19:00, Saturday 09:00-15:30, Sunday closed,
closed on Indonesian national holidays and cuti bersama. Every problem names its key path
(``hours.weekly.monday[0]: "9-19" is not HH:MM-HH:MM``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from itertools import pairwise
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from refdesk.config_reader import ConfigError, Reader
from rooms.hours import Closure, Interval, Schedule, SpecialHours

WhenClosed = Literal["offline_form", "hide"]
WHEN_CLOSED: tuple[WhenClosed, ...] = ("offline_form", "hide")

WEEKDAY_KEYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAYS = {name: day for day, name in enumerate(WEEKDAY_KEYS)} | {
    name: day
    for day, name in enumerate(("senin", "selasa", "rabu", "kamis", "jumat", "sabtu", "minggu"))
}
_INTERVAL = re.compile(r"^\s*(\d{1,2})[:.](\d{2})\s*[-–]\s*(\d{1,2})[:.](\d{2})\s*$")
_HOURS_HELP = 'a list of "HH:MM-HH:MM" intervals, or closed'

DEFAULT_WEEKLY: dict[int, tuple[Interval, ...]] = {
    **{day: (Interval(time(9), time(19)),) for day in range(5)},
    5: (Interval(time(9), time(15, 30)),),
    6: (),
}
DEFAULT_COUNTRY = "ID"
# In Indonesia the package's "government" category is cuti bersama: collective leave days that
# government offices (Perpusnas among them) close on, e.g. 2026-03-20, 23 and 24 (Idul Fitri).
DEFAULT_CATEGORIES = {"ID": ("public", "government")}


@dataclass(frozen=True)
class HoursConfig:
    schedule: Schedule
    when_closed: WhenClosed = "offline_form"
    """What the widget does while closed: offer the offline message form, or hide itself."""


def _day_hours(value: Any, path: str) -> tuple[Interval, ...]:
    """One weekday's hours: ``closed``, ``[]``, ``"09:00-12:00"`` or a list of those."""
    if isinstance(value, str) and value.strip().lower() == "closed":
        return ()
    if isinstance(value, str):
        found = [(path, _interval(value, path))]
    elif isinstance(value, list):
        found = [(f"{path}[{i}]", _interval(item, f"{path}[{i}]")) for i, item in enumerate(value)]
    else:
        raise ConfigError(path, f"must be {_HOURS_HELP}, got {value!r}")
    found.sort(key=lambda pair: pair[1].start)
    for (_, before), (where, after) in pairwise(found):
        if after.start < before.end:
            raise ConfigError(where, f'"{_text(after)}" overlaps "{_text(before)}"')
    return tuple(interval for _, interval in found)


def _text(interval: Interval) -> str:
    return f"{interval.start:%H:%M}-{interval.end:%H:%M}"


def _interval(value: Any, path: str) -> Interval:
    if not isinstance(value, str):
        raise ConfigError(
            path, f'{value!r} is not HH:MM-HH:MM (write it in quotes, e.g. "09:00-19:00")'
        )
    match = _INTERVAL.match(value)
    if match is None:
        raise ConfigError(path, f'"{value}" is not HH:MM-HH:MM')
    sh, sm, eh, em = (int(part) for part in match.groups())
    for hour, minute in ((sh, sm), (eh, em)):
        if hour > 23 or minute > 59:
            raise ConfigError(path, f'"{value}": {hour:02}:{minute:02} is not a time of day')
    start, end = time(sh, sm), time(eh, em)
    if end <= start:
        raise ConfigError(
            path, f'"{value}": the end must be after the start (intervals may not cross midnight)'
        )
    return Interval(start, end)


def _weekly(value: Any, path: str, *, complete: bool) -> dict[int, tuple[Interval, ...]]:
    """Weekday names to hours; ``complete`` demands all seven days."""
    if not isinstance(value, dict):
        raise ConfigError(path, f"must map weekdays (monday ... sunday) to {_HOURS_HELP}")
    weekly: dict[int, tuple[Interval, ...]] = {}
    for key, hours in value.items():
        where = f"{path}.{key}"
        day = _WEEKDAYS.get(str(key).strip().lower())
        if day is None:
            raise ConfigError(where, "unknown weekday; use monday ... sunday (or senin ... minggu)")
        if day in weekly:
            raise ConfigError(where, f"{WEEKDAY_KEYS[day]} is given twice")
        weekly[day] = _day_hours(hours, where)
    if complete:
        for day, name in enumerate(WEEKDAY_KEYS):
            if day not in weekly:
                raise ConfigError(f"{path}.{name}", f"is required: {_HOURS_HELP}")
    return weekly


def _date(reader: Reader, key: str, default: date | None = None) -> date:
    reader.seen.add(key)
    where = reader._key(key)
    value = reader.data.get(key)
    if value is None:
        if default is None:
            raise ConfigError(where, "is required (a date, YYYY-MM-DD)")
        return default
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            pass
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ConfigError(where, f"not a date: {value!r} (write YYYY-MM-DD)")
    return value


def _holidays(root: Reader) -> tuple[str | None, str | None, tuple[str, ...]]:
    """``holidays: false`` or ``{country, subdivision, categories}``."""
    root.seen.add("holidays")
    raw = root.data.get("holidays", True)
    if raw is False:
        return None, None, ()
    if raw is True or raw is None:
        raw = {}
    path = root._key("holidays")
    if not isinstance(raw, dict):
        raise ConfigError(path, "must be false or a mapping like {country: ID}")
    reader = Reader(raw, path)
    country = reader.text("country", DEFAULT_COUNTRY).strip().upper()
    supported = holidays.list_supported_countries()
    if country not in supported:
        raise ConfigError(
            reader._key("country"),
            f"unknown country code {country!r}; use a two-letter ISO 3166 code "
            "that the holidays package supports, e.g. ID",
        )
    reader.seen.add("subdivision")
    subdiv = reader.data.get("subdivision")
    if subdiv is not None:
        subdiv = str(subdiv).strip()
        known = supported[country]
        if not known:
            raise ConfigError(reader._key("subdivision"), f"{country} has no subdivisions")
        try:
            holidays.country_holidays(country, subdiv=subdiv)
        except NotImplementedError:
            raise ConfigError(
                reader._key("subdivision"),
                f"unknown subdivision {subdiv!r} of {country}; known: {', '.join(known)}",
            ) from None
    calendar = holidays.country_holidays(country, subdiv=subdiv)
    categories = reader.items("categories", list(DEFAULT_CATEGORIES.get(country, ("public",))))
    if not categories:
        raise ConfigError(reader._key("categories"), "must list at least one category")
    for index, category in enumerate(categories):
        if category not in calendar.supported_categories:
            raise ConfigError(
                f"{reader._key('categories')}[{index}]",
                f"{category!r} is not a holiday category of {country}; "
                f"known: {', '.join(calendar.supported_categories)}",
            )
    reader.check_unknown()
    return country, subdiv, tuple(categories)


def _label(reader: Reader, languages: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """``label: text`` (every language) or ``label: {id: text, en: text}`` (each language the
    desk offers): the default language's text and the others'."""
    value = reader.data.get("label")
    if not isinstance(value, dict):
        return reader.text("label"), {}
    reader.seen.add("label")
    item = Reader(value, reader._key("label"))
    texts = {code: item.text(code) for code in languages}
    item.check_unknown()
    return texts[languages[0]], texts


def _closures(root: Reader, languages: tuple[str, ...]) -> tuple[Closure, ...]:
    closures = []
    for index, item in enumerate(root.items("closures", [])):
        path = f"{root._key('closures')}[{index}]"
        reader = Reader(item, path)
        start = _date(reader, "from")
        end = _date(reader, "to", default=start)
        label, labels = _label(reader, languages)
        reader.check_unknown()
        if end < start:
            raise ConfigError(path, "'to' is before 'from'")
        closures.append(Closure(start, end, label, labels))
    return tuple(closures)


def _special(
    root: Reader, regular: dict[int, tuple[Interval, ...]], languages: tuple[str, ...]
) -> tuple[SpecialHours, ...]:
    ranges: list[SpecialHours] = []
    for index, item in enumerate(root.items("special", [])):
        path = f"{root._key('special')}[{index}]"
        reader = Reader(item, path)
        start = _date(reader, "from")
        end = _date(reader, "to")
        label, labels = _label(reader, languages)
        if end < start:
            raise ConfigError(path, "'to' is before 'from'")
        reader.seen.add("weekly")
        raw = reader.data.get("weekly")
        weekly: dict[int, tuple[Interval, ...]] | None
        if raw is None:
            raise ConfigError(reader._key("weekly"), f"is required: weekdays to {_HOURS_HELP}")
        if isinstance(raw, str) and raw.strip().lower() == "closed":
            weekly = None
        else:
            # Weekdays the range does not name keep their regular hours.
            weekly = regular | _weekly(raw, reader._key("weekly"), complete=False)
        open_on_holidays = reader.boolean("open_on_holidays", False)
        reader.check_unknown()
        for other_index, other in enumerate(ranges):
            if start <= other.end and other.start <= end:
                raise ConfigError(
                    path, f"overlaps {root._key('special')}[{other_index}] ({other.label})"
                )
        ranges.append(SpecialHours(start, end, label, weekly, open_on_holidays, labels))
    return tuple(ranges)


def parse_hours(
    data: dict[str, Any] | None,
    timezone: str = "Asia/Jakarta",
    languages: tuple[str, ...] = ("id", "en"),
    path: str = "hours",
) -> HoursConfig:
    """Build the hours config from the ``hours`` section (None: all defaults).

    ``timezone`` is ``desk.timezone``; the weekly hours are wall-clock times there.
    ``languages``: the desk's, its default first (a label may be given in each).
    ``path``: where the section is in the file (a team's hours: ``desk.teams[0].hours``).
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("desk.timezone", f"unknown time zone {timezone!r}") from None
    root = Reader(data, path)
    root.seen.add("weekly")
    if root.data.get("weekly") is None:
        weekly = dict(DEFAULT_WEEKLY)
    else:
        weekly = _weekly(root.data["weekly"], root._key("weekly"), complete=True)
    country, subdiv, categories = _holidays(root)
    closures = _closures(root, languages)
    special = _special(root, weekly, languages)
    when_closed = root.text("when_closed", "offline_form").strip()
    if when_closed not in WHEN_CLOSED:
        raise ConfigError(
            root._key("when_closed"), f"must be offline_form or hide, got {when_closed!r}"
        )
    root.check_unknown()
    schedule = Schedule(
        timezone=zone,
        weekly=weekly,
        holidays_country=country,
        holidays_subdiv=subdiv,
        closures=closures,
        special=special,
        holidays_categories=categories,
    )
    return HoursConfig(schedule, cast(WhenClosed, when_closed))
