"""The desk's words in one language, and the languages this process speaks.

The words are data, one file per language (``refdesk/languages/*.yaml``, read and checked by
:mod:`refdesk.language_files`): adding a language is adding a file, never code. The core only
looks texts up and fills them in. The composition root installs the catalogue once at start;
a code the catalogue does not hold (a chat begun in a language the admin has since removed) reads
in the catalogue's fallback, the desk's default language.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, time

# What each language file holds besides its plain fields: sections of texts by key.
SECTIONS = (
    "dates",
    "topics",
    "desk",
    "verification",
    "transcript",
    "offline_email",
    "widget",
)


@dataclass(frozen=True)
class Language:
    code: str
    name: str  # the language's own name: "Bahasa Indonesia", "English"
    locale: str  # BCP 47, for the browser's date and time formats
    days: tuple[str, ...]  # Monday first
    months: tuple[str, ...]
    ratings: tuple[str, ...]  # the feedback scale, 1 to 5
    closed: str
    clock_pattern: str  # "{hour}.{minute}"
    sections: Mapping[str, Mapping[str, str]] = field(repr=False)
    aliases: tuple[str, ...] = ()  # other codes a browser may send ("in" for Indonesian)
    holidays: str | None = None  # the ``holidays`` library's language for holiday names

    def text(self, section: str, key: str, **values: object) -> str:
        return self.sections[section][key].format(**values)

    def words(self, section: str) -> Mapping[str, str]:
        return self.sections[section]

    def clock(self, at: time) -> str:
        return self.clock_pattern.format(hour=f"{at.hour:02}", minute=f"{at.minute:02}")

    def long_date(self, day: date) -> str:
        return self.text(
            "dates", "long", day=day.day, month=self.months[day.month - 1], year=day.year
        )

    def day_name(self, day: date) -> str:
        return self.days[day.weekday()]


class Languages:
    """The languages a desk speaks, by code; ``fallback`` answers for any other code."""

    def __init__(self, languages: Iterable[Language], fallback: str) -> None:
        self._by_code = {language.code: language for language in languages}
        if fallback not in self._by_code:
            raise ValueError(f"the fallback language {fallback!r} is not among the languages")
        self.fallback = fallback

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self._by_code)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __getitem__(self, code: str) -> Language:
        return self._by_code.get(code) or self._by_code[self.fallback]

    def __iter__(self) -> Iterator[Language]:
        return iter(self._by_code.values())


_installed: Languages | None = None


def install(languages: Languages) -> None:
    """The catalogue this process speaks (the composition root calls this once at start)."""
    global _installed
    _installed = languages


def installed() -> Languages:
    if _installed is None:
        raise LookupError("no languages installed: call refdesk.language_files.install() first")
    return _installed


def language(code: str) -> Language:
    """The words for ``code``, or the fallback's when this process does not speak it."""
    return installed()[code]
