"""One visitor conversation: its form, lifecycle and messages."""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rooms.ids import MessageID, RoomID, SessionID, UserID
from rooms.names import clean_text

_EMAIL = re.compile(r"^[^@\s<>\"]{1,64}@[^@\s<>\"]+\.[^@\s<>\"]{2,}$")
NAME_MAX = 80
EMAIL_MAX = 254
MEMBER_NUMBER_MAX = 40
PAGE_URL_MAX = 2000
CLIENT_ID_MAX = 64
USER_AGENT_MAX = 400


class SessionState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Origin(enum.StrEnum):
    VISITOR = "visitor"
    LIBRARIAN = "librarian"
    DESK = "desk"


class ValidationError(Exception):
    """Visitor input that breaks a rule; ``fields`` maps each field to its problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


@dataclass(frozen=True)
class VisitorForm:
    """The pre-chat form as the visitor filled it in."""

    name: str
    email: str
    topic: str
    member_number: str | None = None
    language: str = "id"
    page_url: str | None = None
    user_agent: str | None = None

    @classmethod
    def validate(
        cls,
        raw: dict[str, Any],
        *,
        topics: set[str],
        languages: tuple[str, ...],
        default_language: str,
    ) -> VisitorForm:
        """Check the submitted fields; raise :class:`ValidationError` naming each bad one."""
        problems: dict[str, str] = {}

        def text(key: str, limit: int, required: bool) -> str | None:
            value = raw.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                if required:
                    problems[key] = "required"
                return None
            if not isinstance(value, str):
                problems[key] = "must be a string"
                return None
            if key == "email" and clean_text(value) != value.strip():
                problems[key] = "not a valid email address"
                return None
            # No invisible or direction-changing characters: they would reach Matrix as names
            # that read differently from what they are (rooms/names.py).
            value = clean_text(value)
            if not value:
                if required:
                    problems[key] = "required"
                return None
            if len(value) > limit:
                problems[key] = f"must be at most {limit} characters"
                return None
            return value

        name = text("name", NAME_MAX, True)
        email = text("email", EMAIL_MAX, True)
        if email is not None and not _EMAIL.match(email):
            problems["email"] = "not a valid email address"
        member_number = text("member_number", MEMBER_NUMBER_MAX, False)
        topic = text("topic", 40, True)
        if topic is not None and topic not in topics:
            problems["topic"] = "unknown topic"
        language = text("language", 8, False) or default_language
        if language not in languages:
            problems["language"] = f"must be one of {', '.join(languages)}"
        page_url = text("page_url", PAGE_URL_MAX, False)
        user_agent = raw.get("user_agent")
        unknown = set(raw) - {
            "name", "email", "member_number", "topic", "language", "page_url", "user_agent"
        }  # fmt: skip
        for key in sorted(unknown):
            problems[str(key)[:40]] = "unknown field"
        if problems:
            raise ValidationError(problems)
        assert name is not None and email is not None and topic is not None
        return cls(
            name=name,
            email=email,
            topic=topic,
            member_number=member_number,
            language=language,
            page_url=page_url,
            user_agent=clean_text(user_agent)[:USER_AGENT_MAX]
            if isinstance(user_agent, str)
            else None,
        )


def new_session_id() -> SessionID:
    """80 random bits, lowercase base32: unguessable and valid in a Matrix localpart."""
    return SessionID(base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower())


def new_token() -> str:
    """The visitor's bearer credential; only its hash is stored."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)


class Status(enum.StrEnum):
    """Where a session stands in the desk's flow."""

    NEW = "new"  # the visitor has not written yet: no room, not in the queue
    WAITING = "waiting"  # in the queue, ringing, nobody has claimed it
    CLAIMED = "claimed"  # a librarian owns it
    CLOSED = "closed"


@dataclass(frozen=True)
class Session:
    id: SessionID
    state: SessionState
    form: VisitorForm
    created_at: datetime
    closed_at: datetime | None = None
    closed_by: str | None = None
    room_id: RoomID | None = None
    owner: UserID | None = None
    owner_name: str | None = None
    claimed_at: datetime | None = None
    queued_at: datetime | None = None
    escalated_at: datetime | None = None
    read_up_to: int = 0
    verification: str | None = None  # None, "requested", or the last outcome code
    offline: bool = False  # left while the desk was closed; answered by email
    visitor_seen_up_to: int = 0
    emailed_up_to: int = 0
    client_key: str | None = None  # salted hash of the visitor's address (for bans)
    first_reply_at: datetime | None = None  # the first librarian reply (reports)
    team: str | None = None  # the team it is routed (or transferred) to; None: the whole desk
    overflowed_at: datetime | None = None  # its team's time ran out: the whole desk was rung

    @property
    def is_open(self) -> bool:
        return self.state is SessionState.OPEN

    @property
    def status(self) -> Status:
        if not self.is_open:
            return Status.CLOSED
        if self.owner is not None:
            return Status.CLAIMED
        return Status.WAITING if self.queued_at is not None else Status.NEW


@dataclass(frozen=True)
class Attachment:
    """A file in a chat, as both sides describe it (its bytes are in the store's attachments)."""

    id: int
    name: str
    mimetype: str
    size: int
    width: int | None = None
    height: int | None = None

    @property
    def is_image(self) -> bool:
        return self.mimetype.startswith("image/")


@dataclass(frozen=True)
class Message:
    id: MessageID
    session_id: SessionID
    origin: Origin
    body: str
    created_at: datetime
    sender_name: str | None = None
    sender_id: UserID | None = None
    client_id: str | None = None
    remote_id: str | None = None
    needs_delivery: bool = False
    delivered_at: datetime | None = None
    seq: int = 0
    html: str | None = None
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    attachment: Attachment | None = None  # a file sent with the message
