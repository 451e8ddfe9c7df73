"""The ``offers`` table: a waiting chat offered to one librarian at a time (fair assignment,
rooms/assignment.py). At most one offer of a chat is pending; an offer ends ``claimed`` (its
librarian took it), ``taken`` (someone else did), ``expired``, ``withdrawn`` (its librarian
went busy or off duty, the chat closed or moved) or ``overflowed`` (the whole desk is rung)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rooms.ids import SessionID, UserID
from rooms.store.database import Row, Tx
from rooms.store.values import required_moment


@dataclass(frozen=True)
class Offer:
    id: int
    session_id: SessionID
    user_id: UserID
    team: str
    offered_at: datetime
    expires_at: datetime
    state: str


def _offer(row: Row) -> Offer:
    return Offer(
        id=row["id"],
        session_id=SessionID(row["session_id"]),
        user_id=UserID(row["user_id"]),
        team=row["team"],
        offered_at=required_moment(row["offered_at"]),
        expires_at=required_moment(row["expires_at"]),
        state=row["state"],
    )


async def add(
    tx: Tx, session_id: str, user_id: str, team: str, at: datetime, expires_at: datetime
) -> Offer:
    row = await tx.fetchone(
        """
        INSERT INTO offers (session_id, user_id, team, offered_at, expires_at)
        VALUES (:s, :u, :t, :at, :exp) RETURNING *
        """,
        {"s": session_id, "u": user_id, "t": team, "at": at, "exp": expires_at},
    )
    assert row is not None
    return _offer(row)


async def pending(tx: Tx) -> list[Offer]:
    rows = await tx.fetchall("SELECT * FROM offers WHERE state = 'pending' ORDER BY id")
    return [_offer(row) for row in rows]


async def pending_for(tx: Tx, session_id: str) -> Offer | None:
    row = await tx.fetchone(
        "SELECT * FROM offers WHERE session_id = :s AND state = 'pending'", {"s": session_id}
    )
    return _offer(row) if row else None


async def due(tx: Tx, now: datetime) -> list[Offer]:
    """Pending offers whose time to accept has run out."""
    rows = await tx.fetchall(
        "SELECT * FROM offers WHERE state = 'pending' AND expires_at <= :now ORDER BY expires_at",
        {"now": now},
    )
    return [_offer(row) for row in rows]


async def end(tx: Tx, session_id: str, state: str, at: datetime) -> Offer | None:
    """End the chat's pending offer (if any) as ``state``; returns it."""
    row = await tx.fetchone(
        """
        UPDATE offers SET state = :state, ended_at = :at
        WHERE session_id = :s AND state = 'pending' RETURNING *
        """,
        {"s": session_id, "state": state, "at": at},
    )
    return _offer(row) if row else None


async def of_user(tx: Tx, user_id: str) -> list[Offer]:
    rows = await tx.fetchall(
        "SELECT * FROM offers WHERE user_id = :u AND state = 'pending' ORDER BY id", {"u": user_id}
    )
    return [_offer(row) for row in rows]


async def offered_since(tx: Tx, session_id: str, since: datetime) -> set[str]:
    """Who was offered the chat since it (re)entered the queue."""
    rows = await tx.fetchall(
        "SELECT DISTINCT user_id FROM offers WHERE session_id = :s AND offered_at >= :since",
        {"s": session_id, "since": since},
    )
    return {row["user_id"] for row in rows}
