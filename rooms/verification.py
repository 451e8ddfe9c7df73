"""Member verification during the chat: input rules, attempt limits, and what to tell whom.

Verification is never a gate: a visitor chats first, and may be asked (by the librarian, or
right after a claim) to confirm membership with the member number plus date of birth and/or
phone. Those secrets are checked by the member directory and then dropped: they appear in no
returned text, no ``repr``, no log line and no exception message. What comes back is the
outcome, the public part of the record and the attempt count, for the room notice, the visitor
and the audit row the adapter stores.

Limits: a session may try ``max_attempts_per_session`` times; one client (a hash of the IP,
computed by the adapter) ``max_attempts_per_client`` times in a sliding window. Past either,
the attempt is refused as ``locked`` without asking the directory. Counters live in memory;
:meth:`Verifier.restore_attempts` seeds a session's count from the store after a restart.
"""

from __future__ import annotations

import enum
import logging
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from rooms.directory import (
    DATE_OF_BIRTH,
    FIELDS,
    MEMBER_NUMBER,
    PHONE,
    SECRET_FIELDS,
    MemberDirectory,
    Outcome,
    PublicRecord,
    normalise_phone,
    parse_date,
)
from rooms.language import language
from rooms.session import ValidationError

log = logging.getLogger("refdesk.rooms.verification")

FIELD_LIMITS = {MEMBER_NUMBER: 40, DATE_OF_BIRTH: 20, PHONE: 24}
_MEMBER_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/\-]*$")
_SWEEP_EVERY = 100


class VerificationCode(enum.StrEnum):
    VERIFIED = "verified"
    EXPIRED = "expired"
    NOT_FOUND = "not_found"
    MISMATCH = "mismatch"
    UNAVAILABLE = "unavailable"
    LOCKED = "locked"


@dataclass(frozen=True)
class VerificationRules:
    fields: tuple[str, ...] = (MEMBER_NUMBER, DATE_OF_BIRTH)
    max_attempts_per_session: int = 3
    max_attempts_per_client: int = 10
    client_window: float = 3600.0
    """Seconds over which ``max_attempts_per_client`` counts (a sliding window)."""

    def __post_init__(self) -> None:
        if MEMBER_NUMBER not in self.fields or not set(SECRET_FIELDS) & set(self.fields):
            raise ValueError("fields must hold member_number and date_of_birth and/or phone")
        if set(self.fields) - set(FIELDS) or len(set(self.fields)) != len(self.fields):
            raise ValueError(f"fields may only hold {', '.join(FIELDS)}, each once")
        if self.max_attempts_per_session < 1 or self.max_attempts_per_client < 1:
            raise ValueError("attempt limits must be at least 1")


@dataclass(frozen=True)
class VerificationOutcome:
    """One attempt's result. Holds no secret: safe to log, store and show to librarians."""

    code: VerificationCode
    member_number: str
    record: PublicRecord | None
    locked: bool
    """The attempt was refused for too many attempts; the directory was not asked."""
    attempts_used: int
    """Attempts this session has used, this one included (a locked one is not counted)."""
    attempts_left: int
    """How many more this session may try now (also bounded by the client's window)."""
    locked_by: str | None = None
    """``"session"`` or ``"client"`` when locked."""

    def notice(self) -> str:
        """The room notice for librarians (English, like the other desk notices)."""
        return _notice(self)

    def visitor_text(self, language: str) -> str:
        """What the visitor reads, in their language."""
        return _visitor_text(self, language)


def _problem(key: str, value: str, today: date) -> str | None:
    """What is wrong with one trimmed field, without quoting it; ``None`` when it is fine."""
    limit = FIELD_LIMITS[key]
    if len(value) > limit:
        return f"must be at most {limit} characters"
    if not value.isprintable():
        return "must not contain control characters"
    if key == MEMBER_NUMBER and not _MEMBER_NUMBER.match(value):
        return "may only hold letters, digits, spaces and . _ / -"
    if key == DATE_OF_BIRTH:
        born = parse_date(value)
        if born is None:
            return "not a date: use YYYY-MM-DD or DD/MM/YYYY"
        if not date(1900, 1, 1) <= born <= today:
            return "not a possible date of birth"
    if key == PHONE and normalise_phone(value) is None:
        return "not a phone number"
    return None


class Verifier:
    def __init__(
        self,
        directory: MemberDirectory,
        rules: VerificationRules,
        clock: Callable[[], datetime],
    ) -> None:
        self.directory = directory
        self.rules = rules
        self.clock = clock
        self._sessions: dict[str, int] = {}
        self._clients: dict[str, deque[datetime]] = {}
        self._since_sweep = 0

    # counters

    def attempts_used(self, session_id: str) -> int:
        return self._sessions.get(session_id, 0)

    def attempts_left(self, session_id: str, client_key: str) -> int:
        session_left = self.rules.max_attempts_per_session - self.attempts_used(session_id)
        client_left = self.rules.max_attempts_per_client - len(self._window(client_key))
        return max(0, min(session_left, client_left))

    def restore_attempts(self, session_id: str, used: int) -> None:
        """Seed a session's count (e.g. from the stored audit rows after a restart)."""
        self._sessions[session_id] = max(self._sessions.get(session_id, 0), used)

    def forget(self, session_id: str) -> None:
        """Drop a closed session's counter (client windows expire on their own)."""
        self._sessions.pop(session_id, None)

    def _window(self, client_key: str) -> deque[datetime]:
        times = self._clients.get(client_key)
        if times is None:
            return deque()
        cutoff = self.clock() - timedelta(seconds=self.rules.client_window)
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._clients[client_key]
        return times

    def _sweep(self) -> None:
        self._since_sweep += 1
        if self._since_sweep >= _SWEEP_EVERY:
            self._since_sweep = 0
            for key in list(self._clients):
                self._window(key)

    # input

    def validate(self, fields: object, today: date) -> dict[str, str]:
        """The configured fields, trimmed; :class:`ValidationError` names each bad one.

        Problems never quote what was typed.
        """
        if not isinstance(fields, Mapping):
            raise ValidationError({"fields": "must be an object of field names to texts"})
        problems: dict[str, str] = {}
        clean: dict[str, str] = {}
        for key in self.rules.fields:
            value = fields.get(key)
            limit = FIELD_LIMITS[key]
            if value is None or (isinstance(value, str) and not value.strip()):
                problems[key] = "required"
                continue
            if not isinstance(value, str):
                problems[key] = "must be a string"
                continue
            if len(value) > 4 * limit:
                problems[key] = f"must be at most {limit} characters"
                continue
            value = " ".join(value.split())
            problem = _problem(key, value, today)
            if problem is not None:
                problems[key] = problem
            else:
                clean[key] = value
        for key in fields:
            if key not in self.rules.fields:
                problems[str(key)[:40]] = "not asked for" if key in FIELDS else "unknown field"
        if problems:
            raise ValidationError(problems)
        return clean

    # the attempt

    async def attempt(
        self, session_id: str, client_key: str, fields: object, today: date
    ) -> VerificationOutcome:
        """Validate, enforce the limits, ask the directory. Raises only :class:`ValidationError`."""
        clean = self.validate(fields, today)
        member_number = clean[MEMBER_NUMBER]
        now = self.clock()
        self._sweep()
        used = self.attempts_used(session_id)
        window = self._window(client_key)
        locked_by = None
        if used >= self.rules.max_attempts_per_session:
            locked_by = "session"
        elif len(window) >= self.rules.max_attempts_per_client:
            locked_by = "client"
        if locked_by is not None:
            log.info("verification in session %s refused: locked by %s", session_id, locked_by)
            return VerificationOutcome(
                VerificationCode.LOCKED, member_number, None, True, used, 0, locked_by
            )
        # Count before asking, so concurrent attempts cannot slip past the limit.
        used += 1
        self._sessions[session_id] = used
        self._clients.setdefault(client_key, deque()).append(now)
        try:
            result = await self.directory.verify(clean, today)
            code = VerificationCode(result.outcome.value)
            shown = result.outcome in (Outcome.VERIFIED, Outcome.EXPIRED)
            record = result.record if shown else None
        except Exception as exc:  # a directory bug must not end the chat
            log.error("member directory failed: %s", type(exc).__name__)
            code, record = VerificationCode.UNAVAILABLE, None
        outcome = VerificationOutcome(
            code, member_number, record, False, used, self.attempts_left(session_id, client_key)
        )
        log.info(
            "verification in session %s: %s (attempt %d of %d)",
            session_id,
            code,
            used,
            self.rules.max_attempts_per_session,
        )
        log.debug("verification in session %s was for member %s", session_id, member_number)
        return outcome


# texts


def _attempt_note(outcome: VerificationOutcome) -> str:
    return f"attempt {outcome.attempts_used}, {outcome.attempts_left} left"


def _notice(outcome: VerificationOutcome) -> str:
    code, record, number = outcome.code, outcome.record, outcome.member_number
    if code is VerificationCode.LOCKED:
        if outcome.locked_by == "client":
            return "Locked: too many attempts from this visitor's connection in the last hour"
        return f"Locked: too many attempts ({outcome.attempts_used} in this chat)"
    if code is VerificationCode.VERIFIED and record is not None:
        until = f"valid until {record.expires.isoformat()}" if record.expires else "no expiry date"
        parts = [record.name, record.member_type, until]
        return f"Verified: {', '.join(p for p in parts if p)} (member {number})"
    if code is VerificationCode.EXPIRED and record is not None:
        on = f" on {record.expires.isoformat()}" if record.expires else ""
        who = ", ".join(p for p in (record.name, record.member_type) if p)
        return f"Membership expired{on}: {who} (member {number})"
    if code is VerificationCode.NOT_FOUND:
        return f"Not found: no member {number} in the directory ({_attempt_note(outcome)})"
    if code is VerificationCode.MISMATCH:
        return f"Details do not match member {number} ({_attempt_note(outcome)})"
    return f"Member directory unavailable: please verify member {number} by hand"


def _visitor_text(outcome: VerificationOutcome, lang: str) -> str:
    code = outcome.code
    if code in (VerificationCode.NOT_FOUND, VerificationCode.MISMATCH):
        key = "no_match" if outcome.attempts_left > 0 else "no_match_last"
    elif code is VerificationCode.EXPIRED and not (outcome.record and outcome.record.expires):
        key = "unavailable"
    else:
        key = code.value
    left = outcome.attempts_left
    if key == "no_match" and left == 1:
        key = "no_match_one"
    expires = outcome.record.expires if outcome.record else None
    words = language(lang)
    return words.text(
        "verification", key, left=left, date=words.long_date(expires) if expires else ""
    )
