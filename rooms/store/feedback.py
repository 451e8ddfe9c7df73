"""The ``feedback`` table: the visitor's rating and comment, one per chat."""

from __future__ import annotations

from datetime import datetime

from rooms.feedback import Feedback
from rooms.ids import SessionID
from rooms.store.database import Row, Tx
from rooms.store.values import required_moment


def from_row(row: Row) -> Feedback:
    return Feedback(
        SessionID(row["session_id"]),
        row["rating"],
        row["comment"],
        row["librarian"],
        required_moment(row["created_at"]),
        required_moment(row["updated_at"]),
    )


async def upsert(
    tx: Tx, session_id: str, rating: int, comment: str | None, librarian: str | None, at: datetime
) -> Feedback:
    row = await tx.fetchone(
        """
        INSERT INTO feedback (session_id, rating, comment, librarian, created_at, updated_at)
        VALUES (:s, :r, :c, :l, :at, :at)
        ON CONFLICT (session_id) DO UPDATE
        SET rating = :r, comment = COALESCE(:c, feedback.comment), updated_at = :at
        RETURNING *
        """,
        {"s": session_id, "r": rating, "c": comment, "l": librarian, "at": at},
    )
    assert row is not None
    return from_row(row)


async def get(tx: Tx, session_id: str) -> Feedback | None:
    row = await tx.fetchone("SELECT * FROM feedback WHERE session_id = :s", {"s": session_id})
    return from_row(row) if row else None


async def by_librarian(tx: Tx) -> list[tuple[str, int, float]]:
    """Per-librarian report: (librarian, number of ratings, average rating)."""
    rows = await tx.fetchall(
        """
        SELECT librarian, COUNT(*) AS n, AVG(rating) AS average FROM feedback
        WHERE librarian IS NOT NULL GROUP BY librarian ORDER BY librarian
        """
    )
    return [(r["librarian"], int(r["n"]), float(r["average"])) for r in rows]
