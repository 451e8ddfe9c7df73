"""Values as each engine gives them back (SQLite: text and 0/1; PostgreSQL: typed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def moment(value: Any) -> datetime | None:
    """A stored time: ISO text (SQLite) or a datetime (PostgreSQL), always aware, UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def required_moment(value: Any) -> datetime:
    found = moment(value)
    if found is None:
        raise ValueError("a required time is missing")
    return found


def next_seq(dialect: str) -> str:
    """SQL for the next message sequence number (the visitor's cursor): one writer on SQLite,
    a sequence on PostgreSQL (writers of one chat are serialised by ``Tx.lock_session``)."""
    if dialect == "postgres":
        return "nextval('messages_seq')"
    return "(SELECT COALESCE(MAX(seq), 0) + 1 FROM messages)"
