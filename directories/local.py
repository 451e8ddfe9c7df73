"""A member list in a YAML file, loaded once at start (the default directory).

The file looks like this (``phone`` may also be a list; every key but ``member_number`` and
``name`` is optional)::

    members:
      - member_number: A-123
        name: Budi Santoso
        member_type: Mahasiswa
        expires: 2027-06-30
        date_of_birth: 1990-05-01
        phone: "0812-3456-7890"
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from rooms.directory import (
    LookupResult,
    MemberRecord,
    check,
    date_of,
    normalise_card,
    normalise_phone,
    phones_of,
)

log = logging.getLogger("refdesk.directories.local")

_KEYS = {"member_number", "name", "member_type", "expires", "date_of_birth", "phone"}
_TEXT_MAX = 200


class DirectoryFileError(Exception):
    """A problem in the member file; ``where`` names the entry and key. Never holds a value."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


class LocalDirectory:
    """Members held in memory, looked up by normalised member number."""

    def __init__(self, records: Iterable[MemberRecord]) -> None:
        self._members: dict[str, MemberRecord] = {}
        for record in records:
            self._members[normalise_card(record.card_number)] = record

    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        return f"LocalDirectory({len(self._members)} members)"

    @classmethod
    def from_file(cls, path: Path) -> LocalDirectory:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DirectoryFileError("", f"cannot read {path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            # The YAML parser's own message may quote the line, which may hold a secret.
            raise DirectoryFileError("", f"{path} is not valid YAML{where}") from None
        directory = cls.from_data(data)
        log.info("loaded %d members from %s", len(directory), path)
        return directory

    @classmethod
    def from_data(cls, data: Any) -> LocalDirectory:
        if not isinstance(data, dict) or set(data) != {"members"}:
            raise DirectoryFileError("", "must hold one key, members: a list of members")
        entries = data["members"]
        if not isinstance(entries, list):
            raise DirectoryFileError("members", "must be a list")
        records: list[MemberRecord] = []
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            record = _record(entry, f"members[{index}]")
            key = normalise_card(record.card_number)
            if key in seen:
                raise DirectoryFileError(
                    f"members[{index}].member_number",
                    f"duplicate member number {record.card_number!r}",
                )
            seen.add(key)
            records.append(record)
        return cls(records)

    async def verify(self, fields: Mapping[str, str], today: date) -> LookupResult:
        record = self._members.get(normalise_card(fields.get("member_number", "")))
        return check(record, fields, today)

    async def close(self) -> None:
        return None


def _record(entry: Any, where: str) -> MemberRecord:
    if not isinstance(entry, dict):
        raise DirectoryFileError(where, "must be a mapping with member_number, name, ...")
    for key in entry:
        if key not in _KEYS:
            raise DirectoryFileError(f"{where}.{key}", "is not a known key")

    def text(key: str, required: bool) -> str | None:
        value = entry.get(key)
        if value is None and not required:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # member numbers written without quotes
        if not isinstance(value, str) or not value.strip() or len(value) > _TEXT_MAX:
            raise DirectoryFileError(
                f"{where}.{key}", f"must be a non-empty text of at most {_TEXT_MAX} characters"
            )
        return value.strip()

    def day(key: str) -> date | None:
        if entry.get(key) is None:
            return None
        found = date_of(entry[key])
        if found is None:
            raise DirectoryFileError(f"{where}.{key}", "must be a date like 2027-06-30")
        return found

    card = text("member_number", True)
    name = text("name", True)
    assert card is not None and name is not None
    raw_phones = entry.get("phone")
    phones_in: list[object] = []
    if raw_phones is not None:
        phones_in = raw_phones if isinstance(raw_phones, list) else [raw_phones]
        for phone in phones_in:
            if not isinstance(phone, str):
                raise DirectoryFileError(
                    f"{where}.phone", 'must be quoted text, like "0812-3456-7890"'
                )
            if normalise_phone(phone) is None:
                raise DirectoryFileError(f"{where}.phone", "is not a phone number (6-15 digits)")
    phones = phones_of(phones_in)
    return MemberRecord(
        card_number=card,
        name=name,
        member_type=text("member_type", False),
        expires=day("expires"),
        date_of_birth=day("date_of_birth"),
        phones=phones,
    )
