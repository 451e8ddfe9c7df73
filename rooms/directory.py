"""Member directories: where the desk checks that a visitor is a library member.

A directory answers one question: do these details (member number plus date of birth and/or
phone, as the visitor typed them in the chat) belong to a current member? This module holds
what the desk needs to ask it: the protocol, the records and the matching rules.
Implementations (the ``directories`` package: a local list, Koha, an HTTP service) look the
member up by number and hand the record to :func:`check`, so every directory decides the same
way.

Secrets (date of birth, phone) are compared in memory and never leave the directory: a
:class:`LookupResult` carries only the public fields, :class:`MemberRecord` keeps its check
fields out of ``repr``, and nothing here logs them or puts them in an exception message.
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol, runtime_checkable

MEMBER_NUMBER = "member_number"
DATE_OF_BIRTH = "date_of_birth"
PHONE = "phone"
SECRET_FIELDS = (DATE_OF_BIRTH, PHONE)
"""Fields that prove who the visitor is; they never reach rooms, logs or the store."""

FIELDS = (MEMBER_NUMBER, *SECRET_FIELDS)

_DAY_FIRST = re.compile(r"^(\d{1,2})[/-](\d{1,2})[/-](\d{4})$")
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
PHONE_MIN_DIGITS = 6
PHONE_MAX_DIGITS = 15


class Outcome(enum.StrEnum):
    VERIFIED = "verified"
    EXPIRED = "expired"
    NOT_FOUND = "not_found"
    MISMATCH = "mismatch"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class PublicRecord:
    """What may be shown to the librarian: no secret in here."""

    name: str
    member_type: str | None
    expires: date | None


@dataclass(frozen=True)
class MemberRecord:
    """One member as the directory knows them; the check fields stay out of ``repr``."""

    card_number: str
    name: str
    member_type: str | None
    expires: date | None
    date_of_birth: date | None = field(default=None, repr=False, compare=False)
    phones: tuple[str, ...] = field(default=(), repr=False, compare=False)
    """Normalised (see :func:`normalise_phone`)."""

    @property
    def public(self) -> PublicRecord:
        return PublicRecord(self.name, self.member_type, self.expires)


@dataclass(frozen=True)
class LookupResult:
    outcome: Outcome
    record: PublicRecord | None = None
    """Set only when the secrets matched (verified or expired)."""


@runtime_checkable
class MemberDirectory(Protocol):
    async def verify(self, fields: Mapping[str, str], today: date) -> LookupResult:
        """Check the visitor's details. Network and service errors give ``unavailable``."""
        ...

    async def close(self) -> None:
        """Release connections (a no-op for file directories)."""
        ...


# normalisation


def normalise_card(value: str) -> str:
    """Card numbers match without surrounding blanks and regardless of case."""
    return " ".join(value.split()).casefold()


def normalise_phone(value: str) -> str | None:
    """Digits only, Indonesian national number without trunk or country prefix.

    ``+62 812-3456-7890``, ``0812 3456 7890``, ``0062 812…`` and ``812 3456 7890`` are the same
    number. ``None`` when there are too few or too many digits to be a phone number.
    """
    digits = "".join(ch for ch in value if ch.isdigit() and ch.isascii())
    if digits.startswith("0062"):
        digits = digits[4:]
    elif digits.startswith("62"):
        digits = digits[2:]
    elif digits.startswith("0"):
        digits = digits[1:]
    if not PHONE_MIN_DIGITS <= len(digits) <= PHONE_MAX_DIGITS:
        return None
    return digits


def parse_date(value: str) -> date | None:
    """``YYYY-MM-DD``, ``DD/MM/YYYY`` or ``DD-MM-YYYY``; ``None`` for anything else.

    A date-time in ISO form (``2027-06-30T00:00:00Z``) counts as its date, since directories
    often answer that way.
    """
    text = value.strip()
    if len(text) > 10 and text[10:11] in ("T", " ") and _ISO.match(text[:10]):
        text = text[:10]
    try:
        if m := _ISO.match(text):
            return date(int(m[1]), int(m[2]), int(m[3]))
        if m := _DAY_FIRST.match(text):
            return date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        return None
    return None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def secrets_match(record: MemberRecord, fields: Mapping[str, str]) -> bool:
    """Every secret the visitor gave must match the record; a missing one on file fails."""
    given = [key for key in SECRET_FIELDS if key in fields]
    if not given:
        raise ValueError("at least one of date_of_birth, phone is needed to verify a member")
    results: list[bool] = []
    if DATE_OF_BIRTH in fields:
        typed = parse_date(fields[DATE_OF_BIRTH])
        on_file = record.date_of_birth
        # Unknown on either side never matches ("" against "\0").
        results.append(
            _same(typed.isoformat() if typed else "", on_file.isoformat() if on_file else "\0")
        )
    if PHONE in fields:
        typed_phone = normalise_phone(fields[PHONE]) or ""
        hits = [_same(typed_phone, phone) for phone in record.phones]
        results.append(any(hits))
    return all(results)


def check(record: MemberRecord | None, fields: Mapping[str, str], today: date) -> LookupResult:
    """The one rule set: not found, mismatch, expired (valid through its last day), verified."""
    if record is None:
        return LookupResult(Outcome.NOT_FOUND)
    if not secrets_match(record, fields):
        return LookupResult(Outcome.MISMATCH)
    if record.expires is not None and record.expires < today:
        return LookupResult(Outcome.EXPIRED, record.public)
    return LookupResult(Outcome.VERIFIED, record.public)


def phones_of(values: Iterable[object]) -> tuple[str, ...]:
    """Normalised, de-duplicated phone numbers from raw directory values (non-strings skipped)."""
    found: list[str] = []
    for value in values:
        if isinstance(value, str) and (phone := normalise_phone(value)) and phone not in found:
            found.append(phone)
    return tuple(found)


def date_of(value: object) -> date | None:
    """A date from a directory value: a ``date`` (YAML) or a string in a known form."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return parse_date(value)
    return None


__all__ = [
    "DATE_OF_BIRTH",
    "FIELDS",
    "MEMBER_NUMBER",
    "PHONE",
    "SECRET_FIELDS",
    "LookupResult",
    "MemberDirectory",
    "MemberRecord",
    "Outcome",
    "PublicRecord",
    "check",
    "date_of",
    "normalise_card",
    "normalise_phone",
    "parse_date",
    "phones_of",
    "secrets_match",
]
