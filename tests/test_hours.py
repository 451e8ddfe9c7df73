"""Service hours with a controlled clock: weekly hours, holidays, special ranges, closures, config.

Pure: no homeserver, no sleeping. Instants are given in WIB (UTC+7) and converted to UTC, as the
desk's clock gives them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from refdesk.config import ConfigError
from refdesk.hours_config import DEFAULT_WEEKLY, HoursConfig, parse_hours
from rooms.hours import (
    SEARCH_DAYS,
    Closure,
    Interval,
    Schedule,
    ServiceHours,
    SpecialHours,
    format_next_open,
)

JAKARTA = ZoneInfo("Asia/Jakarta")
WIB = timezone(timedelta(hours=7))
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def wib(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A WIB wall-clock instant, as the UTC datetime the desk's clock would give."""
    return datetime(year, month, day, hour, minute, tzinfo=WIB).astimezone(UTC)


def hours(section: dict[str, Any] | None = None) -> ServiceHours:
    return ServiceHours(parse_hours(section, "Asia/Jakarta").schedule)


# Ready for config.sample.yaml; the test below keeps it valid.
SAMPLE = """
hours:
  # Opening hours per weekday, in desk.timezone: a list of "HH:MM-HH:MM" intervals (an interval
  # may not cross midnight; a lunch break is two intervals), or closed. Name all seven days.
  weekly:
    monday: ["09:00-19:00"]
    tuesday: ["09:00-19:00"]
    wednesday: ["09:00-19:00"]
    thursday: ["09:00-19:00"]
    friday: ["09:00-19:00"]
    saturday: ["09:00-15:30"]
    sunday: closed
  # Closed on public holidays of this country (holidays package, ISO code), or `holidays: false`.
  # categories: public = national holidays; government = cuti bersama (collective leave days,
  # Indonesia only). Default for ID: [public, government].
  holidays:
    country: ID
    subdivision: null
    categories: [public, government]
  # Extra closed days (both dates included; `to` may be left out for one day). The label is
  # shown to visitors: one text, or one per language like the topics' labels.
  closures:
    - {from: 2026-12-28, to: 2026-12-31, label: {id: "Libur akhir tahun", en: "Year-end break"}}
  # Ranges with other hours, e.g. Ramadan. Weekdays not named keep their regular hours;
  # `weekly: closed` closes the whole range. Holidays inside a range stay closed unless
  # `open_on_holidays: true`.
  special:
    - from: 2026-02-18
      to: 2026-03-19
      label: Ramadan
      weekly:
        monday: ["08:00-15:00"]
        tuesday: ["08:00-15:00"]
        wednesday: ["08:00-15:00"]
        thursday: ["08:00-15:00"]
        friday: ["08:00-15:30"]
        saturday: closed
  # While closed: offline_form (visitors leave a message, answered later by email) or hide
  # (the widget is not shown at all).
  when_closed: offline_form
"""


@pytest.fixture(scope="module")
def desk() -> ServiceHours:
    """Perpusnas defaults: Mon-Fri 09-19, Sat 09-15:30, Sun closed, holidays and cuti bersama."""
    return hours()


# weekly hours


def test_monday_morning_is_open(desk: ServiceHours) -> None:
    at = wib(2026, 3, 2, 10)  # a Monday
    assert desk.is_open(at)
    status = desk.status(at)
    assert (status.open, status.reason, status.label) == (True, "open", None)
    assert status.closes_at == wib(2026, 3, 2, 19)
    assert status.closes_at.tzinfo == UTC
    assert status.next_open is None
    assert desk.next_opening(at) == at


def test_monday_evening_is_closed_until_tuesday(desk: ServiceHours) -> None:
    at = wib(2026, 3, 2, 19, 30)
    assert not desk.is_open(at)
    status = desk.status(at)
    assert (status.open, status.reason) == (False, "after_hours")
    assert status.next_open == wib(2026, 3, 3, 9)
    assert status.next_open.tzinfo == UTC


def test_interval_edges(desk: ServiceHours) -> None:
    assert desk.is_open(wib(2026, 3, 2, 9))
    assert not desk.is_open(wib(2026, 3, 2, 19))  # the end is excluded
    early = desk.status(wib(2026, 3, 2, 8, 59))
    assert (early.reason, early.next_open) == ("after_hours", wib(2026, 3, 2, 9))


def test_saturday_afternoon_is_closed_until_monday(desk: ServiceHours) -> None:
    assert desk.is_open(wib(2026, 3, 7, 15, 15))
    status = desk.status(wib(2026, 3, 7, 15, 45))
    assert (status.open, status.reason) == (False, "after_hours")
    assert status.next_open == wib(2026, 3, 9, 9)


def test_sunday_is_closed(desk: ServiceHours) -> None:
    status = desk.status(wib(2026, 3, 8, 11))
    assert (status.open, status.reason, status.label) == (False, "weekend", None)
    assert status.next_open == wib(2026, 3, 9, 9)


def test_any_aware_datetime_is_accepted_and_naive_is_refused(desk: ServiceHours) -> None:
    assert desk.is_open(datetime(2026, 3, 2, 10, tzinfo=JAKARTA))
    with pytest.raises(ValueError, match="timezone-aware"):
        desk.is_open(datetime(2026, 3, 2, 10))


def test_back_to_back_intervals_close_once() -> None:
    desk = hours(
        {
            "weekly": {
                **{day: "closed" for day in _DAYS},
                "monday": ["09:00-12:00", "12:00-13:00", "14:00-16:00"],
            }
        }
    )
    assert desk.status(wib(2026, 3, 2, 10)).closes_at == wib(2026, 3, 2, 13)
    lunch = desk.status(wib(2026, 3, 2, 13, 30))
    assert (lunch.reason, lunch.next_open) == ("after_hours", wib(2026, 3, 2, 14))


# holidays (dates as the holidays package gives them for Indonesia)


@pytest.mark.parametrize(
    ("day", "name_id", "name_en"),
    [
        (date(2026, 3, 21), "Hari Raya Idul Fitri", "Eid al-Fitr"),  # Saturday
        (date(2026, 3, 22), "Hari kedua dari Hari Raya Idul Fitri", "Eid al-Fitr Second Day"),
        (date(2026, 3, 19), "Hari Suci Nyepi", "Day of Silence"),
        (date(2026, 8, 17), "Hari Kemerdekaan Republik Indonesia", "Independence Day"),
        (date(2026, 3, 20), "Cuti Bersama Hari Raya Idul Fitri", "Eid al-Fitr Joint Holiday"),
        (date(2026, 3, 23), "Cuti Bersama Hari Raya Idul Fitri", "Eid al-Fitr Joint Holiday"),
    ],
)
def test_holidays_close_the_desk_with_their_name(
    desk: ServiceHours, day: date, name_id: str, name_en: str
) -> None:
    at = wib(day.year, day.month, day.day, 10)
    assert not desk.is_open(at)
    assert desk.status(at).reason == "holiday"
    assert desk.status(at).label == name_id
    assert desk.status(at, language="en").label == name_en


def test_cuti_bersama_can_be_left_open() -> None:
    desk = hours({"holidays": {"country": "ID", "categories": ["public"]}})
    assert desk.is_open(wib(2026, 3, 20, 10))  # cuti bersama only
    assert not desk.is_open(wib(2026, 3, 21, 10))  # Idul Fitri itself


def test_holidays_can_be_ignored() -> None:
    desk = hours({"holidays": False})
    assert desk.is_open(wib(2026, 8, 17, 10))
    assert desk.status(wib(2026, 3, 22, 10)).reason == "weekend"


def test_next_opening_across_the_idul_fitri_cluster(desk: ServiceHours) -> None:
    # Tue 17 March 2026 after hours; then cuti bersama (18), Nyepi (19), cuti bersama (20),
    # Idul Fitri (21, 22), cuti bersama (23, 24): open again Wednesday 25 March.
    status = desk.status(wib(2026, 3, 17, 19, 30))
    assert status.next_open == wib(2026, 3, 25, 9)
    public_only = hours({"holidays": {"categories": ["public"]}})
    assert public_only.next_opening(wib(2026, 3, 17, 19, 30)) == wib(2026, 3, 18, 9)
    assert public_only.next_opening(wib(2026, 3, 18, 19, 30)) == wib(2026, 3, 20, 9)


def test_holiday_years_are_computed_as_needed(desk: ServiceHours) -> None:
    assert desk.holiday(date(2025, 12, 25), "en") == "Christmas Day"
    assert desk.holiday(date(2027, 1, 1), "en") == "New Year's Day"
    assert desk.holiday(date(2026, 3, 2)) is None


# special ranges and closures


@pytest.fixture(scope="module")
def sample() -> ServiceHours:
    return hours(yaml.safe_load(SAMPLE)["hours"])


def test_ramadan_hours_are_shorter(sample: ServiceHours) -> None:
    wednesday = wib(2026, 2, 25, 14)
    status = sample.status(wednesday)
    assert (status.open, status.label, status.closes_at) == (True, "Ramadan", wib(2026, 2, 25, 15))
    later = sample.status(wib(2026, 2, 25, 15, 30))
    assert (later.open, later.reason, later.label) == (False, "after_hours", "Ramadan")
    assert later.next_open == wib(2026, 2, 26, 8)
    assert sample.is_open(wib(2026, 2, 26, 8))  # opens earlier too
    assert sample.status(wib(2026, 2, 27, 15, 15)).closes_at == wib(2026, 2, 27, 15, 30)


def test_ramadan_saturday_closed_and_sunday_as_usual(sample: ServiceHours) -> None:
    saturday = sample.status(wib(2026, 2, 21, 10))
    assert (saturday.open, saturday.reason, saturday.label) == (False, "weekend", "Ramadan")
    assert saturday.next_open == wib(2026, 2, 23, 8)


def test_regular_hours_before_and_after_ramadan(sample: ServiceHours) -> None:
    assert sample.is_open(wib(2026, 2, 13, 18))  # Friday before
    assert not sample.is_open(wib(2026, 2, 18, 15, 30))  # first day
    assert sample.is_open(wib(2026, 3, 25, 18))  # after the Idul Fitri cluster


def test_holiday_inside_a_special_range_stays_closed(sample: ServiceHours) -> None:
    nyepi = sample.status(wib(2026, 3, 19, 10))
    assert (nyepi.reason, nyepi.label) == ("holiday", "Hari Suci Nyepi")
    data = yaml.safe_load(SAMPLE)["hours"]
    data["special"][0]["open_on_holidays"] = True
    opened = hours(data)
    status = opened.status(wib(2026, 3, 19, 10))
    assert (status.open, status.label) == (True, "Ramadan")


def test_special_range_closed() -> None:
    schedule = parse_hours(
        {
            "special": [
                {
                    "from": "2026-07-06",
                    "to": "2026-07-10",
                    "label": "Stock-taking",
                    "weekly": "closed",
                }
            ]
        }
    ).schedule
    status = ServiceHours(schedule).status(wib(2026, 7, 7, 10))
    assert (status.reason, status.label) == ("special_closed", "Stock-taking")
    assert status.next_open == wib(2026, 7, 11, 9)


def test_a_closure_or_range_label_comes_in_the_visitors_language() -> None:
    """``label: {id: …, en: …}`` (issue 14); one plain text serves every language."""
    desk = hours(yaml.safe_load(SAMPLE)["hours"])
    assert desk.status(wib(2026, 12, 29, 10), "id").label == "Libur akhir tahun"
    assert desk.status(wib(2026, 12, 29, 10), "en").label == "Year-end break"
    data = yaml.safe_load(SAMPLE)["hours"]
    data["special"][0]["label"] = {"id": "Bulan Ramadan", "en": "Ramadan month"}
    ramadan = hours(data)
    assert ramadan.status(wib(2026, 3, 2, 10), "en").label == "Ramadan month"
    assert ramadan.status(wib(2026, 3, 2, 10), "id").label == "Bulan Ramadan"
    assert hours(yaml.safe_load(SAMPLE)["hours"]).status(wib(2026, 3, 2, 10), "en").label == (
        "Ramadan"
    )
    data["closures"][0]["label"] = {"id": "Libur akhir tahun"}
    with pytest.raises(ConfigError) as info:
        parse_hours(data, "Asia/Jakarta")
    assert info.value.path == "hours.closures[0].label.en" and info.value.problem == "is required"


def test_closure_beats_holidays_and_special_hours() -> None:
    data = yaml.safe_load(SAMPLE)["hours"]
    data["closures"] = [
        {"from": date(2026, 12, 24), "to": date(2026, 12, 26), "label": "Libur akhir tahun"},
        {"from": date(2026, 3, 2), "label": "Pelatihan staf"},  # inside Ramadan
    ]
    desk = hours(data)
    christmas = desk.status(wib(2026, 12, 25, 10))
    assert (christmas.reason, christmas.label) == ("closure", "Libur akhir tahun")
    assert christmas.next_open == wib(2026, 12, 28, 9)  # 26th closed, 27th a Sunday
    training = desk.status(wib(2026, 3, 2, 10))
    assert (training.reason, training.label, training.next_open) == (
        "closure",
        "Pelatihan staf",
        wib(2026, 3, 3, 8),
    )


def test_next_opening_gives_up_after_the_search_window() -> None:
    start = date(2026, 4, 1)
    schedule = Schedule(
        JAKARTA,
        DEFAULT_WEEKLY,
        closures=(Closure(start, start + timedelta(days=SEARCH_DAYS + 5), "Renovasi"),),
    )
    status = ServiceHours(schedule).status(wib(2026, 4, 2, 10))
    assert (status.open, status.reason, status.next_open) == (False, "closure", None)


def test_schedule_refuses_bad_intervals() -> None:
    with pytest.raises(ValueError, match="cross midnight"):
        Interval(time(22), time(2))
    with pytest.raises(ValueError, match="overlap"):
        Schedule(JAKARTA, {0: (Interval(time(9), time(12)), Interval(time(11), time(14)))})
    with pytest.raises(ValueError, match="weekday"):
        Schedule(JAKARTA, {7: (Interval(time(9), time(12)),)})
    with pytest.raises(ValueError, match="before"):
        SpecialHours(date(2026, 3, 2), date(2026, 3, 1), "x", None)


# words for visitors


@pytest.mark.parametrize(
    ("opens", "now", "id_text", "en_text"),
    [
        (wib(2026, 3, 2, 13), wib(2026, 3, 2, 12, 10), "hari ini pukul 13.00", "today at 13:00"),
        (wib(2026, 3, 3, 9), wib(2026, 3, 2, 19, 30), "besok pukul 09.00", "tomorrow at 09:00"),
        # 23:30 UTC on the 2nd is already the 3rd in Jakarta: "today", not "tomorrow".
        (
            wib(2026, 3, 3, 9),
            datetime(2026, 3, 2, 18, 30, tzinfo=UTC),
            "hari ini pukul 09.00",
            "today at 09:00",
        ),
        (
            wib(2026, 3, 23, 9),
            wib(2026, 3, 20, 10),
            "Senin, 23 Maret pukul 09.00",
            "Monday 23 March at 09:00",
        ),
        (
            wib(2026, 3, 25, 9),
            wib(2026, 3, 17, 19, 30),
            "Rabu, 25 Maret pukul 09.00",
            "Wednesday 25 March at 09:00",
        ),
        (
            wib(2027, 1, 4, 8, 30),
            wib(2026, 12, 31, 16),
            "Senin, 4 Januari 2027 pukul 08.30",
            "Monday 4 January 2027 at 08:30",
        ),
    ],
)
def test_format_next_open(opens: datetime, now: datetime, id_text: str, en_text: str) -> None:
    assert format_next_open(opens, now, JAKARTA, "id") == id_text
    assert format_next_open(opens, now, JAKARTA, "en") == en_text


def test_format_next_open_in_a_language_the_desk_no_longer_speaks() -> None:
    """A chat begun in a language since removed from the config reads in the desk's default."""
    assert format_next_open(wib(2026, 3, 3, 9), wib(2026, 3, 2, 20), JAKARTA, "fr") == (
        "besok pukul 09.00"
    )


def test_describe_week(desk: ServiceHours, sample: ServiceHours) -> None:
    assert desk.describe_week("id") == [
        "Senin–Jumat 09.00–19.00",
        "Sabtu 09.00–15.30",
        "Minggu: tutup",
    ]
    assert desk.describe_week("en") == [
        "Monday–Friday 09:00–19:00",
        "Saturday 09:00–15:30",
        "Sunday: closed",
    ]
    assert sample.describe_week("id", at=wib(2026, 3, 2, 10)) == [
        "Senin–Kamis 08.00–15.00",
        "Jumat 08.00–15.30",
        "Sabtu–Minggu: tutup",
    ]
    assert sample.describe_week("id", at=wib(2026, 4, 1, 10)) == desk.describe_week("id")


def test_describe_week_with_a_lunch_break() -> None:
    desk = hours(
        {
            "weekly": {
                "senin": ["08:00-12:00", "13:00-16:00"],
                "selasa": "08:00-12:00",
                **{day: "closed" for day in _DAYS[2:]},
            }
        }
    )
    assert desk.describe_week("en") == [
        "Monday 08:00–12:00, 13:00–16:00",
        "Tuesday 08:00–12:00",
        "Wednesday–Sunday: closed",
    ]


# config


def test_defaults_are_perpusnas() -> None:
    config = parse_hours(None, "Asia/Jakarta")
    assert isinstance(config, HoursConfig)
    assert config.when_closed == "offline_form"
    schedule = config.schedule
    assert schedule.timezone == JAKARTA
    assert schedule.weekly == DEFAULT_WEEKLY
    assert (schedule.holidays_country, schedule.holidays_subdiv) == ("ID", None)
    assert schedule.holidays_categories == ("public", "government")
    assert (schedule.closures, schedule.special) == ((), ())


def test_sample_section_parses() -> None:
    config = parse_hours(yaml.safe_load(SAMPLE)["hours"], "Asia/Jakarta")
    year_end = {"id": "Libur akhir tahun", "en": "Year-end break"}
    assert config.schedule.closures == (
        Closure(date(2026, 12, 28), date(2026, 12, 31), "Libur akhir tahun", year_end),
    )
    (ramadan,) = config.schedule.special
    assert (ramadan.start, ramadan.end, ramadan.label) == (
        date(2026, 2, 18),
        date(2026, 3, 19),
        "Ramadan",
    )
    assert ramadan.weekly is not None
    assert ramadan.weekly[6] == ()


def test_config_accepts_friendly_forms() -> None:
    section = yaml.safe_load(
        """
        weekly: {monday: 09.00-19.00, tuesday: [9:00 - 12:00, "13:00–17:00"], wednesday: [],
                 thursday: closed, friday: Closed, saturday: closed, sunday: closed}
        holidays: {country: id}
        closures: [{from: "2026-05-04", label: Inventaris}]
        when_closed: hide
        """
    )
    config = parse_hours(section, "Asia/Makassar")
    schedule = config.schedule
    assert schedule.weekly[0] == (Interval(time(9), time(19)),)
    assert schedule.weekly[1] == (Interval(time(9), time(12)), Interval(time(13), time(17)))
    assert schedule.closures == (Closure(date(2026, 5, 4), date(2026, 5, 4), "Inventaris"),)
    assert config.when_closed == "hide"
    assert schedule.holidays_country == "ID"
    # Makassar is WITA (UTC+8): 09:00 there is 08:00 WIB.
    assert ServiceHours(schedule).is_open(wib(2026, 3, 2, 8))


def _full_week(**days: Any) -> dict[str, Any]:
    return {day: days.get(day, ["09:00-17:00"]) for day in _DAYS}


@pytest.mark.parametrize(
    ("section", "path", "problem"),
    [
        ("every day", "hours", "must be a mapping"),
        (
            {"weekly": _full_week(monday=["9-19"])},
            "hours.weekly.monday[0]",
            '"9-19" is not HH:MM-HH:MM',
        ),
        ({"weekly": _full_week(monday="9-19")}, "hours.weekly.monday", '"9-19" is not HH:MM-HH:MM'),
        ({"weekly": _full_week(monday=[540])}, "hours.weekly.monday[0]", "write it in quotes"),
        ({"weekly": _full_week(monday=None)}, "hours.weekly.monday", "or closed"),
        (
            {"weekly": _full_week(friday=["09:00-12:00", "25:00-26:00"])},
            "hours.weekly.friday[1]",
            "not a time of day",
        ),
        (
            {"weekly": _full_week(tuesday=["22:00-02:00"])},
            "hours.weekly.tuesday[0]",
            "may not cross midnight",
        ),
        (
            {"weekly": _full_week(tuesday=["09:00-09:00"])},
            "hours.weekly.tuesday[0]",
            "end must be after",
        ),
        (
            {"weekly": _full_week(monday=["13:00-17:00", "09:00-14:00"])},
            "hours.weekly.monday[0]",
            '"13:00-17:00" overlaps "09:00-14:00"',
        ),
        (
            {"weekly": {**_full_week(), "funday": "closed"}},
            "hours.weekly.funday",
            "unknown weekday",
        ),
        ({"weekly": {**_full_week(), "senin": "closed"}}, "hours.weekly.senin", "given twice"),
        ({"weekly": {d: "closed" for d in _DAYS[:6]}}, "hours.weekly.sunday", "is required"),
        ({"weekly": ["09:00-17:00"]}, "hours.weekly", "must map weekdays"),
        ({"holidays": "ID"}, "hours.holidays", "must be false or a mapping"),
        ({"holidays": {"country": "XX"}}, "hours.holidays.country", "unknown country code 'XX'"),
        (
            {"holidays": {"country": "ID", "subdivision": "JK"}},
            "hours.holidays.subdivision",
            "no subdivisions",
        ),
        (
            {"holidays": {"country": "MY", "subdivision": "99"}},
            "hours.holidays.subdivision",
            "unknown subdivision",
        ),
        (
            {"holidays": {"country": "MY", "categories": ["government"]}},
            "hours.holidays.categories[0]",
            "not a holiday category",
        ),
        ({"holidays": {"categories": []}}, "hours.holidays.categories", "at least one"),
        (
            {"holidays": {"country": "ID", "region": "x"}},
            "hours.holidays.region",
            "not a known setting",
        ),
        ({"closures": [{"from": "2026-12-24"}]}, "hours.closures[0].label", "is required"),
        (
            {"closures": [{"to": "2026-12-24", "label": "x"}]},
            "hours.closures[0].from",
            "is required",
        ),
        (
            {
                "closures": [
                    {"from": "2026-12-24", "label": "ok"},
                    {"from": date(2026, 12, 26), "to": date(2026, 12, 24), "label": "x"},
                ]
            },
            "hours.closures[1]",
            "'to' is before 'from'",
        ),
        (
            {"closures": [{"from": "2026-12-24", "label": "x", "lable": "y"}]},
            "hours.closures[0].lable",
            "not a known setting",
        ),
        (
            {"closures": [{"from": "24-12-2026", "label": "x"}]},
            "hours.closures[0].from",
            "not a date",
        ),
        ({"closures": {"from": "2026-12-24"}}, "hours.closures", "must be a list"),
        (
            {"special": [{"from": "soon", "to": "2026-03-19", "label": "R", "weekly": "closed"}]},
            "hours.special[0].from",
            "not a date",
        ),
        (
            {
                "special": [
                    {
                        "from": datetime(2026, 2, 18, 8),
                        "to": "2026-03-19",
                        "label": "R",
                        "weekly": "closed",
                    }
                ]
            },
            "hours.special[0].from",
            "not a date",
        ),
        (
            {
                "special": [
                    {"from": "2026-03-19", "to": "2026-02-18", "label": "R", "weekly": "closed"}
                ]
            },
            "hours.special[0]",
            "'to' is before 'from'",
        ),
        (
            {"special": [{"from": "2026-02-18", "to": "2026-03-19", "label": "R"}]},
            "hours.special[0].weekly",
            "is required",
        ),
        (
            {
                "special": [
                    {
                        "from": "2026-02-18",
                        "to": "2026-03-19",
                        "label": "R",
                        "weekly": {"monday": ["8-15"]},
                    }
                ]
            },
            "hours.special[0].weekly.monday[0]",
            '"8-15" is not HH:MM-HH:MM',
        ),
        (
            {
                "special": [
                    {
                        "from": "2026-02-18",
                        "to": "2026-03-19",
                        "label": "R",
                        "weekly": {"mon": "closed"},
                    }
                ]
            },
            "hours.special[0].weekly.mon",
            "unknown weekday",
        ),
        (
            {
                "special": [
                    {
                        "from": "2026-02-18",
                        "to": "2026-03-19",
                        "label": "R",
                        "weekly": "closed",
                        "open_on_holidays": "yes",
                    }
                ]
            },
            "hours.special[0].open_on_holidays",
            "true or false",
        ),
        (
            {
                "special": [
                    {
                        "from": "2026-02-18",
                        "to": "2026-03-19",
                        "label": "Ramadan",
                        "weekly": "closed",
                    },
                    {
                        "from": "2026-03-19",
                        "to": "2026-03-20",
                        "label": "Other",
                        "weekly": "closed",
                    },
                ]
            },
            "hours.special[1]",
            "overlaps hours.special[0] (Ramadan)",
        ),
        ({"when_closed": "email"}, "hours.when_closed", "must be offline_form or hide"),
        ({"open": "always"}, "hours.open", "not a known setting"),
    ],
)
def test_config_errors_name_the_key(section: Any, path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_hours(section, "Asia/Jakarta")
    assert caught.value.path == path
    assert problem in caught.value.problem


def test_config_refuses_unknown_timezone() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_hours(None, "Asia/Atlantis")
    assert caught.value.path == "desk.timezone"
